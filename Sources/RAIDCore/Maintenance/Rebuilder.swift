import Foundation
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// Rebuilds lost roles onto new members while the array keeps serving —
/// every lost role in one pass, as md recovers two RAID 6 devices at once:
/// the tree is walked in sorted depth-first order, each file's chunks for
/// those roles are reconstructed together from one read of the survivors a
/// few stripes at a time under the file's lock (user I/O interleaves
/// between batches), and each role's progress is checkpointed in the
/// superblocks so a remount resumes where it stopped. Only data that exists
/// is rebuilt. New writes reach the members as soon as they are attached, so
/// what the walk has done stays current.
// @unchecked Sendable: its progress, targets and stop flag change only under `lock`; the rest is set in init.
public final class Rebuilder: @unchecked Sendable {
    public struct Target {
        public let role: Int
        public let member: Member
        public let uuid: String
    }
    /// The roles rebuilt in this pass (one when replacing).
    public let targets: [Target]
    public var role: Int { targets[0].role }
    public var target: Member { targets[0].member }
    /// raidctl replace: the role's member keeps serving; chunks are copied
    /// from it (rebuilt from the others where it fails) to the replacement.
    public let replacing: Bool
    private unowned let array: RAIDArray
    private let rateBytesPerSecond: Double?
    private let lock = Lock()
    private var bytesDoneValue: UInt64
    private var bytesTotalValue: UInt64 = 0
    private let bytesAtStart: UInt64
    private let startedAt: Double
    private var runningValue = true
    private var stopRequested = false
    private var missedDuringWalk = false
    /// Files finished, by role: file id to the inode on the target that
    /// was finished (a file can have had more than one there: a name made
    /// apart, then the other name unlinked; only the one finished is done).
    private var completed: [Int: [UInt64: ino_t]] = [:]
    /// By role, the name each file with several links was first given on
    /// the target: its other names are linked to it there, so the target
    /// holds one file, as the other members do, not a copy per name.
    private var linkedNames: [Int: [UInt64: String]] = [:]
    /// Where each resumed role's checkpoint stood: files up to it are done.
    private var resumeAfter: [Int: [String]] = [:]
    private var lastPath = ""
    /// bytesDone when `lastPath` was finished: what a checkpoint records.
    private var lastPathBytes: UInt64 = 0
    private var lastCheckpoint: Double
    static let stripesPerBatch: UInt64 = 16

    init(array: RAIDArray, targets: [Target], rateBytesPerSecond: Double?,
         resume: [RebuildCheckpoint], replacing: Bool = false) {
        precondition(!targets.isEmpty && (!replacing || targets.count == 1), "a rebuild needs targets; a replacement has one")
        self.array = array
        self.replacing = replacing
        self.targets = targets
        self.rateBytesPerSecond = rateBytesPerSecond
        startedAt = array.environment.wallClockSeconds()
        lastCheckpoint = startedAt
        var resumedBytes: UInt64? = nil
        for t in targets {
            if let r = resume.first(where: { $0.role == t.role && $0.memberUUID == t.uuid }) {
                resumeAfter[t.role] = Rebuilder.components(r.lastPath)
                resumedBytes = min(resumedBytes ?? r.bytesDone, r.bytesDone)
            } else {
                resumedBytes = 0
            }
        }
        bytesDoneValue = resumedBytes ?? 0
        bytesAtStart = bytesDoneValue
        lastPathBytes = bytesDoneValue
    }

    public var status: ProgressStatus {
        lock.withLock {
            let elapsed = max(0.001, array.environment.wallClockSeconds() - startedAt)
            let rate = Double(bytesDoneValue - bytesAtStart) / elapsed
            let total = max(bytesTotalValue, bytesDoneValue)
            let remaining = Double(total - bytesDoneValue)
            return ProgressStatus(running: runningValue,
                                  progress: total == 0 ? (runningValue ? 0 : 1) : Double(bytesDoneValue) / Double(total),
                                  bytesPerSecond: rate, etaSeconds: rate > 0 ? remaining / rate : nil,
                                  role: role, target: targets.map { $0.member.name }.joined(separator: ", "))
        }
    }

    public var isRunning: Bool { lock.withLock { runningValue } }
    /// The job's thread is done with the array (it goes on after
    /// `isRunning` turns false: finishing the rebuild, recording events).
    /// The unmount waits for it: the array may be freed once it returns.
    var hasExited: Bool { lock.withLock { exitedValue } }
    private var exitedValue = false

    /// Stops at the next batch; the checkpoint lets a later pass resume.
    func stop() { lock.withLock { stopRequested = true } }

    /// The targets that still hold their roles (one that failed in turn is
    /// dropped; a later rebuild gives its role the next spare).
    private var liveTargets: [Target] { targets.filter { array.isCurrentTarget(self, $0) } }

    /// Asked to stop (unmount, or a new loss to take into the pass), or no
    /// target is left.
    private var shouldStop: Bool { lock.withLock { stopRequested } || liveTargets.isEmpty }

    /// File `fileId` was opened by a name `path` a target may lack: what
    /// is done through it misses that target, so the walk does the file
    /// again, in one more pass (a rename may take the name behind the walk
    /// before the walk meets it). The rebuild's own opens do not count.
    func openedWithoutTarget(_ path: String, fileId: UInt64) {
        for t in targets where (try? t.member.lstat(path)) == nil {
            redo(fileId, on: t.role)
        }
    }

    /// `from` was linked as `to` while a target lacked `to`'s directory
    /// (the walk had not made it there yet). A target that holds the file
    /// as `from` keeps that as the name the walk links the file's other
    /// names to, so meeting `to` the walk links it to that inode instead of
    /// copying the file apart. A file the walk did with one name has no
    /// such name recorded; without it a replacement could hold two copies,
    /// each missing the writes made through the other's name.
    func linkedWithoutTarget(from: String, to: String, fileId: UInt64) {
        for t in targets where (try? t.member.lstat(to)) == nil && inode(of: fileId, at: from, on: t) != nil {
            lock.withLock {
                if linkedNames[t.role]?[fileId] == nil { linkedNames[t.role, default: [:]][fileId] = from }
            }
        }
    }

    /// File `fileId` was opened writing to `inodes` (role, inode) on the
    /// targets: where the rebuild finished the file on another inode there,
    /// the one written to is done again.
    func opened(fileId: UInt64, inodes: [(Int, ino_t)]) {
        for (role, inode) in inodes {
            let stale: Bool = lock.withLock {
                guard let done = completed[role]?[fileId], done != inode else { return false }
                completed[role]?[fileId] = nil
                return true
            }
            if stale { missed() }
        }
    }

    /// A namespace change could not be applied to the member being rebuilt
    /// (its parent was not there yet): walk again at the end.
    /// Before the first pass has begun (a rebuild launched, not yet run),
    /// the pass itself must not skip anything behind its resume point.
    /// File `fileId` is to be done again on `role`'s target, in another pass.
    private func redo(_ fileId: UInt64, on role: Int) {
        lock.withLock { completed[role]?[fileId] = nil }
        missed()
    }

    func missed() {
        lock.withLock {
            missedDuringWalk = true
            if !walkStarted { resumeAfter = [:] }
        }
    }
    private var walkStarted = false

    /// A name moved to `to`. Behind the walk (where this pass has been, or
    /// before the first pass: behind a resume point), what it holds would
    /// not be met again: a file the walk had not finished, or had finished
    /// on another inode (a file with several names, its other name met
    /// first). So is a name ahead of the walk in a directory it has already
    /// listed (the one it is in, or one it has gone down from): the walk
    /// goes by that listing, which the new name is not in. The walk goes
    /// round again.
    func renamed(to: String) {
        lock.withLock {
            let here = Rebuilder.components(to), at = Rebuilder.components(lastPath)
            let listed = at.starts(with: here.dropLast())   // also where `to` is the walk's own place
            guard !walkStarted || listed || here.lexicographicallyPrecedes(at) else { return }
            missedDuringWalk = true
            if !walkStarted { resumeAfter = [:] }
        }
    }

    static func components(_ path: String) -> [String] { path.split(separator: "/").map(String.init) }

    /// The stepped job running this rebuild (the simulation's).
    private(set) var job: JobRunner.Job?

    func start() {
        job = array.environment.jobs.spawn("raidfs-rebuild-" + targets.map { String($0.role) }.joined(separator: "-")) { [self] in run() }
    }

    private func run() {
        defer { lock.withLock { exitedValue = true } }
        // From here `resumeAfter` is the walk's alone: a later miss walks again.
        let resumePoints = lock.withLock { () -> [Int: [String]] in walkStarted = true; return resumeAfter }
        for t in targets {
            let resumed = resumePoints[t.role].map { " (resuming after /" + $0.joined(separator: "/") + ")" } ?? ""
            let together = targets.count > 1 ? " (with role\(targets.count > 2 ? "s" : "") "
                + targets.filter { $0.role != t.role }.map { String($0.role) }.joined(separator: ", ") + ", in one pass)" : ""
            array.eventLog.record(ArrayEvent(kind: .rebuildStarted, member: t.role,
                                             message: "rebuilding role \(t.role) onto \(t.member.name)\(together)\(resumed)"))
        }
        do {
            let total = try array.fileBytes { shouldStop }
            lock.withLock { bytesTotalValue = total }
            var pass = 0
            repeat {
                lock.withLock { missedDuringWalk = false }
                try walk()
                resumeAfter = [:]
                pass += 1
            } while lock.withLock({ missedDuringWalk }) && pass < 8 && !shouldStop
            if shouldStop {
                // Unmounting, or restarted with more roles: checkpoints let
                // the next pass resume here.
                if lock.withLock({ stopRequested }) { saveCheckpoint() }
                lock.withLock { runningValue = false }
                return
            }
            lock.withLock { runningValue = false; bytesDoneValue = max(bytesDoneValue, bytesTotalValue) }
            syncTargets()
            if replacing { array.completeReplacement(self) } else { array.finishRebuild(self) }
        } catch {
            lock.withLock { runningValue = false }
            for t in targets {
                array.eventLog.record(ArrayEvent(kind: .rebuildFailed, member: t.role, message: "rebuild onto \(t.member.name) stopped: \(error)"))
            }
        }
    }

    /// Where each live target stands: the walk's position, or its older
    /// checkpoint where the walk has not reached that yet.
    /// A change the walk missed in this pass may lie behind it: the
    /// checkpoint then sends the next mount back to the start.
    private func checkpoints() -> [RebuildCheckpoint] {
        let (path, bytes) = lock.withLock { (missedDuringWalk ? "" : lastPath, lastPathBytes) }
        let here = Rebuilder.components(path)
        return liveTargets.map { t in
            var at = path
            if let old = resumeAfter[t.role], here.lexicographicallyPrecedes(old) { at = "/" + old.joined(separator: "/") }
            return RebuildCheckpoint(role: t.role, memberUUID: t.uuid, lastPath: at, bytesDone: bytes)
        }
    }

    /// One pass over the namespace, in the walk's order: a checkpoint's
    /// lastPath covers every file that sorts before it.
    private func walk() throws {
        try array.walk { path, type in
            if shouldStop { return false }
            let here = Rebuilder.components(path)
            let live = liveTargets
            let st: stat
            do {
                st = try array.getattr(path)
            } catch let e as FSError where e.errno == EIO && type == UInt8(DT_REG) {
                rebuildUnreadable(path, needing(live, here), e)
                return true
            } catch {
                return true   // gone meanwhile
            }
            switch type {
            case UInt8(DT_DIR):
                for t in live {
                    ignoreExists { try t.member.mkdir(path, mode: st.st_mode & 0o7777) }
                    copyAttributes(t.member, path, st)
                }
            case UInt8(DT_LNK):
                if let link = try? array.readlink(path) {
                    for t in live {
                        ignoreExists { try t.member.symlink(target: link, at: path) }
                        try? t.member.chown(path, uid: st.st_uid, gid: st.st_gid)
                    }
                }
            case UInt8(DT_REG):
                let needing = needing(live, here)
                // A file with several names: each is checked on every
                // target (see linkNames), done or not.
                if !needing.isEmpty || st.st_nlink > 1 {
                    guard try rebuildFile(path, st, live: live, needing) else { return false }
                }
            default:
                for t in live {
                    ignoreExists { try t.member.mknod(path, mode: st.st_mode, device: st.st_rdev) }
                    copyAttributes(t.member, path, st)
                }
            }
            lock.withLock { lastPath = path; lastPathBytes = bytesDoneValue }
            checkpointIfDue()
            return true
        }
    }

    private func ignoreExists(_ body: () throws -> Void) {
        do { try body() } catch let e as FSError where e.errno == EEXIST {} catch {
            missed()
        }
    }

    private func copyAttributes(_ m: Member, _ path: String, _ st: stat) {
        try? m.chmod(path, mode: st.st_mode & 0o7777)
        try? m.chown(path, uid: st.st_uid, gid: st.st_gid)
        try? m.utimens(path, (st.st_atim, st.st_mtim))
    }

    /// False when stopped before the file was finished.
    private func rebuildFile(_ path: String, _ st: stat, live: [Target], _ needing: [Target]) throws -> Bool {
        let af: ArrayFile
        do {
            af = try array.open(path, byRebuild: true)
        } catch let e as FSError where e.errno == EIO {
            rebuildUnreadable(path, needing, e)
            return true
        } catch {
            return true   // deleted meanwhile
        }
        defer { array.release(af) }
        if st.st_nlink > 1 { try linkNames(af, path, st, live) }
        if needing.isEmpty { return true }
        // The inode the open file writes to on `t`, if `path` names it
        // there; nil when not attached, or attached to an inode that no
        // name, or another name, leads to (its name unlinked since).
        let current = { (t: Target) -> ino_t? in
            let handle = self.replacing ? af.shadow(t.role) : (af.isAttached(role: t.role) ? af.files[t.role] : nil)
            guard let hs = handle.flatMap({ try? $0.status() }), hs.st_nlink > 0,
                  let ps = try? t.member.lstat(path), ps.st_ino == hs.st_ino else { return nil }
            return hs.st_ino
        }
        let todo = af.lock.withReadLock {
            needing.filter { t in
                guard let inode = current(t) else { return true }
                return lock.withLock { completed[t.role]?[af.fileId] } != inode
            }
        }
        if todo.isEmpty { return true }
        // Stripes written after the targets are attached reach them through
        // the write path (a stripe with a member being rebuilt is written
        // whole): only those there now need rebuilding, so a file that grows
        // faster than the rebuild rate still gets done.
        let stripesAtAttach: UInt64 = try af.lock.withWriteLock {
            for t in todo where current(t) == nil {
                let f = try openOnTarget(t, path, st)
                if replacing { af.attachShadow(role: t.role, f) } else { af.attach(role: t.role, f) }
                try? t.member.chown(path, uid: st.st_uid, gid: st.st_gid)
            }
            // What a target holds past the end of the file (stripes a
            // truncate cut while it was not attached) goes now: a later
            // truncate up writes nothing, relying on zeros there.
            for t in todo {
                if let f = replacing ? af.shadow(t.role) : af.writable(t.role) { try af.cutToSizeLocked(f, role: t.role) }
            }
            try af.writeHeadersLocked()
            return af.stripeCount
        }
        let roles = todo.map { $0.role }
        var stripe: UInt64 = 0
        while !shouldStop {
            // A batch of stripes held exclusive, the file's lock shared:
            // readers and writers of the file's other stripes go on.
            let (finished, bytes): (Bool, UInt64) = try array.resources.workspaces.withItem { ws in
                try af.lock.withReadLock {
                    let count = af.stripeCount
                    if stripe >= min(count, stripesAtAttach) { return (true, 0) }
                    let end = min(count, stripesAtAttach, stripe + Rebuilder.stripesPerBatch)
                    af.ranges.withRange(stripe, end - 1, exclusive: true) {
                        for s in stripe..<end {
                            if replacing { af.copyChunkToReplacement(role: role, stripe: s, ws: ws) }
                            else { af.rebuildChunks(roles: roles.filter { af.writable($0) != nil }, stripe: s, ws: ws) }
                        }
                    }
                    let g = array.geometry
                    let bytes = min(g.stripeStart(end), af.size) - min(g.stripeStart(stripe), af.size)
                    stripe = end
                    return (false, bytes)
                }
            }
            if finished {
                try af.lock.withWriteLock {
                    for r in roles {
                        if let f = replacing ? af.shadow(r) : af.writable(r) { try af.cutToSizeLocked(f, role: r) }
                    }
                }
                break
            }
            lock.withLock { bytesDoneValue += bytes }
            throttle()
        }
        if shouldStop { return false }
        for t in todo { try? t.member.utimens(path, (st.st_atim, st.st_mtim)) }
        let inodes = af.lock.withReadLock { todo.map { current($0) } }
        lock.withLock {
            for (t, inode) in zip(todo, inodes) { completed[t.role, default: [:]][af.fileId] = inode }
        }
        return true
    }

    /// `path`, one name of `af`, a file with several: on each target, makes
    /// it a name of the one inode the file has there, as the other members
    /// hold one file, not a copy per name. That inode is the one under the
    /// first name the walk gave the file there (`linkedNames`), while that
    /// name still holds the file; else the one the open file writes to.
    /// A name missing there is linked to it; a name that is another inode
    /// there (left by an earlier rebuild onto the same member, or made
    /// apart across a resume) is replaced by a link to it. An open file
    /// writing to another inode there is pointed at it, and done again.
    private func linkNames(_ af: ArrayFile, _ path: String, _ st: stat, _ targets: [Target]) throws {
        try array.namespace.lock.withLock {
            guard stillNames(af, path) else { return }   // renamed or gone meanwhile
            for t in targets {
                let open: MemberFile? = af.lock.withReadLock {
                    replacing ? af.shadow(t.role) : (af.isAttached(role: t.role) ? af.files[t.role] : nil)
                }
                let openStatus = open.flatMap { try? $0.status() }
                let here = try? t.member.lstat(path)
                var first = lock.withLock { linkedNames[t.role]?[af.fileId] }
                var firstInode = first.flatMap { inode(of: af.fileId, at: $0, on: t) }
                if first != nil && firstInode == nil, let a = array.namespaceRepair.authority(), let st = try? a.member.lstat(path),
                   let other = try? array.namespaceRepair.otherName(of: st.st_ino, fileId: af.fileId, size: af.size, on: a.member, heldBy: t.member, besides: path) {
                    // The first name moved or went since (a rename or an
                    // unlink by the user): the target may hold the file
                    // under another name the walk has not met yet.
                    first = other
                    firstInode = inode(of: af.fileId, at: other, on: t)
                }
                let openInode = openStatus.flatMap { $0.st_nlink > 0 ? $0.st_ino : nil }
                let canonical = firstInode ?? openInode
                if let canonical, here?.st_ino != canonical {
                    do {
                        if here != nil {
                            // Which of the two inodes took the file's latest
                            // writes is not known: the file is done again.
                            try t.member.unlink(path)
                            redo(af.fileId, on: t.role)
                        }
                        if let first, firstInode == canonical { try t.member.link(first, path) } else { try t.member.link(open!, at: path) }
                    } catch {
                        missed()
                        continue
                    }
                }
                if open != nil && (canonical == nil || openStatus?.st_ino != canonical) {
                    // The open file writes to an inode the file's names on
                    // the target do not lead to (or that has none left).
                    let f = try t.member.open(path, flags: canonical == nil ? O_CREAT | O_RDWR : O_RDWR, mode: st.st_mode & 0o7777)
                    af.lock.withWriteLock {
                        if replacing { af.attachShadow(role: t.role, f) } else { af.attach(role: t.role, f) }
                    }
                    redo(af.fileId, on: t.role)
                }
                if firstInode == nil || firstInode != canonical {
                    lock.withLock { linkedNames[t.role, default: [:]][af.fileId] = path }
                }
            }
        }
    }

    /// Resuming: a role's files up to its checkpoint are done.
    private func needing(_ live: [Target], _ here: [String]) -> [Target] {
        live.filter { t in
            guard let old = resumeAfter[t.role] else { return true }
            return !(here == old || here.lexicographicallyPrecedes(old))
        }
    }

    /// A file whose header no active member can read (beyond redundancy):
    /// its name is still the array's, so each target gets it as a damaged
    /// copy (see `createDamagedCopy`) and the file is counted lost there.
    private func rebuildUnreadable(_ path: String, _ targets: [Target], _ error: Error) {
        for t in targets {
            do {
                try array.namespace.lock.withLock {
                    // Gone or replaced meanwhile: nothing of it to give.
                    guard let a = array.namespaceRepair.authority(), let st = try? a.member.lstat(path),
                          (st.st_mode & S_IFMT) == S_IFREG else { return }
                    // Joined only to a name the walk has passed (in this
                    // pass or the one it resumed): one ahead of it may
                    // still hold what the target held before.
                    let here = Rebuilder.components(path)
                    try array.namespaceRepair.giveDamagedName(on: t.member, path, like: st, from: a.member) {
                        Rebuilder.components($0).lexicographicallyPrecedes(here)
                    }
                }
            } catch {
                missed()
                continue
            }
            array.eventLog.record(ArrayEvent(kind: .unrecoverable, member: t.role, path: path,
                                             message: "\(path) cannot be rebuilt: \(error)"))
        }
    }

    /// Whether `path` still names the file `af` has open (not renamed or
    /// removed meanwhile): the first active member that can tell compares
    /// the inode under the name with the one the open file has there. Not
    /// by the file's header, which read faults may withhold: a name of a
    /// linked file skipped so would be made a file of its own on the target.
    private func stillNames(_ af: ArrayFile, _ path: String) -> Bool {
        for role in array.activeRoles {
            guard let m = array.member(role), let f = af.usable(role), let open = try? f.status(),
                  let named = try? m.lstat(path) else { continue }
            return named.st_ino == open.st_ino
        }
        return (try? array.readHeader(path))?.fileId == af.fileId
    }

    /// The inode of `path` on `t`'s member if that is file `fileId` there
    /// (its header says so): a name recorded earlier may since have been
    /// given to another file.
    private func inode(of fileId: UInt64, at path: String, on t: Target) -> ino_t? {
        guard let f = try? t.member.open(path, flags: O_RDONLY, mode: 0) else { return nil }
        defer { f.close() }
        guard let h = try? array.readHeader(of: f), h.fileId == fileId else { return nil }
        return try? f.status().st_ino
    }

    /// Opens `path` on `t`'s member, creating it: as a link to the name the
    /// file already has there when it has several (see `linkedNames`).
    private func openOnTarget(_ t: Target, _ path: String, _ st: stat) throws -> MemberFile {
        let fileId = UInt64(st.st_ino)   // getattr gives the file id as the inode number
        if st.st_nlink > 1 {
            let other = lock.withLock { linkedNames[t.role]?[fileId] }
            if let other, other != path {
                do {
                    try t.member.link(other, path)
                    return try t.member.open(path, flags: O_RDWR, mode: 0)
                } catch let e as FSError where e.errno == ENOENT {
                    // That name went meanwhile: this one becomes the first.
                } catch let e as FSError where e.errno == EEXIST {
                    // This name is another inode there (linkNames could not
                    // settle it: the name moved meanwhile). Rebuild into it;
                    // a later pass links the names together.
                    missed()
                    return try t.member.open(path, flags: O_RDWR, mode: 0)
                }
            }
            lock.withLock { linkedNames[t.role, default: [:]][fileId] = path }
        }
        return try t.member.open(path, flags: O_CREAT | O_RDWR, mode: st.st_mode & 0o7777)
    }

    private func throttle() {
        array.environment.jobs.yieldPoint()
        array.pace(bytes: lock.withLock { bytesDoneValue - bytesAtStart }, since: startedAt, rate: rateBytesPerSecond)
    }

    private func checkpointIfDue() {
        let now = array.environment.wallClockSeconds()
        guard now - lastCheckpoint >= 2 else { return }
        lastCheckpoint = now
        saveCheckpoint()
    }

    /// Makes what was written to the targets durable (syncfs) before a
    /// checkpoint or the end claims it: else a power cut could leave a
    /// member marked active, or a checkpoint past files, whose chunks never
    /// reached its disk. A target that cannot sync is failed (a
    /// replacement abandoned).
    private func syncTargets() {
        for t in liveTargets {
            do { try t.member.syncAll() } catch {
                if replacing { array.abandonReplacement(role: t.role, "its sync failed: \(error)") }
                else { array.memberWriteFailed(role: t.role, reason: "rebuild: sync failed: \(error)") }
            }
        }
    }

    private func saveCheckpoint() {
        syncTargets()
        if replacing {
            let (path, bytes) = lock.withLock { (missedDuringWalk ? "" : lastPath, lastPathBytes) }
            if liveTargets.isEmpty { return }
            array.checkpointReplacement(lastPath: path, bytesDone: bytes)
        } else {
            array.checkpointRebuild(checkpoints())
        }
    }
}

extension ArrayFile {
    /// Copies the chunk `role` holds in `stripe` to its replacement, verified;
    /// rebuilt from the other members where the role's own copy fails.
    func copyChunkToReplacement(role: Int, stripe: UInt64, ws: StripeWorkspace) {
        let i = chunkIndex(stripe: stripe, role: role)
        let extent = chunkExtent(stripe: stripe, role: role)
        if extent == 0 { return }   // past the file's end: nothing to copy
        if !readChunk(role: role, stripe: stripe, into: ws.chunks[i].bytes, range: 0..<extent) {
            var have = Set<Int>()
            do {
                try recover(stripe: stripe, lost: [i], have: &have, ws: ws, heal: false)
            } catch {
                array.abandonReplacement(role: role, "stripe \(stripe) of \(displayPath) cannot be copied: \(error)")
                return
            }
        }
        writeShadowChunk(role: role, stripe: stripe, from: ws.chunks[i].bytes)
    }

    /// Reconstructs the chunk `role` holds in `stripe` from the others and
    /// writes it there.
    func rebuildChunk(role: Int, stripe: UInt64, ws: StripeWorkspace) {
        rebuildChunks(roles: [role], stripe: stripe, ws: ws)
    }

    /// Reconstructs the chunks `roles` hold in `stripe` together, from one
    /// read of the others, and writes each to its member. Beyond redundancy
    /// their entries are poisoned, so the chunks read as damaged (EIO)
    /// rather than as zeros.
    func rebuildChunks(roles: [Int], stripe: UInt64, ws: StripeWorkspace) {
        guard !roles.isEmpty else { return }
        let lost = roles.map { chunkIndex(stripe: stripe, role: $0) }
        var have = Set<Int>()
        do {
            try recover(stripe: stripe, lost: lost, have: &have, ws: ws, heal: false)
            for (role, i) in zip(roles, lost) {
                writeChunk(role: role, stripe: stripe, from: ws.chunks[i].bytes, range: 0..<chunkExtent(stripe: stripe, role: role), ws: ws)
            }
        } catch {
            for role in roles {
                array.eventLog.record(ArrayEvent(kind: .unrecoverable, member: role, path: displayPath,
                                                 message: "stripe \(stripe) cannot be rebuilt: \(error)"))
                guard let f = writable(role) else { continue }
                _ = try? array.layout.poison(f, stripe: stripe, owner: owner)
                entryCaches[role].invalidate()
            }
        }
    }
}

/// Keeps background work (rebuild, scrub) at `rate` bytes per second:
/// holds the job back while `bytes` done since `start` are ahead of it (at
/// most a second at a time; `JobRunner.throttle`). Unthrottled when `rate`
/// is nil.
extension RAIDArray {
    func pace(bytes: UInt64, since start: Double, rate: Double?) {
        guard let rate, rate > 0 else { return }
        environment.jobs.throttle(seconds: Double(bytes) / rate - (environment.wallClockSeconds() - start))
    }

    /// The bytes of every regular file: the total a rebuild or scrub
    /// measures its progress against.
    func fileBytes(shouldStop: () -> Bool) throws -> UInt64 {
        var total: UInt64 = 0
        try walk { path, type in
            if type == UInt8(DT_REG), let st = try? getattr(path) { total += UInt64(st.st_size) }
            return !shouldStop()
        }
        return total
    }
}
