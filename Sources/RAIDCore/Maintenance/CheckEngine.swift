import Foundation
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

    /// Reads a chunk (or bytes `range` of it, into the same offsets of
    /// `buffer`) without verifying it (resync keeps what is on disk).
    func readChunkRaw(role: Int, stripe: UInt64, into buffer: UnsafeMutablePointer<UInt8>, range: Range<Int>? = nil) -> Bool {
        guard let f = usable(role) else { return false }
        let r = range ?? 0..<array.geometry.chunkBytes(stripe)
        do {
            try f.readFull(into: buffer + r.lowerBound, count: r.count, at: array.layout.chunkOffset(stripe: stripe) + UInt64(r.lowerBound))
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
        return try array.resources.workspaces.withItem { ws in
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
            // Sector rows whose data a resync found lost: marked damaged on
            // every parity chunk (and on any data chunk rebuilt below), so
            // that no later read rebuilds them from parity that does not
            // match them.
            var lostRows = IndexSet()
            defer { if writable && !lostRows.isEmpty { poisonRows(lostRows, stripe: stripe, chunks: Array(k..<n) + bad.filter { $0 < k }) } }
            if mode == .resync && !bad.isEmpty {
                // After a crash a data sector and its checksum may be from
                // different writes. If the rest of the stripe rebuilds a
                // sector that matches its checksum, the write was whole on
                // the other members: take that. Otherwise keep the sector
                // as found (an unacknowledged write, torn) and re-checksum it.
                let badData = bad.filter { $0 < k }
                let sector = MemberFileLayout.sectorBytes, rows = (c + sector - 1) / sector
                var restored = Set<Int>()
                var consistent = IndexSet()
                if bad.count + missing <= m && !badData.isEmpty {
                    let good = (0..<n).filter { i in !bad.contains(i) && usable(role(stripe: stripe, chunkIndex: i)) != nil }
                    var have = Set(good)
                    if (try? recover(stripe: stripe, lost: badData, have: &have, ws: ws, heal: false)) != nil {
                        for i in badData { restored.insert(i) }
                        if good.count > k { consistent = rowsMatchingParity(stripe: stripe, goodParity: good.filter { $0 >= k }, ws: ws) }
                    }
                }
                // Sector by sector: a rebuilt sector that matches its entry
                // is taken, and so is one the member holds matching it. Any
                // other is read again, patiently: a read that
                // then matches its entry was a fault of the read, not a torn
                // write, and is taken. Only a sector that still disagrees
                // and reads the same twice is kept as the member holds it
                // (an unacknowledged write, torn) and re-checksummed; one
                // that reads differently each time is left as it is, to
                // read as EIO, for its bytes on disk are not known.
                //
                // A poisoned sector (a rebuild could not rebuild it) holds
                // no data and no checksum to verify a rebuild by. It is
                // taken rebuilt only where the stripe holds more than it
                // needs and all of it agrees there (parity encoded from the
                // rebuilt data matches every intact parity chunk); with
                // just enough chunks a stale one (a write hole) would
                // rebuild it wrong, unseen. Else it is lost.
                var patience = ArrayFile.patienceSeconds
                for i in badData {
                    let role = role(stripe: stripe, chunkIndex: i)
                    guard let f = usable(role) else { continue }
                    let rebuilt = ws.chunks[i].bytes, raw = ws.old.bytes, again = ws.delta.bytes
                    let whole = 0..<c
                    let wasRestored = restored.contains(i)
                    var lost = IndexSet(), unsure: [Int] = []
                    guard readChunkRaw(role: role, stripe: stripe, into: raw),
                          (try? storedEntries(f, stripe: stripe, whole) { s, entry in
                              if SectorEntry.isPoison(entry) {
                                  if !wasRestored || !consistent.contains(s) { lost.insert(s) }
                              } else {
                                  let want = SectorEntry.expectedCRC(entry, zeroSectorCRC: array.resources.zeroSectorCRC)
                                  if wasRestored && sectorCRC(rebuilt, whole, s) == want { return true }
                                  if sectorCRC(raw, whole, s) == want {
                                      memcpy(rebuilt + s * sector, raw + s * sector, min(sector, c - s * sector))
                                  } else {
                                      unsure.append(s)
                                  }
                              }
                              return true
                          }) != nil else { continue }
                    for s in unsure {
                        let r = s * sector..<min((s + 1) * sector, c)
                        if readChunkAgain(role: role, stripe: stripe, into: again, r, fromDisk: true,
                                          attempts: ArrayFile.patientAttempts, patience: &patience)
                            || (readChunkRaw(role: role, stripe: stripe, into: again, range: r)
                                && memcmp(again + r.lowerBound, raw + r.lowerBound, r.count) == 0) {
                            memcpy(rebuilt + r.lowerBound, again + r.lowerBound, r.count)
                        } else {
                            lost.insert(s)
                        }
                    }
                    // The chunk is written but for its lost sectors, which
                    // keep their entries (to read as EIO), and is done.
                    for run in IndexSet(integersIn: 0..<rows).subtracting(lost).rangeView {
                        let r = run.lowerBound * sector..<min(run.upperBound * sector, c)
                        writeRepairedChunk(role: role, stripe: stripe, from: rebuilt, range: lost.isEmpty ? nil : r, ws: ws)
                    }
                    bad.removeAll { $0 == i }
                    lostRows.formUnion(lost)
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
                            noteRepaired(role: role, stripe: stripe)
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

    /// The sector rows of `stripe` where parity encoded from the data in
    /// the workspace (for RAID 1, the first mirror) matches every chunk of
    /// `goodParity`, as read into the workspace. Uses `ws.old` and `ws.delta`.
    private func rowsMatchingParity(stripe: UInt64, goodParity: [Int], ws: StripeWorkspace) -> IndexSet {
        let g = array.geometry
        let k = g.dataChunkCount, m = g.parityChunkCount, c = g.chunkBytes(stripe)
        let sector = MemberFileLayout.sectorBytes
        let scratch = [ws.old, ws.delta]
        if g.level != .raid1 {
            for j in 0..<k { ws.scratchPointers[j] = ws.chunks[j].bytes }
            for q in 0..<m { ws.scratchPointers[k + q] = scratch[q].bytes }
            array.codec.encode(ws.scratchPointers, length: c)
        }
        var rows = IndexSet()
        for lo in stride(from: 0, to: c, by: sector) {
            let count = min(sector, c - lo)
            let agrees = goodParity.allSatisfy { p in
                let expected = g.level == .raid1 ? ws.chunks[0].bytes : scratch[p - k].bytes
                return memcmp(expected + lo, ws.chunks[p].bytes + lo, count) == 0
            }
            if agrees { rows.insert(lo / sector) }
        }
        return rows
    }

    /// Marks sector rows `rows` of `stripe` damaged on the members of
    /// chunks `chunks` (and on their replacements).
    private func poisonRows(_ rows: IndexSet, stripe: UInt64, chunks: [Int]) {
        for i in chunks {
            let role = role(stripe: stripe, chunkIndex: i)
            for f in [writable(role), shadow(role)].compactMap({ $0 }) {
                do {
                    for run in rows.rangeView { try array.layout.poison(f, stripe: stripe, sectors: run, owner: owner) }
                } catch {
                    array.noteWriteError(role: role, error)
                }
            }
            entryCaches[role].invalidate()
        }
    }
}
