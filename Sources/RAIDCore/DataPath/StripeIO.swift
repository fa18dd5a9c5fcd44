#if canImport(Glibc)
import Glibc
#endif

/// The data path: reads verify every chunk against its checksum and rebuild
/// from redundancy what fails (rewriting it: self-healing read); writes choose
/// full-stripe, read-modify-write or reconstruct-write, and fall back to a
/// whole-stripe reconstruct when a member is missing or a chunk fails.
extension ArrayFile {
    // MARK: chunk I/O

    /// Reads bytes `range` (4 KiB aligned; default the whole chunk) of the
    /// chunk of `stripe` held by `role` into the same offsets of `buffer`,
    /// and verifies each 4 KiB sector against its entry, as cached
    /// (EntryCache) or, `fromDisk`, as the member holds it. False when the
    /// member is not usable, the read fails or a checksum disagrees.
    ///
    /// A read that fails is tried again at once (a transient error costs no
    /// reconstruction), verified the same way (`recover` reads patiently
    /// where that is not enough). The first
    /// failure is counted (and against the member's error budget) and
    /// recorded; the retries of the same read are not.
    @inline(__always)
    func readChunk(role: Int, stripe: UInt64, into buffer: UnsafeMutablePointer<UInt8>, range: Range<Int>? = nil,
                   fromDisk: Bool = false) -> Bool {
        guard let f = usable(role) else { return false }
        let r = range ?? 0..<array.geometry.chunkBytes(stripe)
        if readChunkOnce(f, role: role, stripe: stripe, into: buffer, r, fromDisk: fromDisk, retry: false) { return true }
        var patience = 0.0   // one retry, at once: no backoff to pay for
        return readChunkAgain(role: role, stripe: stripe, into: buffer, r, fromDisk: fromDisk, attempts: 2, patience: &patience)
    }

    /// The retries of a read that failed once (see readChunk): up to
    /// `attempts` reads in all, the backoffs taken from `patience` (seconds)
    /// and none once it is spent. The sectors' entries are read (again,
    /// while one reads damaged) apart from the data, and kept once they
    /// read whole: a member that fails half its reads then needs one good
    /// read of each, not one attempt where both come back right.
    @inline(never)
    func readChunkAgain(role: Int, stripe: UInt64, into buffer: UnsafeMutablePointer<UInt8>, _ r: Range<Int>,
                                fromDisk: Bool = false, attempts: Int, patience: inout Double) -> Bool {
        let count = sectorCount(r)
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: count) { e in
            var attempt = 1
            var entriesWhole = false
            while attempt < attempts {
                // A member that vanished or was failed meanwhile is not asked again.
                guard let f = usable(role), array.member(role)?.isPresent() == true else { return false }
                if attempt > 1 {
                    let wait = ArrayFile.retryBackoff(attempt)
                    guard patience >= wait else { return false }
                    patience -= wait
                    array.environment.sleep(seconds: wait)
                }
                attempt += 1
                do {
                    if !entriesWhole {
                        _ = try storedEntries(f, stripe: stripe, r, cachedFor: fromDisk ? nil : role) { i, entry in
                            e[i] = entry
                            return true
                        }
                        entriesWhole = (0..<count).allSatisfy { SectorEntry.isWhole(e[$0]) }
                        if !entriesWhole { continue }
                    }
                    try f.readFull(into: buffer + r.lowerBound, count: r.count,
                                   at: array.layout.chunkOffset(stripe: stripe) + UInt64(r.lowerBound))
                    let zero = array.resources.zeroSectorCRC
                    if (0..<count).allSatisfy({ i in
                        SectorEntry.expectedCRC(e[i], zeroSectorCRC: zero).map { sectorCRC(buffer, r, i) == $0 } ?? false
                    }) { return true }
                } catch {
                    continue
                }
            }
            return false
        }
    }

    /// Reads patiently: as many attempts as a sector no other member can
    /// give right now deserves (see recover), and at most this much
    /// backoff in all for one stripe, so that a read beyond redundancy
    /// still answers EIO within a bounded time.
    static let patientAttempts = 16
    static let patienceSeconds = 0.25

    /// The wait before attempt `n` (2 onwards): 1, 2, then 4 ms.
    static func retryBackoff(_ n: Int) -> Double { Double(min(1 << (n - 2), 4)) / 1000 }

    @inline(__always)
    private func readChunkOnce(_ f: MemberFile, role: Int, stripe: UInt64, into buffer: UnsafeMutablePointer<UInt8>,
                               _ r: Range<Int>, fromDisk: Bool, retry: Bool) -> Bool {
        let ok: Bool
        do {
            try f.readFull(into: buffer + r.lowerBound, count: r.count,
                           at: array.layout.chunkOffset(stripe: stripe) + UInt64(r.lowerBound))
            ok = try sectorsMatch(f, stripe: stripe, buffer, r, cachedFor: fromDisk ? nil : role)
        } catch {
            if !retry { array.noteReadError(role: role, error) }
            return false
        }
        if !ok {
            if !retry { array.noteChecksumError(role: role, path: displayPath, stripe: stripe) }
            return false
        }
        return true
    }

    /// Whether every sector of `buffer` over `r` (chunk offsets, 4 KiB
    /// aligned) matches its stored entry in `f`; a damaged entry does not.
    /// `role`: f is that role's file, and its entries may come from its cache.
    @inline(__always)
    func sectorsMatch(_ f: MemberFile, stripe: UInt64, _ buffer: UnsafeMutablePointer<UInt8>, _ r: Range<Int>,
                      cachedFor role: Int? = nil) throws -> Bool {
        try storedCRCs(f, stripe: stripe, r, cachedFor: role) { i, want in
            want != nil && sectorCRC(buffer, r, i) == want!
        }
    }

    /// Calls `body` with each sector of `r` (its index from r's start) and
    /// the CRC the sector must have (nil: its entry is damaged), until
    /// `body` returns false; true if it never did.
    @inline(__always)
    func storedCRCs(_ f: MemberFile, stripe: UInt64, _ r: Range<Int>, cachedFor role: Int? = nil,
                    _ body: (Int, UInt32?) -> Bool) throws -> Bool {
        try storedEntries(f, stripe: stripe, r, cachedFor: role) { i, entry in
            body(i, SectorEntry.expectedCRC(entry, zeroSectorCRC: array.resources.zeroSectorCRC))
        }
    }

    /// Calls `body` with each sector of `r` and its entry as stored (the
    /// crash resync must tell a poisoned sector from a torn one), until
    /// `body` returns false; true if it never did.
    @inline(__always)
    func storedEntries(_ f: MemberFile, stripe: UInt64, _ r: Range<Int>, cachedFor role: Int? = nil,
                       _ body: (Int, UInt64) -> Bool) throws -> Bool {
        let count = sectorCount(r)
        return try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: count) { e in
            try readEntries(f, stripe: stripe, sector: r.lowerBound / MemberFileLayout.sectorBytes, count: count,
                            into: e.baseAddress!, cachedFor: role)
            for i in 0..<count where !body(i, UInt64(littleEndian: e[i])) { return false }
            return true
        }
    }

    /// `MemberFileLayout.readEntries`, through the cache of `role` (whose
    /// file `f` is) for a chunk past the leading ones: on a miss the whole
    /// table is read, and kept unless an entry in it reads as damaged (a
    /// bit flipped on the way would otherwise fail its sector for as long
    /// as the file stays open, and every retry with it).
    @inline(__always)
    private func readEntries(_ f: MemberFile, stripe: UInt64, sector: Int, count: Int, into e: UnsafeMutablePointer<UInt64>,
                             cachedFor role: Int?) throws {
        let layout = array.layout
        guard let role, !MemberFileLayout.isLeading(stripe) else {
            return try layout.readEntries(f, stripe: stripe, sector: sector, count: count, into: e)
        }
        let cache = entryCaches[role], generation = fileGenerations[role]
        let table = layout.table(stripe: stripe), index = layout.tableIndex(stripe: stripe, sector: sector)
        guard let stamp = cache.lookup(f, generation: generation, table: table, index: index, count: count, into: e) else { return }
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: cache.tableEntries) { t in
            let entries = t.baseAddress!
            try f.readFull(into: entries, count: cache.tableEntries * Int(MemberFileLayout.entryBytes),
                           at: layout.tableOffset(stripe: stripe))
            e.update(from: entries + index, count: count)
            for i in 0..<cache.tableEntries where !SectorEntry.isWhole(UInt64(littleEndian: entries[i])) { return }
            cache.install(f, generation: generation, table: table, entries, stamp: stamp)
        }
    }

    /// Writes bytes `range` (4 KiB aligned; default the whole chunk) of a
    /// chunk and their sectors' entries, to the role's member and to its
    /// replacement if one is running. A failed write fails the member; a
    /// full member leaves its errno in `ws` for the operation to report.
    /// True if the role's own member took it.
    @inline(__always)
    @discardableResult
    func writeChunk(role: Int, stripe: UInt64, from buffer: UnsafeMutablePointer<UInt8>, range: Range<Int>? = nil,
                    ws: StripeWorkspace) -> Bool {
        let hasPrimary = writable(role) != nil
        guard hasPrimary || shadow(role) != nil else { return false }
        let r = range ?? 0..<array.geometry.chunkBytes(stripe)
        if r.isEmpty { return hasPrimary }
        let error = withSectorEntries(buffer, r) { entries, entryBytes in
            eachTarget(role) { f in try writeSectors(f, role: role, stripe: stripe, buffer, r, entries, entryBytes) }
        }
        if let error {
            if let e = array.noteWriteError(role: role, error) { ws.spaceErrno = e }
            return false
        }
        return hasPrimary
    }

    /// Writes the chunk `role` holds in `stripe` (as far as the file
    /// reaches into it) to the member replacing `role` only.
    func writeShadowChunk(role: Int, stripe: UInt64, from buffer: UnsafeMutablePointer<UInt8>) {
        guard let s = shadow(role) else { return }
        let r = 0..<chunkExtent(stripe: stripe, role: role)
        if r.isEmpty { return }
        do {
            try withSectorEntries(buffer, r) { entries, entryBytes in
                try writeSectors(s, role: role, stripe: stripe, buffer, r, entries, entryBytes)
            }
        } catch {
            array.abandonReplacement(role: role, "\(error)")
        }
    }

    /// The number of sectors in `r`, a range of chunk offsets that must be
    /// whole sectors of one chunk.
    @inline(__always)
    private func sectorCount(_ r: Range<Int>) -> Int {
        let sector = MemberFileLayout.sectorBytes
        precondition(r.lowerBound % sector == 0 && r.upperBound % sector == 0 && r.upperBound <= array.geometry.chunkSizeBytes,
                     "sector range \(r) of a \(array.geometry.chunkSizeBytes)-byte chunk")
        return r.count / sector
    }

    /// The entries of the sectors of `buffer` over `r`, computed once for
    /// every target they are written to.
    @inline(__always)
    private func withSectorEntries<T>(_ buffer: UnsafeMutablePointer<UInt8>, _ r: Range<Int>,
                                      _ body: (UnsafeRawPointer, Int) throws -> T) rethrows -> T {
        let count = sectorCount(r)
        return try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: count) { e in
            for i in 0..<count {
                e[i] = SectorEntry.encode(crc: sectorCRC(buffer, r, i)).littleEndian
            }
            return try body(UnsafeRawPointer(e.baseAddress!), count * 8)
        }
    }

    /// Writes the sectors and then their entries to `f`, a file of `role`
    /// (its own or its replacement's), keeping the role's cache true.
    @inline(__always)
    private func writeSectors(_ f: MemberFile, role: Int, stripe: UInt64, _ buffer: UnsafeMutablePointer<UInt8>, _ r: Range<Int>,
                              _ entries: UnsafeRawPointer, _ entryBytes: Int) throws {
        let layout = array.layout, sector = r.lowerBound / MemberFileLayout.sectorBytes, count = entryBytes / 8
        try f.write(from: buffer + r.lowerBound, count: r.count, at: layout.chunkOffset(stripe: stripe) + UInt64(r.lowerBound))
        guard !MemberFileLayout.isLeading(stripe) else {
            return try layout.writeEntries(f, stripe: stripe, sector: sector, count: count, from: entries, owner: owner)
        }
        let table = layout.table(stripe: stripe), index = layout.tableIndex(stripe: stripe, sector: sector)
        do {
            try layout.writeEntries(f, stripe: stripe, sector: sector, count: count, from: entries, owner: owner)
        } catch {
            entryCaches[role].wrote(f, table: table, index: index, count: count, nil)
            throw error
        }
        entryCaches[role].wrote(f, table: table, index: index, count: count, entries)
    }

    // MARK: read

    /// Reads up to `count` bytes at `offset`; returns the bytes read (short at EOF).
    public func read(into dst: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws -> Int {
        precondition(count >= 0, "read of \(count) bytes")
        array.noteUserIO()
        return try lock.withReadLock {
            guard offset < size, count > 0 else { return 0 }
            let end = min(offset + UInt64(count), size)
            let g = array.geometry
            try ranges.withRange(g.stripe(at: offset), g.stripe(at: end - 1), exclusive: false) {
            try array.resources.workspaces.withItem { ws in
                var pos = offset
                while pos < end {
                    let stripe = g.stripe(at: pos)
                    let stripeStart = g.stripeStart(stripe)
                    let chunkBytes = UInt64(g.chunkBytes(stripe))
                    let stop = min(end, stripeStart + UInt64(g.stripeBytes(stripe)))
                    let first = Int((pos - stripeStart) / chunkBytes)
                    let last = Int((stop - 1 - stripeStart) / chunkBytes)
                    // Only the 4 KiB sectors the request touches are read.
                    // Where it covers them exactly (whole sectors: a whole
                    // chunk, an aligned 4 KiB read) they are read and
                    // verified straight into the caller's buffer; the
                    // others go through the workspace and are copied out.
                    @inline(__always) func bytes(_ j: Int) -> Range<Int> {
                        let chunkStart = stripeStart + UInt64(j) * chunkBytes
                        return Int(max(pos, chunkStart) - chunkStart)..<Int(min(stop, chunkStart + chunkBytes) - chunkStart)
                    }
                    @inline(__always) func exact(_ j: Int) -> Bool { sectorAligned(bytes(j)) == bytes(j) }
                    /// Where chunk j's byte 0 would sit in the caller's buffer
                    /// (before its start when the request begins inside the
                    /// chunk: only the sectors it covers are touched).
                    @inline(__always) func inPlace(_ j: Int) -> UnsafeMutablePointer<UInt8> {
                        (dst + (Int(stripeStart + UInt64(j) * chunkBytes) - Int(offset))).assumingMemoryBound(to: UInt8.self)
                    }
                    var lost: [Int] = []
                    var lostLo = Int(chunkBytes), lostHi = 0
                    for j in first...last {
                        let r = sectorAligned(bytes(j))
                        let into = exact(j) ? inPlace(j) : ws.chunks[j].bytes
                        if !readChunk(role: role(stripe: stripe, chunkIndex: j), stripe: stripe, into: into, range: r) {
                            lost.append(j)
                            lostLo = min(lostLo, r.lowerBound)
                            lostHi = max(lostHi, r.upperBound)
                        }
                    }
                    if !lost.isEmpty {
                        let lostSectors = lostLo..<lostHi
                        // Recovery works in the workspace over the sectors
                        // lost: bring the good whole chunks there (recover
                        // reads what else it needs over those sectors).
                        var have = Set<Int>()
                        for j in first...last where bytes(j).count == Int(chunkBytes) && !lost.contains(j) {
                            memcpy(ws.chunks[j].pointer + lostSectors.lowerBound, inPlace(j) + lostSectors.lowerBound,
                                   lostSectors.count)
                            have.insert(j)
                        }
                        do {
                            try recover(stripe: stripe, lost: lost, have: &have, ws: ws, heal: true, range: lostSectors)
                        } catch let e as FSError where e.errno == EIO {
                            array.lostSectorsFound(path: displayPath)
                            throw e
                        }
                    }
                    for j in first...last where !exact(j) || lost.contains(j) {
                        let b = bytes(j)
                        let chunkStart = stripeStart + UInt64(j) * chunkBytes
                        memcpy(dst + Int(chunkStart + UInt64(b.lowerBound) - offset), ws.chunks[j].pointer + b.lowerBound, b.count)
                    }
                    pos = stop
                }
            }
            }
            markAccessedIfPending()
            return Int(end - offset)
        }
    }

    /// A read marks the file accessed, once after it was opened or written
    /// (under relatime nothing more would change); the times are those of
    /// the lowest active role's member file, as for getattr.
    private func markAccessedIfPending() {
        guard takeAccess(), let (role, f) = timesFile() else { return }
        do { try f.markAccessed() } catch { array.noteReadError(role: role, error) }
    }

    /// Rebuilds chunks `lost` of `stripe` into the workspace from k verified
    /// chunks, over bytes `range` of each (4 KiB aligned; default whole
    /// chunks). `have` lists the chunks already in the workspace over that
    /// range; more are read as needed. With `heal`, rewrites each rebuilt
    /// chunk's range whose member is still active, and any chunk found bad
    /// along the way.
    ///
    /// Where whole chunks are too few, every redundancy still there is
    /// used before giving up: each sector on its own (two members' damage
    /// in different sectors of one stripe does not add up), and a sector
    /// that no member gives right now is read again, with a backoff.
    func recover(stripe: UInt64, lost: [Int], have: inout Set<Int>, ws: StripeWorkspace, heal: Bool,
                 range: Range<Int>? = nil, bySector: Bool = false) throws {
        let g = array.geometry
        let r = range ?? 0..<g.chunkBytes(stripe)
        var bad = lost
        var i = 0
        while have.count < g.dataChunkCount && i < g.memberCount {
            if !have.contains(i) && !lost.contains(i) {
                if readChunk(role: role(stripe: stripe, chunkIndex: i), stripe: stripe, into: ws.chunks[i].bytes, range: r) {
                    have.insert(i)
                } else {
                    bad.append(i)
                }
            }
            i += 1
        }
        guard have.count >= g.dataChunkCount else {
            if !bySector { return try recoverBySector(stripe: stripe, have: &have, ws: ws, heal: heal, range: r) }
            throw FSError.io("\(displayPath): stripe \(stripe) has \(g.memberCount - have.count) chunks lost or corrupt, more than RAID \(g.level.rawValue) can rebuild")
        }
        let sources = have.sorted().prefix(g.dataChunkCount).map { $0 }
        let wanted = heal ? bad : lost
        for (n, s) in sources.enumerated() { ws.scratchPointers[n] = ws.chunks[s].bytes + r.lowerBound }
        let outputs = ws.outputPointers
        for (n, w) in wanted.enumerated() { outputs[n] = ws.chunks[w].bytes + r.lowerBound }
        try withExtendedLifetime(ws) {
            try array.codec.reconstruct(sources: sources, sourcePointers: ws.scratchPointers, wanted: wanted,
                                        outputs: outputs, length: r.count)
        }
        // A rebuilt data chunk whose member still holds intact checksum
        // entries must match them; if not, the sources disagree (stale
        // parity from a write hole, or more damage than detected): EIO,
        // never those bytes.
        for w in wanted where w < g.dataChunkCount {
            let role = role(stripe: stripe, chunkIndex: w)
            guard let f = usable(role) else { continue }
            let buffer = ws.chunks[w].bytes
            // Entries that will not read cannot disagree (the read error
            // counts against the member). As cached where the cache holds
            // them: a member that rots its reads would rot the entries read
            // from it too, and a false disagreement is a false EIO.
            var disagrees = false
            do {
                disagrees = try !storedCRCs(f, stripe: stripe, r, cachedFor: role) { i, want in want == nil || sectorCRC(buffer, r, i) == want! }
            } catch {
                array.noteReadError(role: role, error)
            }
            if disagrees {
                throw FSError.io("\(displayPath): stripe \(stripe): chunk rebuilt for member \(role) disagrees with its checksum; the stripe's redundancy is inconsistent")
            }
        }
        for w in wanted { have.insert(w) }
        guard heal, !array.readOnly else { return }
        for w in bad {
            let role = role(stripe: stripe, chunkIndex: w)
            if usable(role) != nil && writeChunk(role: role, stripe: stripe, from: ws.chunks[w].bytes, range: r, ws: ws) {
                noteRepaired(role: role, stripe: stripe)
            }
        }
    }

    /// `recover` where whole chunks were too few: sector by sector over
    /// `r`, each from the chunks that hold it intact (read again now, and
    /// patiently where the sources are still too few), so that on return
    /// every chunk of the stripe is in the workspace over `r`. Throws EIO
    /// for a sector fewer than k chunks can give. (Verified against the
    /// cached entries where the cache holds them: a flaky member's entries
    /// would fail as often as its data.)
    private func recoverBySector(stripe: UInt64, have: inout Set<Int>, ws: StripeWorkspace, heal: Bool, range r: Range<Int>) throws {
        let g = array.geometry
        let step = MemberFileLayout.sectorBytes
        var patience = ArrayFile.patienceSeconds
        for lo in stride(from: r.lowerBound, to: r.upperBound, by: step) {
            let s = lo..<min(lo + step, r.upperBound)
            var sources = have
            var missing: [Int] = []
            // (These reads repeat ones whose errors are already recorded.)
            for i in 0..<g.memberCount where !sources.contains(i) {
                let role = role(stripe: stripe, chunkIndex: i)
                if let f = usable(role), readChunkOnce(f, role: role, stripe: stripe, into: ws.chunks[i].bytes, s, fromDisk: false, retry: true) {
                    sources.insert(i)
                } else {
                    missing.append(i)
                }
            }
            for i in missing where sources.count < g.dataChunkCount {
                if readChunkAgain(role: role(stripe: stripe, chunkIndex: i), stripe: stripe, into: ws.chunks[i].bytes, s,
                                  attempts: ArrayFile.patientAttempts, patience: &patience) {
                    sources.insert(i)
                }
            }
            missing.removeAll { sources.contains($0) }
            if missing.isEmpty { continue }   // every chunk read right this time
            try recover(stripe: stripe, lost: missing, have: &sources, ws: ws, heal: heal, range: s, bySector: true)
        }
        have = Set(0..<g.memberCount)
    }

    // MARK: write

    /// Writes `count` bytes at `offset`, extending the file as needed, and
    /// returns how many were written: all of them, or as ext4 does for a
    /// write that crosses the largest file size, those before it (EFBIG
    /// for one that starts there).
    @discardableResult
    public func write(from src: UnsafeRawPointer, count: Int, at offset: UInt64) throws -> Int {
        guard !array.readOnly else { throw FSError(EROFS, "\(displayPath): read-only array") }
        precondition(count >= 0, "write of \(count) bytes")
        if offset > UInt64(Int64.max) - UInt64(count) || !array.fits(size: offset + UInt64(count)) {
            let largest = array.largestFileBytes
            guard offset < largest else {
                throw FSError(EFBIG, "\(displayPath): a write at \(offset) is past the largest file, \(largest) bytes")
            }
            return try write(from: src, count: Int(largest - offset), at: offset)
        }
        array.noteUserIO()
        guard count > 0 else { return 0 }
        let first = array.geometry.stripe(at: offset), last = array.geometry.stripe(at: offset + UInt64(count) - 1)
        let end = offset + UInt64(count)
        /// The stripes written with their region logged around them.
        func logged(_ body: () throws -> Void) throws {
            try array.intentLog.begin(self, firstStripe: first, lastStripe: last)
            defer { array.intentLog.end(self, firstStripe: first, lastStripe: last) }
            try body()
        }
        // Within the size, the file's lock shared and the stripes
        // exclusive: writers of different stripes run at once.
        let within: Bool = try lock.withReadLock {
            guard end <= size else { return false }
            try ranges.withRange(first, last, exclusive: true) {
                try logged { try writeLocked(from: src, count: count, at: offset, sourceIsZeros: false) }
                markModifiedLocked()
            }
            return true
        }
        if within { return count }
        // Moving the size: the file's lock exclusive (the region logged
        // until the size and headers are written or the tail is zeroed).
        try lock.withWriteLock { try logged {
            do {
                try writeLocked(from: src, count: count, at: offset, sourceIsZeros: false)
            } catch {
                // A write past EOF that failed (no space, a member lost) may
                // have left its bytes there while the size stayed: zero them
                // again, as the mount after a crash would, so that what lies
                // past EOF stays zeros (short tails and known-zero reads rely
                // on it). Best effort: the region stays pinned in the log.
                if end > size {
                    do {
                        try zeroTailLocked(newSize: size, upTo: end, trustZerosPastEOF: false)
                        try dropStripesLocked()
                    } catch let cleanup {
                        array.logger.error("\(displayPath): zeroing past EOF after a failed write: \(cleanup)")
                    }
                }
                throw error
            }
            let extended = end > size
            if extended {
                size = end
                try writeHeadersLocked()
            }
            // An in-file header's write moved every member file's mtime; an
            // attribute's moves only ctime.
            markModifiedLocked(timesMoved: extended && array.layout.metadataInFile)
        } }
        return count
    }

    /// A write marks the file modified, and the next read accessed. Times
    /// are read from the lowest active role's member file, which a write
    /// may not touch (its chunks and parity lie on other members, and a
    /// size in an attribute moves only ctime): set them there, unless
    /// every member's in-file header was just written (`timesMoved`).
    /// Within one tick of the host's clock, unseen, it is set once
    /// (`takeModification`).
    func markModifiedLocked(timesMoved: Bool = false) {
        guard !timesMoved, let (role, f) = timesFile() else { return expectAccess() }
        let tick = array.environment.coarseWallClockNanoseconds()
        guard takeModification(f, tick: tick) else { return }
        do {
            try f.markModified()
            noteModified(f, tick: tick)
        } catch {
            array.noteWriteError(role: role, error)
        }
    }

    /// The member file whose times getattr reports: the lowest active role's.
    @inline(__always)
    func timesFile() -> (Int, MemberFile)? {
        for role in 0..<array.geometry.memberCount {
            if let f = usable(role) { return (role, f) }
        }
        return nil
    }

    /// The stripe loop of a write; the caller holds the file's lock
    /// exclusive, or shared with the stripes' range exclusive, and moves the
    /// size afterwards. `sourceIsZeros` means `src` is the shared zero
    /// stripe (truncate's tail), which is not advanced.
    /// Chunks at or past `knownZeroFrom` (default: the size before this
    /// write) are taken as zeros without reading them. Cleanup after a crash
    /// passes `.max`: there the invariant is what is being restored.
    func writeLocked(from src: UnsafeRawPointer, count: Int, at offset: UInt64, sourceIsZeros: Bool,
                     knownZeroFrom: UInt64? = nil) throws {
        try array.requireNotFailed(displayPath)
        let g = array.geometry
        let end = offset + UInt64(count)
        let oldSize = knownZeroFrom ?? size
        try array.resources.workspaces.withItem { ws in
            ws.spaceErrno = nil   // (left by a read's healing, which reports none)
            var pos = offset
            while pos < end {
                let stripe = g.stripe(at: pos)
                let stripeStart = g.stripeStart(stripe)
                let stop = min(end, stripeStart + UInt64(g.stripeBytes(stripe)))
                let from = sourceIsZeros ? src : src + Int(pos - offset)
                try writeStripe(stripe, lo: Int(pos - stripeStart), hi: Int(stop - stripeStart),
                                src: from, oldSize: oldSize, ws: ws)
                pos = stop
            }
        }
        try array.requireNotFailed(displayPath)
    }

    /// Writes bytes [lo, hi) of one stripe's data from `src`.
    private func writeStripe(_ stripe: UInt64, lo: Int, hi: Int, src: UnsafeRawPointer,
                             oldSize: UInt64, ws: StripeWorkspace) throws {
        let g = array.geometry
        let k = g.dataChunkCount, n = g.memberCount
        let c = g.chunkBytes(stripe)
        let stripeStart = g.stripeStart(stripe)
        let plan = StripeWritePlan(lo: lo, hi: hi, chunkBytes: c, dataCount: k, stripeStart: stripeStart, oldSize: oldSize)
        let healthy = (0..<n).allSatisfy { usable(role(stripe: stripe, chunkIndex: $0)) != nil }
        if healthy {
            if plan.isFullStripe {
                for j in 0..<k { memcpy(ws.chunks[j].pointer, src + (j * c - lo), c) }
                array.codec.encode(ws.pointers, length: c)
                try commit(stripe: stripe, dataChunks: 0..<k, ws: ws, extent: plan.extent)
                return
            }
            if g.level != .raid1 && plan.readModifyWriteReads(parityCount: g.parityChunkCount) < plan.reconstructWriteReads {
                if try readModifyWrite(stripe: stripe, plan: plan, src: src, ws: ws) { return }
            } else if try reconstructWrite(stripe: stripe, plan: plan, src: src, ws: ws) {
                return
            }
        }
        try degradedWrite(stripe: stripe, plan: plan, src: src, ws: ws)
    }

    /// Copies the new bytes of data chunk `j` over the workspace chunk.
    @inline(__always)
    private func overlay(_ j: Int, plan: StripeWritePlan, src: UnsafeRawPointer, into chunk: UnsafeMutableRawPointer) {
        let c = plan.chunkBytes
        let a = max(plan.lo, j * c), b = min(plan.hi, (j + 1) * c)
        if b > a { memcpy(chunk + (a - j * c), src + (a - plan.lo), b - a) }
    }

    /// Parity from the data over bytes `r` of the workspace's chunks.
    @inline(__always)
    private func encode(_ ws: StripeWorkspace, _ r: Range<Int>) {
        for i in 0..<array.geometry.memberCount { ws.scratchPointers[i] = ws.chunks[i].bytes + r.lowerBound }
        array.codec.encode(ws.scratchPointers, length: r.count)
    }

    /// Reconstruct-write: read the data chunks not wholly overwritten (over
    /// the sectors the write touches in any chunk), compute parity there
    /// from the full data. False if a read fails verification.
    private func reconstructWrite(stripe: UInt64, plan: StripeWritePlan, src: UnsafeRawPointer, ws: StripeWorkspace) throws -> Bool {
        let g = array.geometry
        let r = plan.touchedSectors
        for j in 0..<g.dataChunkCount {
            let chunk = ws.chunks[j]
            if plan.isFull(j) {
                overlay(j, plan: plan, src: src, into: chunk.pointer)
                continue
            }
            if plan.isKnownZero(j) {
                chunk.zero(r)
            } else if !readChunk(role: role(stripe: stripe, chunkIndex: j), stripe: stripe, into: chunk.bytes, range: r) {
                return false
            }
            overlay(j, plan: plan, src: src, into: chunk.pointer)
        }
        encode(ws, r)
        try commit(stripe: stripe, dataChunks: plan.touched, ws: ws, dataSpan: plan.span, paritySpan: r, extent: plan.extent)
        return true
    }

    /// Read-modify-write: read the sectors the write touches of each data
    /// chunk and of the parity, fold each chunk's delta into the parity.
    /// False if a read fails verification. Only those sectors change, in
    /// the data chunks and in parity, and only they are written back with
    /// their checksum entries.
    private func readModifyWrite(stripe: UInt64, plan: StripeWritePlan, src: UnsafeRawPointer, ws: StripeWorkspace) throws -> Bool {
        let g = array.geometry
        let k = g.dataChunkCount, m = g.parityChunkCount
        let parity = plan.touchedSectors
        for p in k..<g.memberCount {
            if plan.parityKnownZero {
                ws.chunks[p].zero(parity)
            } else if !readChunk(role: role(stripe: stripe, chunkIndex: p), stripe: stripe, into: ws.chunks[p].bytes, range: parity) {
                return false
            }
        }
        for j in plan.touched {
            let chunk = ws.chunks[j]
            let span = plan.span(j)
            if plan.isKnownZero(j) {
                chunk.zero(span)
            } else if !readChunk(role: role(stripe: stripe, chunkIndex: j), stripe: stripe, into: chunk.bytes, range: span) {
                return false
            }
            memcpy(ws.old.pointer + span.lowerBound, chunk.pointer + span.lowerBound, span.count)
            overlay(j, plan: plan, src: src, into: chunk.pointer)
            array.codec.xor(ws.old.bytes + span.lowerBound, chunk.bytes + span.lowerBound,
                            into: ws.delta.bytes + span.lowerBound, length: span.count)
            for q in 0..<m { ws.scratchPointers[q] = ws.chunks[k + q].bytes + span.lowerBound }
            array.codec.update(dataIndex: j, delta: ws.delta.bytes + span.lowerBound, parity: ws.scratchPointers, length: span.count)
        }
        try commit(stripe: stripe, dataChunks: plan.touched, ws: ws, dataSpan: plan.span, paritySpan: parity,
                   extent: plan.extent)
        return true
    }

    /// The slow path, for a stripe with a member missing or a chunk that
    /// failed: gather every chunk that can be verified (over the sectors
    /// the write touches), rebuild the data not being overwritten, apply
    /// the new bytes, recompute all parity there, and write it to every
    /// usable member (healing bad chunks on the way).
    private func degradedWrite(stripe: UInt64, plan: StripeWritePlan, src: UnsafeRawPointer, ws: StripeWorkspace) throws {
        let g = array.geometry
        let k = g.dataChunkCount
        let r = plan.touchedSectors
        var have = Set<Int>()
        var lost: [Int] = []
        for i in 0..<g.memberCount {
            let knownZero = i < k ? plan.isKnownZero(i) : plan.parityKnownZero
            if knownZero {
                ws.chunks[i].zero(r)
                have.insert(i)
            } else if readChunk(role: role(stripe: stripe, chunkIndex: i), stripe: stripe, into: ws.chunks[i].bytes, range: r) {
                have.insert(i)
            } else {
                lost.append(i)
            }
        }
        let lostData = lost.filter { $0 < k && !plan.isFull($0) }
        if !lostData.isEmpty {
            try recover(stripe: stripe, lost: lostData, have: &have, ws: ws, heal: false, range: r)
        }
        for j in plan.touched { overlay(j, plan: plan, src: src, into: ws.chunks[j].pointer) }
        encode(ws, r)
        let rewrite = Set(plan.touched).union(lost.filter { $0 < k })
        try commit(stripe: stripe, dataChunks: rewrite.sorted(), ws: ws, dataSpan: { _ in r }, paritySpan: r)
    }

    /// Writes the given data chunks and all parity chunks of the workspace
    /// to their members; fails with EIO only if the array is now failed.
    /// `dataSpan` and `paritySpan` limit the bytes written to those that
    /// changed (read-modify-write); by default whole chunks are written.
    ///
    /// `extent` (the healthy write paths, whose chunks were read and
    /// verified or lie past the old EOF): the bytes of the stripe that may
    /// be nonzero. Nothing past them is written: they are zeros (the
    /// zeros-past-EOF invariant), and a member file reads as zeros past its
    /// end, so the tail chunk holds only the file's bytes (in whole 4 KiB
    /// blocks) and parity only as many as its longest data chunk, the
    /// first: a small file costs its size per member, not a chunk. The
    /// sectors not written keep entries that stand for zeros.
    private func commit<S: Sequence>(stripe: UInt64, dataChunks: S, ws: StripeWorkspace,
                                     dataSpan: ((Int) -> Range<Int>)? = nil, paritySpan: Range<Int>? = nil,
                                     extent: Int? = nil) throws where S.Element == Int {
        let g = array.geometry
        let c = g.chunkBytes(stripe)
        /// The bytes of `r` (default the whole chunk) below data chunk `j`'s
        /// share of the extent.
        func clamp(_ r: Range<Int>?, _ j: Int) -> Range<Int> {
            let r = r ?? 0..<c
            guard let extent else { return r }
            let limit = g.chunkExtent(stripe: stripe, stripeExtent: extent, chunkIndex: j)
            return min(r.lowerBound, limit)..<min(r.upperBound, limit)
        }
        for j in dataChunks {
            writeChunk(role: role(stripe: stripe, chunkIndex: j), stripe: stripe, from: ws.chunks[j].bytes,
                       range: clamp(dataSpan?(j), j), ws: ws)
        }
        for p in g.dataChunkCount..<g.memberCount {
            writeChunk(role: role(stripe: stripe, chunkIndex: p), stripe: stripe, from: ws.chunks[p].bytes,
                       range: clamp(paritySpan, 0), ws: ws)
        }
        try array.requireNotFailed(displayPath)
        let full = ws.spaceErrno
        ws.spaceErrno = nil
        try throwIfOutOfSpace(full, stripe: stripe)
    }
}

/// CRC32C of sector `i` of the bytes `r` of a chunk buffer.
@inline(__always)
func sectorCRC(_ buffer: UnsafeMutablePointer<UInt8>, _ r: Range<Int>, _ i: Int) -> UInt32 {
    crc32c(buffer + r.lowerBound + i * MemberFileLayout.sectorBytes, count: MemberFileLayout.sectorBytes)
}

/// `r` widened to whole 4 KiB sectors.
@inline(__always)
func sectorAligned(_ r: Range<Int>) -> Range<Int> {
    let sector = MemberFileLayout.sectorBytes
    return (r.lowerBound & ~(sector - 1))..<((r.upperBound + sector - 1) & ~(sector - 1))
}

/// Which chunks of a stripe a write touches, and what each strategy must read.
struct StripeWritePlan {
    let lo: Int, hi: Int
    let chunkBytes: Int
    let dataCount: Int
    let stripeStart: UInt64
    let oldSize: UInt64

    var firstTouched: Int { lo / chunkBytes }
    var lastTouched: Int { (hi - 1) / chunkBytes }
    var touched: ClosedRange<Int> { firstTouched...lastTouched }

    @inline(__always)
    func isFull(_ j: Int) -> Bool { lo <= j * chunkBytes && (j + 1) * chunkBytes <= hi }

    /// The bytes of data chunk `j` the write covers, widened to whole 4 KiB
    /// sectors (the checksum's unit; ISA-L's XOR also wants 32-byte
    /// aligned lengths and buffers).
    @inline(__always)
    func span(_ j: Int) -> Range<Int> {
        let a = max(lo, j * chunkBytes) - j * chunkBytes, b = min(hi, (j + 1) * chunkBytes) - j * chunkBytes
        return sectorAligned(a..<b)
    }

    /// The sectors (chunk offsets) the write touches in any data chunk:
    /// where parity changes. The whole chunk once a chunk is covered whole
    /// or the write crosses from one chunk into the next.
    var touchedSectors: Range<Int> {
        firstTouched == lastTouched ? span(firstTouched) : 0..<chunkBytes
    }

    var isFullStripe: Bool { lo == 0 && hi == dataCount * chunkBytes }

    /// The bytes of the stripe that may be nonzero once written: up to the
    /// old EOF or the write's end, whichever is further (all of it when
    /// nothing past EOF is trusted to be zero, `oldSize` .max).
    var extent: Int {
        let old = oldSize > stripeStart ? Int(min(oldSize - stripeStart, UInt64(dataCount * chunkBytes))) : 0
        return max(old, hi)
    }

    /// Data chunks starting at or past the old EOF hold zeros (truncate
    /// keeps that true), so they need no read.
    @inline(__always)
    func isKnownZero(_ j: Int) -> Bool { stripeStart + UInt64(j * chunkBytes) >= oldSize }

    var parityKnownZero: Bool { stripeStart >= oldSize }

    func readModifyWriteReads(parityCount: Int) -> Int {
        touched.filter { !isKnownZero($0) }.count + (parityKnownZero ? 0 : parityCount)
    }

    var reconstructWriteReads: Int {
        (0..<dataCount).filter { !isFull($0) && !isKnownZero($0) }.count
    }
}
