import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The write-intent log, md's write-intent bitmap for a file-striped array.
///
/// Before a stripe is modified, the region holding it (a run of stripes of
/// one file) is recorded durably on every active member; regions are cleared
/// lazily once their data and parity are durable. After a crash, every region
/// the log names is resynced (parity and checksums made to agree with the
/// data) before the array is served, which closes the RAID write hole.
///
/// Namespace changes are logged the same way, per directory: before a
/// create, unlink, rename, link, mkdir, rmdir, symlink, mknod, chmod or chown
/// reaches any member, the directories it changes are recorded durably;
/// they are cleared once idle and synced on every member. After a crash the
/// mount brings every member's copy of those directories in line with the
/// first active member's before anything is served (see NamespaceRepair).
///
/// Each member keeps the log in two fixed slots written in place with
/// alternating sequence numbers; the newest slot whose checksum verifies wins.
/// A directory's entry has file id 0 (file ids start at 2^32) and its path.
// @unchecked Sendable: its regions and counts change only under `lock`, its slots are written only under `persistLock`.
public final class IntentLog: @unchecked Sendable {
    public struct Region: Hashable, Sendable {
        public let fileId: UInt64
        public let index: UInt64
    }

    struct State {
        var path: String
        var inflight: Int
        var generation: UInt64
        var lastWrite: Double
        /// Left inconsistent by a failed write: kept until the next mount's resync.
        var pinned = false
        /// A new file's region logged before the file exists (`takeFileId`),
        /// not handed out yet: never cleared.
        var reserved = false
        /// A directory's entry that covers every directory below it too:
        /// the time (seconds since the epoch) it came to, before which
        /// nothing under it changed unlogged (0: the directory alone).
        var subtreeSince: UInt64 = 0
    }

    static let magic: [UInt8] = Array("RAIDFSIL".utf8)
    static let slotBytes = 128 * 1024
    static let headerBytes = 32

    /// Stripes per region: about 64 MiB of file data (md's bitmap chunk on large arrays).
    public let regionStripes: UInt64
    public let enabled: Bool
    private unowned let array: RAIDArray
    private let lock = Lock()
    private let persistLock = Lock()
    private var dirty: [Region: State] = [:]
    /// Directories with namespace changes not yet known durable everywhere.
    private var dirtyDirectories: [String: State] = [:]
    private var sequence: UInt64 = 0
    /// The entries as the slot holds them, appended to as entries are
    /// added, so that a persist costs the write, not an encoding of every
    /// entry (creating thousands of files added one entry each, and
    /// encoding them all each time was quadratic). Rebuilt after entries
    /// are cleared.
    private var encodedDirectories: [UInt8] = []
    private var encodedRegions: [UInt8] = []
    private var encodingValid = true
    /// The dirty set outgrew a slot: resync everything after a crash.
    private var overflow = false
    /// File ids whose first region is logged already (`reserved`), for
    /// the next files created, in the order they are handed out.
    private var pool: [UInt64] = []
    /// How many ids one persist reserves.
    static let poolSize = 256

    init(array: RAIDArray, enabled: Bool) {
        self.array = array
        self.enabled = enabled
        regionStripes = max(1, UInt64(64 << 20) / UInt64(array.geometry.stripeDataBytes))
    }

    /// An id for a new file at `path` whose first region (its first 64 MiB)
    /// is in the log already, so that the file's first write persists
    /// nothing: the log reserves `poolSize` ids at a time, drawn from
    /// `generate`, with one persist. Caller holds the namespace lock.
    ///
    /// A reserved id is logged without a path; it gets the file's path as
    /// it is handed out, which the next persist records. After a crash the
    /// ids still without a path are looked for in the directories the log
    /// names: a file created since the last persist was created in one of
    /// them (its create logged its directory, which no persist has cleared
    /// since), or moved into one.
    func takeFileId(for path: String, generate: () -> UInt64) throws -> UInt64 {
        guard enabled else { return generate() }
        let refill: Bool = lock.withLock {
            guard pool.isEmpty else { return false }
            var fresh = Set<UInt64>()
            while fresh.count < IntentLog.poolSize {
                let id = generate()
                let key = Region(fileId: id, index: 0)
                guard dirty[key] == nil, fresh.insert(id).inserted else { continue }
                dirty[key] = State(path: "", inflight: 0, generation: 0, lastWrite: 0, reserved: true)
                pool.append(id)
                if encodingValid { IntentLog.appendEntry(&encodedRegions, id, 0, "") }
            }
            return true
        }
        if refill { try persist() }
        let now = array.environment.wallClockSeconds()
        return lock.withLock {
            let id = pool.removeFirst()
            let key = Region(fileId: id, index: 0)
            dirty[key]!.reserved = false
            dirty[key]!.path = path
            dirty[key]!.lastWrite = now
            encodingValid = false
            return id
        }
    }

    /// Forgets the ids reserved and not handed out (a clean shutdown), so
    /// that the log left behind names nothing; true when it changed.
    @discardableResult
    func releasePool() -> Bool {
        lock.withLock {
            guard !pool.isEmpty else { return false }
            for id in pool { dirty[Region(fileId: id, index: 0)] = nil }
            pool = []
            encodingValid = false
            return true
        }
    }

    /// Marks the regions of stripes first...last of `file` dirty, durably,
    /// before the caller writes them. Pair with `end`.
    func begin(_ file: ArrayFile, firstStripe: UInt64, lastStripe: UInt64) throws {
        precondition(firstStripe <= lastStripe, "intent log: stripes \(firstStripe)...\(lastStripe) of \(file.displayPath)")
        try begin(file, regions: (firstStripe / regionStripes)...(lastStripe / regionStripes))
    }

    /// `begin` for regions by index (those of a range that hold data:
    /// `ArrayFile.regionsToLog`). Pair with `end(_:regions:)`.
    func begin<Regions: Sequence<UInt64>>(_ file: ArrayFile, regions: Regions) throws {
        guard enabled else { return }
        let needPersist: Bool = lock.withLock {
            var added = false
            for r in regions {
                let key = Region(fileId: file.fileId, index: r)
                if dirty[key] == nil {
                    dirty[key] = State(path: file.displayPath, inflight: 0, generation: 0, lastWrite: 0)
                    if encodingValid { IntentLog.appendEntry(&encodedRegions, key.fileId, key.index, file.displayPath) }
                    added = true
                }
                dirty[key]!.inflight += 1
            }
            return added
        }
        if needPersist { try persist() }
    }

    func end(_ file: ArrayFile, firstStripe: UInt64, lastStripe: UInt64) {
        end(file, regions: (firstStripe / regionStripes)...(lastStripe / regionStripes))
    }

    func end<Regions: Sequence<UInt64>>(_ file: ArrayFile, regions: Regions) {
        guard enabled else { return }
        let now = array.environment.wallClockSeconds()
        lock.withLock {
            for r in regions {
                let key = Region(fileId: file.fileId, index: r)
                precondition((dirty[key]?.inflight ?? 0) > 0, "intent log: a write to region \(r) of \(file.displayPath) ended twice")
                dirty[key]!.inflight -= 1
                dirty[key]!.generation += 1
                dirty[key]!.lastWrite = now
            }
        }
    }

    /// Marks directories `dirs` dirty, durably, before a namespace change
    /// reaches any member, and returns the entries that stand for them
    /// (pass them to `endNamespace`).
    ///
    /// A directory below one whose entry covers its subtree is dirty
    /// already. One whose parent is dirty makes the parent's entry cover
    /// its subtree: a tree being filled (a copy, an unpack) is logged with
    /// one persist for the tree, not one for each of its directories, and
    /// the repair after a crash compares the directories of the subtree
    /// that changed since (NamespaceRepair).
    func beginNamespace(_ dirs: [String]) throws -> [String] {
        guard enabled else { return [] }
        let now = array.environment.wallClockSeconds()
        let (keys, needPersist): ([String], Bool) = lock.withLock {
            var added = false
            var keys: [String] = []
            for d in dirs {
                var key = d
                if dirtyDirectories[d] == nil {
                    if let a = coveringSubtreeLocked(d) {
                        key = a
                    } else if d != "/" && dirtyDirectories[parentDirectory(d)] != nil {
                        // Back a little from now: the host's file times
                        // are coarser than its clock.
                        key = parentDirectory(d)
                        dirtyDirectories[key]!.subtreeSince = UInt64(max(0, now - IntentLog.subtreeSlackSeconds))
                        encodingValid = false
                        added = true
                    } else {
                        dirtyDirectories[d] = State(path: d, inflight: 0, generation: 0, lastWrite: 0)
                        if encodingValid { IntentLog.appendEntry(&encodedDirectories, 0, 0, d) }
                        added = true
                    }
                }
                dirtyDirectories[key]!.inflight += 1
                keys.append(key)
            }
            return (keys, added)
        }
        if needPersist {
            do {
                try persist()
            } catch {
                endNamespace(keys)
                throw error
            }
        }
        return keys
    }

    /// The time the entry of directory `d` covers its subtree since (0:
    /// it does not, or `d` has none).
    func subtreeSince(_ d: String) -> UInt64 { lock.withLock { dirtyDirectories[d]?.subtreeSince ?? 0 } }

    /// How far before its time a subtree entry takes changes to be.
    static let subtreeSlackSeconds = 10.0

    /// The nearest directory above `d` whose entry covers its subtree.
    private func coveringSubtreeLocked(_ d: String) -> String? {
        var p = d
        while p != "/" {
            p = parentDirectory(p)
            if let e = dirtyDirectories[p], e.subtreeSince != 0 { return p }
        }
        return nil
    }

    /// `dirs`: what `beginNamespace` returned.
    func endNamespace(_ dirs: [String]) {
        guard enabled else { return }
        let now = array.environment.wallClockSeconds()
        lock.withLock {
            for d in dirs {
                precondition((dirtyDirectories[d]?.inflight ?? 0) > 0, "intent log: namespace change on \(d) ended twice")
                dirtyDirectories[d]!.inflight -= 1
                dirtyDirectories[d]!.generation += 1
                dirtyDirectories[d]!.lastWrite = now
            }
        }
    }

    /// Keeps directories `dirs` in the log for the rest of this mount (their
    /// members may disagree until the next mount repairs them).
    func pinDirectories(_ dirs: [String]) {
        guard enabled else { return }
        lock.withLock { for d in dirs { dirtyDirectories[d]?.pinned = true } }
    }

    /// Keeps the region of `stripe` in the log for the rest of this mount.
    func pin(_ file: ArrayFile, stripe: UInt64) {
        guard enabled else { return }
        lock.withLock { dirty[Region(fileId: file.fileId, index: stripe / regionStripes)]?.pinned = true }
    }

    func pinFile(_ fileId: UInt64) {
        guard enabled else { return }
        lock.withLock { for k in dirty.keys where k.fileId == fileId { dirty[k]!.pinned = true } }
    }

    /// Forgets the regions and directories that saw no change since their
    /// generations were taken; true when the log changed.
    private func clearLocked(_ generations: [Region: UInt64], directories: [String: UInt64]) -> Bool {
        var any = false
        for (k, g) in generations where dirty[k]?.inflight == 0 && dirty[k]?.generation == g && dirty[k]?.pinned == false {
            dirty[k] = nil
            any = true
        }
        for (k, g) in directories where dirtyDirectories[k]?.inflight == 0 && dirtyDirectories[k]?.generation == g
            && dirtyDirectories[k]?.pinned == false {
            dirtyDirectories[k] = nil
            any = true
        }
        if dirty.count == pool.count && dirtyDirectories.isEmpty && overflow { overflow = false; any = true }
        if any { encodingValid = false }
        return any
    }

    /// Clears every region idle for `idleSeconds`, after making all members
    /// durable (syncfs). The background flusher calls this.
    public func flushIdle(idleSeconds: Double) throws {
        guard enabled else { return }
        let now = array.environment.wallClockSeconds()
        // Shutting down: the ids reserved go too, persisted with the rest.
        let released = idleSeconds == 0 && releasePool()
        let (candidates, directories, due): ([Region: UInt64], [String: UInt64], Bool) = lock.withLock {
            var out: [Region: UInt64] = [:]
            var oldestRegion = now
            for (k, v) in dirty where v.inflight == 0 && !v.pinned && !v.reserved && now - v.lastWrite >= idleSeconds {
                out[k] = v.generation
                oldestRegion = min(oldestRegion, v.lastWrite)
            }
            var dirs: [String: UInt64] = [:]
            var oldest = now
            for (k, v) in dirtyDirectories where v.inflight == 0 && !v.pinned && now - v.lastWrite >= idleSeconds {
                dirs[k] = v.generation
                oldest = min(oldest, v.lastWrite)
            }
            // A syncfs of every member is what clearing costs: it waits
            // until the oldest idle entry has been idle five times as long
            // (or the log holds many), as files being written one after the
            // other, or a tree being filled, would otherwise sync all
            // members twice a second.
            let count = dirty.count - pool.count + dirtyDirectories.count
            let due = (!out.isEmpty || !dirs.isEmpty)
                && (idleSeconds == 0 || now - min(oldest, oldestRegion) >= idleSeconds * 5 || count >= 512)
            return (out, dirs, due)
        }
        guard due else {
            if released { try persist() }
            return
        }
        array.syncAllMembers()
        if lock.withLock({ clearLocked(candidates, directories: directories) }) || released { try persist() }
    }

    /// Writes the dirty set to every active member (fdatasync'ed).
    func persist() throws {
        try persistLock.withLock {
            let (bytes, slot): ([UInt8], Int) = lock.withLock {
                sequence += 1
                return (encode(), Int(sequence % 2))
            }
            var ok = 0
            var lastError: Error? = nil
            for role in array.activeRoles {
                do {
                    guard let m = array.member(role) else { continue }
                    try m.writeIntentLog(slot: slot, slotBytes: IntentLog.slotBytes, bytes)
                    ok += 1
                } catch {
                    lastError = error
                    if let e = array.noteWriteError(role: role, error) {
                        throw FSError(e, "write-intent log: \(String(cString: strerror(e))) on \(array.memberName(role))")
                    }
                }
            }
            if ok == 0 {
                throw FSError.io("write-intent log: no member accepted it (\(lastError.map { "\($0)" } ?? "no active member"))")
            }
        }
    }

    /// One entry: file id, region index (for a directory, file id 0 and
    /// the time its subtree has been dirty since, or 0), path.
    static func appendEntry(_ out: inout [UInt8], _ fileId: UInt64, _ index: UInt64, _ path: String) {
        let p = path.utf8.prefix(4096)
        appendLE64(&out, fileId)
        appendLE64(&out, index)
        out.append(UInt8(p.count & 0xff)); out.append(UInt8(p.count >> 8))
        out += p
    }

    private func encode() -> [UInt8] {
        if !encodingValid {
            // Sorted, so that one set of entries always encodes the same way.
            encodedDirectories = []
            for d in dirtyDirectories.keys.sorted() { IntentLog.appendEntry(&encodedDirectories, 0, dirtyDirectories[d]!.subtreeSince, d) }
            encodedRegions = []
            for (k, v) in dirty.sorted(by: { ($0.key.fileId, $0.key.index) < ($1.key.fileId, $1.key.index) }) {
                IntentLog.appendEntry(&encodedRegions, k.fileId, k.index, v.path)
            }
            encodingValid = true
        }
        var count = UInt32(dirtyDirectories.count + dirty.count)
        var over = overflow
        var payload = encodedDirectories
        if IntentLog.headerBytes + encodedDirectories.count + encodedRegions.count <= IntentLog.slotBytes {
            payload += encodedRegions
        } else {
            // More than a slot holds: whole entries up to the slot's end,
            // directories first, and the overflow flag (resync everything
            // after a crash).
            over = true
            payload = []
            count = 0
            var i = 0
            let all = encodedDirectories + encodedRegions
            while i + 18 <= all.count {
                let len = 18 + (Int(all[i + 16]) | Int(all[i + 17]) << 8)
                if IntentLog.headerBytes + payload.count + len > IntentLog.slotBytes { break }
                payload += all[i..<(i + len)]
                count += 1
                i += len
            }
        }
        overflow = over
        var out = IntentLog.magic
        appendLE(&out, 1)                      // format version
        appendLE(&out, count)
        appendLE64(&out, sequence)
        appendLE(&out, UInt32(payload.count) | (over ? 0x8000_0000 : 0))
        appendLE(&out, crc32c(payload))
        return out + payload
    }

    /// Dirty regions recorded in a member's log: the newest valid slot.
    static func decode(_ bytes: [UInt8]) -> (sequence: UInt64, overflow: Bool, regions: [(Region, String)])? {
        var best: (UInt64, Bool, [(Region, String)])? = nil
        for slot in 0..<2 {
            let base = slot * slotBytes
            guard bytes.count >= base + headerBytes, Array(bytes[base..<(base + 8)]) == magic,
                  readLE32(bytes, base + 8) == 1 else { continue }
            let count = Int(readLE32(bytes, base + 12))
            let seq = readLE64(bytes, base + 16)
            let lenWord = readLE32(bytes, base + 24)
            let len = Int(lenWord & 0x7fff_ffff)
            guard bytes.count >= base + headerBytes + len, len <= slotBytes - headerBytes else { continue }
            let payload = Array(bytes[(base + headerBytes)..<(base + headerBytes + len)])
            guard crc32c(payload) == readLE32(bytes, base + 28) else { continue }
            var regions: [(Region, String)] = []
            var i = 0
            for _ in 0..<count {
                guard i + 18 <= payload.count else { break }
                let id = readLE64(payload, i), idx = readLE64(payload, i + 8)
                let plen = Int(payload[i + 16]) | Int(payload[i + 17]) << 8
                guard i + 18 + plen <= payload.count else { break }
                regions.append((Region(fileId: id, index: idx), String(decoding: payload[(i + 18)..<(i + 18 + plen)], as: UTF8.self)))
                i += 18 + plen
            }
            if best == nil || seq > best!.0 { best = (seq, lenWord & 0x8000_0000 != 0, regions) }
        }
        return best.map { (sequence: $0.0, overflow: $0.1, regions: $0.2) }
    }

    /// Seeds the sequence so new slots supersede what is on disk.
    func adopt(sequence seq: UInt64) { lock.withLock { sequence = max(sequence, seq) } }
}

@inline(__always)
func appendLE64(_ out: inout [UInt8], _ v: UInt64) {
    appendLE(&out, UInt32(truncatingIfNeeded: v))
    appendLE(&out, UInt32(truncatingIfNeeded: v >> 32))
}

@inline(__always)
func readLE64(_ b: [UInt8], _ at: Int) -> UInt64 {
    UInt64(readLE32(b, at)) | UInt64(readLE32(b, at + 4)) << 32
}
