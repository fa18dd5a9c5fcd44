#if canImport(Glibc)
import Glibc
#endif

/// One open array file, shared by every handle (and hard link) that opened
/// it: the member files by role, the logical size, and the lock that keeps
/// readers from seeing a half-written stripe.
// @unchecked Sendable: its size and member files change only with `lock` held exclusively, a stripe's bytes only within `ranges`, its access stamps only under `accessLock` (lock order: RAIDArray.swift).
public final class ArrayFile: @unchecked Sendable {
    let array: RAIDArray
    public let fileId: UInt64
    /// Member files by role; nil where the member was not active at open.
    var files: [MemberFile?]
    /// The role generation each file was opened under (see Membership.generations).
    var fileGenerations: [UInt32]
    /// Checksum tables read or written through each role's member file.
    let entryCaches: [EntryCache]
    /// Files on replacement members (raidctl replace), by role.
    var shadowFiles: [MemberFile?]
    var shadowFileGenerations: [UInt32]
    /// Logical size in bytes; guarded by `lock`.
    public internal(set) var size: UInt64
    /// For messages: the path the file was opened under.
    public internal(set) var displayPath: String
    /// Its name in the orphan area once its last visible name is gone while
    /// open; guarded by the namespace lock.
    public internal(set) var orphanPath: String?
    /// Held shared by reads and by writes within the size, which then take
    /// their stripes in `ranges`; exclusive by whatever moves the size or
    /// the member files (see StripeRangeLock).
    let lock = ReadWriteLock()
    let ranges = StripeRangeLock()
    /// Handles open on this file; guarded by the namespace lock.
    var openCount = 0
    /// The next read marks the file accessed (see markAccessedIfPending).
    private var accessPending = true
    private let accessLock = Lock()

    init(array: RAIDArray, fileId: UInt64, files: [MemberFile?], generations: [UInt32], size: UInt64, path: String) {
        self.array = array
        self.fileId = fileId
        self.rowShift = fileId % UInt64(array.geometry.memberCount)
        self.files = files
        self.fileGenerations = generations
        self.entryCaches = files.indices.map { _ in
            EntryCache(tableEntries: Int(array.layout.tableBytes / MemberFileLayout.entryBytes), budget: array.resources.entryCacheBudget)
        }
        self.shadowFiles = Array(repeating: nil, count: files.count)
        self.shadowFileGenerations = Array(repeating: 0, count: files.count)
        self.size = size
        self.displayPath = path
    }

    deinit { closeMembers() }

    /// Where the file's stripes start in md's rotation: stripe s takes the
    /// members of md's row s + rowShift (the file id modulo the member
    /// count), so files of one stripe spread over every member instead of
    /// all landing on row 0's.
    let rowShift: UInt64

    /// The role holding chunk `chunkIndex` of the file's stripe `stripe`.
    @inline(__always)
    func role(stripe: UInt64, chunkIndex: Int) -> Int {
        array.geometry.member(stripe: stripe &+ rowShift, chunkIndex: chunkIndex)
    }

    /// The chunk of the file's stripe `stripe` that `role` holds.
    @inline(__always)
    func chunkIndex(stripe: UInt64, role: Int) -> Int {
        array.geometry.chunkIndex(stripe: stripe &+ rowShift, member: role)
    }

    /// Opened again, or written: the next read marks the file accessed.
    func expectAccess() { accessLock.withLock { accessPending = true } }

    /// The coarse clock's tick at which a change last set the times file's
    /// mtime, and that file; guarded by `accessLock`. A change within the
    /// same tick leaves it, as long as nobody has read the times since:
    /// the host would have stamped it with the same time. Once they are
    /// read (`timesObserved`), the next change sets them again, as the
    /// host's multigrain timestamps do, so a stat after a change never
    /// shows the stamp a stat before it showed.
    /// (The file is held, so that its identity cannot pass to another.)
    private var modifiedMark: (tick: Int64, file: MemberFile?) = (0, nil)

    /// A change: whether the times file `f` must be marked modified at
    /// `tick` (not if a change already did in this tick, unseen since),
    /// and the next read marks the file accessed.
    func takeModification(_ f: MemberFile, tick: Int64) -> Bool {
        accessLock.withLock {
            accessPending = true
            return modifiedMark.tick != tick || modifiedMark.file !== f
        }
    }

    /// The times file `f` was marked modified at `tick`.
    func noteModified(_ f: MemberFile, tick: Int64) {
        accessLock.withLock { modifiedMark = (tick, f) }
    }

    /// The file's times were set explicitly (utimens) or read (a getattr):
    /// the next change sets mtime again, whatever the tick.
    public func timesSet() { accessLock.withLock { modifiedMark = (0, nil) } }

    /// The file's times were read (getattr): see `modifiedMark`.
    func timesObserved() { timesSet() }

    /// True once per expectAccess(): whether this read should mark it.
    func takeAccess() -> Bool {
        accessLock.withLock {
            defer { accessPending = false }
            return accessPending
        }
    }

    func closeMembers() {
        for f in files { f?.close() }
        for f in shadowFiles { f?.close() }
    }

    /// The member file of an active role: read and written.
    @inline(__always)
    func usable(_ role: Int) -> MemberFile? {
        let m = array.membership
        return m.isActive(role) && fileGenerations[role] == m.generations[role] ? files[role] : nil
    }

    /// The member file of an active or rebuilding role: written, so a
    /// member being rebuilt keeps up with new writes.
    @inline(__always)
    func writable(_ role: Int) -> MemberFile? {
        let m = array.membership
        return m.isWritable(role) && fileGenerations[role] == m.generations[role] ? files[role] : nil
    }

    /// Points `role` at `file` on the role's current member (the rebuilder
    /// attaching a new member); caller holds the write lock.
    func attach(role: Int, _ file: MemberFile) {
        files[role]?.close()
        files[role] = file
        fileGenerations[role] = array.membership.generations[role]
    }

    /// True when `role` has a file on its current member.
    func isAttached(role: Int) -> Bool {
        files[role] != nil && fileGenerations[role] == array.membership.generations[role]
    }

    /// The file on the member replacing `role`, if a replacement is running.
    @inline(__always)
    func shadow(_ role: Int) -> MemberFile? {
        let m = array.membership
        return m.shadow[role] && shadowFileGenerations[role] == m.shadowGenerations[role] ? shadowFiles[role] : nil
    }

    func attachShadow(role: Int, _ file: MemberFile) {
        shadowFiles[role]?.close()
        shadowFiles[role] = file
        shadowFileGenerations[role] = array.membership.shadowGenerations[role]
    }

    func isShadowAttached(role: Int) -> Bool { shadow(role) != nil }

    /// The replacement becomes the role's member (caller holds the write lock).
    func promoteShadow(role: Int, generation: UInt32) {
        files[role]?.close()
        files[role] = shadowFiles[role]
        fileGenerations[role] = generation
        shadowFiles[role] = nil
    }

    /// Runs `body` on the role's file and on its replacement's, if any.
    /// A failure on the replacement abandons the replacement, not the role.
    @inline(__always)
    func eachTarget(_ role: Int, _ body: (MemberFile) throws -> Void) -> Error? {
        var err: Error? = nil
        if let f = writable(role) {
            do { try body(f) } catch { err = error }
        }
        if let s = shadow(role) {
            do { try body(s) } catch { array.abandonReplacement(role: role, "\(error)") }
        }
        return err
    }

    /// Counts a chunk rewritten from redundancy, once it is durable: a
    /// crash must not undo a repair, for a repair torn by a power cut
    /// brings the damage back, and in a stripe a write had in flight the
    /// resync could then take it for the torn write and keep it.
    func noteRepaired(role: Int, stripe: UInt64) {
        if let error = eachTarget(role, { try $0.sync(dataOnly: false) }) {
            _ = array.noteWriteError(role: role, error)
            return
        }
        array.noteRepaired(role: role, path: displayPath, stripe: stripe)
    }

    // MARK: size and durability

    public func currentSize() -> UInt64 { lock.withReadLock { size } }

    /// The file's header as it is now: what a member file's attribute is
    /// made from when it is missing or damaged.
    var owner: FileHeader { FileHeader(fileId: fileId, size: size) }

    /// Writes the header (identity and size) to every active member; the
    /// caller holds the file's lock exclusive.
    func writeHeadersLocked() throws {
        let h = owner
        var full: Int32? = nil
        for role in 0..<array.geometry.memberCount {
            if let error = eachTarget(role, { try array.layout.writeHeader($0, h) }) {
                if let e = array.noteWriteError(role: role, error) { full = e }
            }
        }
        try array.requireNotFailed(displayPath)
        try throwIfOutOfSpace(full, stripe: nil)
    }

    /// Turns a full member (`full`: the errno a write met) into the
    /// caller's ENOSPC (or EDQUOT, EFBIG). The stripe may now be half
    /// written: its intent-log region is pinned so it is resynced at the
    /// next mount.
    func throwIfOutOfSpace(_ full: Int32?, stripe: UInt64?) throws {
        guard let e = full else { return }
        if let s = stripe { array.intentLog.pin(self, stripe: s) }
        throw FSError(e, "\(displayPath): \(String(cString: strerror(e))) on a member")
    }

    /// fsync/fdatasync: data, parity, checksums and size durable on every
    /// active member before returning.
    ///
    /// The intent log's regions of the file stay dirty: the flusher clears
    /// them once idle (as md's bitmap daemon clears bits after a delay).
    /// Clearing them here cost two log writes on every member per
    /// transaction of a program that writes and fsyncs in turn (SQLite).
    public func sync(dataOnly: Bool) throws {
        try lock.withReadLock {
            var full: Int32? = nil
            for role in 0..<array.geometry.memberCount {
                if let error = eachTarget(role, { try $0.sync(dataOnly: dataOnly) }) {
                    if let e = array.noteWriteError(role: role, error) { full = e }
                }
            }
            try array.requireNotFailed(displayPath)
            if let e = full {
                // Writeback failed for lack of space: what this file's
                // regions hold is uncertain until the next mount's resync.
                array.intentLog.pinFile(fileId)
                throw FSError(e, "\(displayPath): fsync: \(String(cString: strerror(e))) on a member")
            }
        }
    }

    /// Sets the logical size. Shrinking zeroes the tail of the last stripe
    /// kept (so parity covers zeros past EOF, an invariant the write path
    /// relies on) and drops whole stripes from the member files.
    ///
    /// A change of size moves mtime and ctime, as on ext4; `opening`
    /// (open with O_TRUNC) moves them even when the size stays, as Linux
    /// does for O_TRUNC and ftruncate (the kernel asks for the latter's in
    /// the same setattr).
    public func truncate(to newSize: UInt64, opening: Bool = false) throws {
        guard !array.readOnly else { throw FSError(EROFS, "\(displayPath): read-only array") }
        try array.requireFits(newSize, "\(displayPath): truncate")
        try lock.withWriteLock {
            let oldSize = size
            if newSize == oldSize {
                if opening { markModifiedLocked() }
                return
            }
            // Set after the size and the member files have changed, so the
            // stamp is not older than the change (an in-file header's write
            // moved the times file's mtime already).
            defer { markModifiedLocked(timesMoved: array.layout.metadataInFile) }
            // In the intent log like a write: a crash can leave the members'
            // headers (and, shrinking, their lengths) disagreeing, which the
            // resync's open settles; unlogged, a stat and a read could then
            // see two sizes. Growing changes no stripe (past EOF is zeros on
            // every member): the old end's region is enough. Shrinking cuts
            // the stripes past the new end on each member in turn: the
            // regions among them that hold data.
            let g = array.geometry
            let lo = g.stripe(at: min(oldSize, newSize)), hi = g.stripe(at: max(oldSize, newSize))
            let regions = newSize > oldSize ? [lo / array.intentLog.regionStripes] : regionsToLog(lo...hi)
            try array.intentLog.begin(self, regions: regions)
            defer { array.intentLog.end(self, regions: regions) }
            if newSize > oldSize {
                size = newSize
                try writeHeadersLocked()
                return
            }
            try zeroTailLocked(newSize: newSize, upTo: oldSize)
            size = newSize
            try writeHeadersLocked()
            try dropStripesLocked()
        }
    }

    /// Zeroes [newSize, end of its stripe) (bounded by `upTo`) through the
    /// write path, so data and parity agree on zeros past the new EOF.
    func zeroTailLocked(newSize: UInt64, upTo limit: UInt64, trustZerosPastEOF: Bool = true) throws {
        let tailEnd = min(limit, stripeEnd(newSize))
        guard tailEnd > newSize else { return }
        let stripe = array.geometry.stripe(at: newSize)
        try array.intentLog.begin(self, firstStripe: stripe, lastStripe: stripe)
        defer { array.intentLog.end(self, firstStripe: stripe, lastStripe: stripe) }
        try writeLocked(from: UnsafeRawPointer(array.resources.zeroStripe.pointer), count: Int(tailEnd - newSize),
                        at: newSize, sourceIsZeros: true, knownZeroFrom: trustZerosPastEOF ? nil : .max)
    }

    /// Cuts every member file back to the stripes the size needs and forgets
    /// the checksums of the stripes dropped.
    func dropStripesLocked() throws {
        for role in 0..<array.geometry.memberCount {
            if let error = eachTarget(role, { try cutToSizeLocked($0, role: role) }) {
                array.noteWriteError(role: role, error)
            }
        }
        try array.requireNotFailed(displayPath)
    }

    /// After a crash: bytes past EOF may hold data of a write whose size
    /// update was lost. Zero them so the known-zero invariant holds again.
    func trimBeyondEOFLocked() throws {
        let end = stripeEnd(size)
        // Nothing past EOF is assumed zero here: that is what is being restored.
        try zeroTailLocked(newSize: size, upTo: end, trustZerosPastEOF: false)
        try dropStripesLocked()
    }

    /// True when some member file is longer than the size needs (a crash
    /// between a size update and the member truncation, or a lost size update).
    func hasStripesBeyondEOF() -> Bool {
        let need = array.layout.fileBytes(stripeCount: stripeCount)
        for role in 0..<array.geometry.memberCount {
            if let f = usable(role), let st = try? f.status(), UInt64(st.st_size) > need { return true }
        }
        return false
    }

    /// `offset` rounded up to the end of the stripe holding it (itself on
    /// a stripe boundary).
    func stripeEnd(_ offset: UInt64) -> UInt64 {
        array.geometry.stripeStart(array.geometry.stripe(atOrAfter: offset))
    }

    /// The bytes of `stripe` the file's size reaches into: all of it before
    /// the last stripe, none past it.
    func stripeExtent(_ stripe: UInt64) -> Int {
        let g = array.geometry, start = g.stripeStart(stripe)
        return size > start ? Int(min(size - start, UInt64(g.stripeBytes(stripe)))) : 0
    }

    /// The bytes of the chunk `role` holds in `stripe` that may be nonzero
    /// (`Geometry.chunkExtent`): what a rebuild, a copy or a repair writes.
    func chunkExtent(stripe: UInt64, role: Int) -> Int {
        let g = array.geometry
        return g.chunkExtent(stripe: stripe, stripeExtent: stripeExtent(stripe), chunkIndex: chunkIndex(stripe: stripe, role: role))
    }

    /// Cuts member file `f`, the one `role` holds, back to what the size
    /// needs there (the short tail: its chunk of the last stripe only as far
    /// as the file reaches into it), and zeroes the checksum entries of the
    /// sectors past that left in its last table, so a later regrow finds
    /// "never written", not stale checksums (a member file rebuilt over an
    /// older, longer one keeps its old table; a rebuild or a repair of old
    /// wrote whole chunks). The entries go first: cut short between the
    /// two, a sector past the end still holds what its entry describes or
    /// reads as damaged, never as data.
    func cutToSizeLocked(_ f: MemberFile, role: Int) throws {
        defer { entryCaches[role].invalidate() }
        let layout = array.layout
        let count = stripeCount
        let lead = Geometry.leadingStripes
        var end = layout.fileBytes(stripeCount: 0)   // no stripe: the metadata alone (nothing in an attribute)
        var ext: UInt64 = 0
        if count > 0 {
            let last = count - 1
            ext = UInt64(chunkExtent(stripe: last, role: role))
            if ext > 0 { end = layout.chunkOffset(stripe: last) + ext } else if last > 0 { end = layout.fileBytes(stripeCount: last) }
        }
        let length = UInt64(try f.status().st_size)
        // The leading chunks' entries past what is kept, in the attribute.
        let keptLeading = min(lead, count > 0 && ext == 0 ? count - 1 : count)
        try layout.clearLeadingEntries(f, fileId: fileId, from: keptLeading)
        // The rest of the last table in use (the first, whole, when every
        // stripe kept is a leading one).
        if count > lead {
            let last = count - 1, spc = layout.sectorsPerChunk
            let first = ext / UInt64(MemberFileLayout.sectorBytes)
            let through = (layout.chunksPerGroup - (last - lead) % layout.chunksPerGroup) * spc
            try clearEntries(f, stripe: last, sectors: first..<through, below: length)
        } else {
            try clearEntries(f, stripe: lead, sectors: 0..<layout.chunksPerGroup * layout.sectorsPerChunk, below: length)
        }
        if length > end { try f.truncate(to: end) }
    }

    /// Zeroes the entries of sectors `sectors` of the chunk of `stripe`, a
    /// stripe past the leading ones (they may run on over the following
    /// chunks of its table), that lie in the first `length` bytes of `f`:
    /// past them entries read as zeros already.
    func clearEntries(_ f: MemberFile, stripe: UInt64, sectors: Range<UInt64>, below length: UInt64) throws {
        guard !sectors.isEmpty else { return }
        let from = array.layout.entryOffset(stripe: stripe, sector: Int(sectors.lowerBound))
        let to = min(length, from + UInt64(sectors.count) * MemberFileLayout.entryBytes)
        guard to > from else { return }
        try f.write(from: UnsafeRawPointer(array.resources.zeroStripe.pointer), count: Int(to - from), at: from)
    }

}

extension ArrayFile {
    /// Attributes through an open handle (the file may be unlinked): the
    /// first active member's metadata with the logical size.
    public func attributes() throws -> stat {
        try lock.withReadLock { try attributesLocked() }
    }

    private func attributesLocked() throws -> stat {
        var lastError: Error = FSError.io("\(displayPath): no active member")
        for role in 0..<array.geometry.memberCount {
            guard let f = usable(role) else { continue }
            do {
                var st = try f.status()
                timesObserved()
                let s = size
                st.st_size = off_t(s)
                st.st_blocks = blkcnt_t(array.geometry.estimatedBlocks(size: s, rowShift: rowShift, role: role,
                                                                       memberBlocks: Int64(st.st_blocks)))
                st.st_blksize = blksize_t(array.geometry.stripeDataBytes)
                st.st_ino = ino_t(fileId)
                // The orphan area's name is not one of the file's links.
                if orphanPath != nil && st.st_nlink > 0 { st.st_nlink -= 1 }
                return st
            } catch {
                lastError = error
            }
        }
        throw lastError
    }
}
