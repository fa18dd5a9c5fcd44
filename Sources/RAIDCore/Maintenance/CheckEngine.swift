#if canImport(Glibc)
import Glibc
#endif

/// One problem found in a stripe, pinned to a member.
public struct StripeProblem: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case checksum = "checksum mismatch"
        case unreadable = "read error"
        case parity = "parity mismatch"
        case mirror = "mirror mismatch"
    }
    public let kind: Kind
    public let role: Int
    public let chunkIndex: Int
    public var description: String { "\(kind.rawValue) (role \(role))" }
}

extension Geometry {
    /// Where a problem found in `stripe` lies in the file, and the chunk as
    /// messages name it ("data chunk 2", "P chunk", "mirror chunk").
    func locate(_ p: StripeProblem, stripe: UInt64) -> (offset: UInt64, chunk: String) {
        let start = stripeStart(stripe)
        if p.chunkIndex < dataChunkCount {
            return (start + UInt64(p.chunkIndex * chunkBytes(stripe)), "data chunk \(p.chunkIndex)")
        }
        return (start, (level == .raid1 ? "mirror" : (p.chunkIndex == dataChunkCount ? "P" : "Q")) + " chunk")
    }
}

public struct StripeCheck: Sendable {
    public var problems: [StripeProblem] = []
    public var repaired = false
    /// More chunks lost or bad than redundancy covers.
    public var unrecoverable = false
}

/// How a stripe is checked: only read; repair from redundancy (scrub
/// repair); or resync after a crash, where data chunks as found on disk are
/// kept and parity and checksums are made to agree with them.
public enum CheckMode: Sendable { case check, repair, resync }

/// Verifies one stripe at a time: every chunk against its checksum, parity
/// (or every mirror) against the data. The offline `check`, the crash resync
/// and the scrubber all drive this.
extension ArrayFile {
    public var stripeCount: UInt64 { array.geometry.stripeCount(size: size) }

    /// Reads a chunk without verifying it (resync keeps what is on disk).
    func readChunkRaw(role: Int, stripe: UInt64, into buffer: UnsafeMutablePointer<UInt8>) -> Bool {
        guard let f = usable(role) else { return false }
        do {
            try f.readFull(into: buffer, count: array.geometry.chunkBytes(stripe), at: array.layout.chunkOffset(stripe: stripe))
            return true
        } catch {
            array.noteReadError(role: role, error)
            return false
        }
    }

    /// Writes back a chunk a check rebuilt: as far as the file reaches
    /// into it, or as far as the member file holds it if that is further
    /// (a truncate's zeros, a chunk written whole before short tails), so
    /// rot there is mended and a short tail is never padded. The entries of
    /// the sectors past that are zeroed (a rotted one is all a check can
    /// have found there). True if the role's own member took it.
    @discardableResult
    func writeRepairedChunk(role: Int, stripe: UInt64, from buffer: UnsafeMutablePointer<UInt8>, range: Range<Int>? = nil,
                            ws: StripeWorkspace) -> Bool {
        let layout = array.layout, c = array.geometry.chunkBytes(stripe)
        var limit = chunkExtent(stripe: stripe, role: role)
        var length: UInt64 = 0
        if limit < c, let f = writable(role), let st = try? f.status() {
            length = UInt64(st.st_size)
            let start = layout.chunkOffset(stripe: stripe)
            if length > start { limit = max(limit, sectorAligned(0..<Int(min(length - start, UInt64(c)))).upperBound) }
        }
        let r = range ?? 0..<c
        let ok = writeChunk(role: role, stripe: stripe, from: buffer,
                            range: min(r.lowerBound, limit)..<min(r.upperBound, limit), ws: ws)
        if limit < c && r.upperBound > limit, let f = writable(role) {
            let sector = UInt64(MemberFileLayout.sectorBytes)
            do {
                if MemberFileLayout.isLeading(stripe) {
                    if limit == 0 { try layout.clearLeadingEntries(f, fileId: fileId, from: stripe) }
                } else {
                    defer { entryCaches[role].invalidate() }
                    try clearEntries(f, stripe: stripe, sectors: UInt64(limit) / sector..<layout.sectorsPerChunk, below: length)
                }
            } catch {
                array.noteWriteError(role: role, error)
                return false
            }
        }
        return ok
    }

    /// Checks every stripe of the file; `visit` sees each stripe with problems.
    public func checkAll(mode: CheckMode, visit: (UInt64, StripeCheck) -> Void) throws {
        try lock.withReadLock {
            for s in 0..<stripeCount {
                let r = try ranges.withRange(s, s, exclusive: mode != .check) { try checkStripeLocked(s, mode: mode) }
                if !r.problems.isEmpty || r.unrecoverable { visit(s, r) }
            }
        }
    }

    /// Checks one stripe, holding it shared (check) or exclusive (repair,
    /// resync) while the rest of the file stays open to readers and writers.
    public func checkStripe(_ stripe: UInt64, mode: CheckMode) throws -> StripeCheck {
        try lock.withReadLock {
            try ranges.withRange(stripe, stripe, exclusive: mode != .check) { try checkStripeLocked(stripe, mode: mode) }
        }
    }

    func checkStripeLocked(_ stripe: UInt64, mode: CheckMode) throws -> StripeCheck {
        let g = array.geometry
        let n = g.memberCount, k = g.dataChunkCount, m = g.parityChunkCount
        let c = g.chunkBytes(stripe)
        let writable = mode != .check && !array.readOnly
        return try array.workspaces.withItem { ws in
            var result = StripeCheck()
            var bad: [Int] = []
            var missing = 0
            for i in 0..<n {
                let role = role(stripe: stripe, chunkIndex: i)
                if usable(role) == nil { missing += 1; continue }
                if !readChunk(role: role, stripe: stripe, into: ws.chunks[i].bytes, fromDisk: true) {
                    bad.append(i)
                    result.problems.append(StripeProblem(kind: .checksum, role: role, chunkIndex: i))
                }
            }
            if mode == .resync && !bad.isEmpty {
                // After a crash a data sector and its checksum may be from
                // different writes. If the rest of the stripe rebuilds a
                // sector that matches its checksum, the write was whole on
                // the other members: take that. Otherwise keep the sector
                // as found (an unacknowledged write, torn) and re-checksum it.
                let badData = bad.filter { $0 < k }
                var restored = Set<Int>()
                if bad.count + missing <= m && !badData.isEmpty {
                    var have = Set((0..<n).filter { i in
                        !bad.contains(i) && usable(role(stripe: stripe, chunkIndex: i)) != nil })
                    if (try? recover(stripe: stripe, lost: badData, have: &have, ws: ws, heal: false)) != nil {
                        for i in badData { restored.insert(i) }
                    }
                }
                // Sector by sector: a rebuilt sector that matches its entry
                // is taken; any other keeps what the member holds — except
                // a poisoned one (a rebuild could not rebuild it): what the
                // member holds there is not the data, so it is taken only
                // rebuilt, else left lost (EIO), never re-checksummed.
                for i in badData {
                    let role = role(stripe: stripe, chunkIndex: i)
                    guard let f = usable(role) else { continue }
                    let rebuilt = ws.chunks[i].bytes, raw = ws.old.bytes
                    let whole = 0..<c, sector = MemberFileLayout.sectorBytes
                    let wasRestored = restored.contains(i)
                    var lost = Set<Int>()
                    guard readChunkRaw(role: role, stripe: stripe, into: raw),
                          (try? storedEntries(f, stripe: stripe, whole) { s, entry in
                              if SectorEntry.isPoison(entry) {
                                  if !wasRestored { lost.insert(s) }
                              } else if !wasRestored || sectorCRC(rebuilt, whole, s) != SectorEntry.expectedCRC(entry, zeroSectorCRC: array.zeroSectorCRC) {
                                  memcpy(rebuilt + s * sector, raw + s * sector, sector)
                              }
                              return true
                          }) != nil else { continue }
                    if lost.isEmpty {
                        writeRepairedChunk(role: role, stripe: stripe, from: rebuilt, ws: ws)
                        bad.removeAll { $0 == i }
                    } else {
                        for s in 0..<(c / sector) where !lost.contains(s) {
                            writeRepairedChunk(role: role, stripe: stripe, from: rebuilt, range: s * sector..<(s + 1) * sector, ws: ws)
                        }
                    }
                }
            }
            if !bad.isEmpty || missing > 0 {
                // Rebuild what is bad (and, for the parity comparison below,
                // what is missing) from the verified chunks: sector by
                // sector, with the failing sectors read again, where whole
                // chunks are too few (recover).
                var have = Set((0..<n).filter { i in
                    !bad.contains(i) && usable(role(stripe: stripe, chunkIndex: i)) != nil })
                let lost = (0..<n).filter { !have.contains($0) }
                do {
                    try recover(stripe: stripe, lost: lost, have: &have, ws: ws, heal: false)
                } catch {
                    result.unrecoverable = true
                    return result
                }
                if writable {
                    for i in bad {
                        let role = role(stripe: stripe, chunkIndex: i)
                        if writeRepairedChunk(role: role, stripe: stripe, from: ws.chunks[i].bytes, ws: ws) {
                            array.noteRepaired(role: role, path: displayPath, stripe: stripe)
                            result.repaired = true
                        }
                    }
                }
                // The rebuild read only as many chunks as it needed. With
                // every member present, the others (a third mirror, RAID
                // 6's second parity) are compared below: after a torn
                // write two verified mirrors can still disagree.
                if missing > 0 { return result }
            }
            // Every chunk verified or rebuilt: does parity (or every mirror) agree with the data?
            let scratch = [ws.old, ws.delta]
            for p in 0..<m {
                let role = role(stripe: stripe, chunkIndex: k + p)
                let expected: UnsafeMutablePointer<UInt8>
                if g.level == .raid1 {
                    expected = ws.chunks[0].bytes
                } else {
                    if p == 0 {
                        for j in 0..<k { ws.scratchPointers[j] = ws.chunks[j].bytes }
                        for q in 0..<m { ws.scratchPointers[k + q] = scratch[q].bytes }
                        array.codec.encode(ws.scratchPointers, length: c)
                    }
                    expected = scratch[p].bytes
                }
                if memcmp(expected, ws.chunks[k + p].pointer, c) != 0 {
                    result.problems.append(StripeProblem(kind: g.level == .raid1 ? .mirror : .parity, role: role, chunkIndex: k + p))
                    if writable && writeRepairedChunk(role: role, stripe: stripe, from: expected, ws: ws) {
                        result.repaired = true
                    }
                }
            }
            return result
        }
    }
}
