import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// The open-file table and the lock that orders namespace changes, so every
/// member sees the same mutations in the same order.
// @unchecked Sendable: its open-file table changes only under `lock`.
final class NamespaceState: @unchecked Sendable {
    let lock = Lock()
    /// Open array files by file id (shared by hard links and by handles).
    var openFiles: [UInt64: ArrayFile] = [:]
    /// Where new file ids come from (the environment's: the system's
    /// random source, or a seeded generator where one seed must replay one
    /// run).
    var fileIds: any RandomNumberGenerator

    init(fileIds: any RandomNumberGenerator) { self.fileIds = fileIds }
    /// Removed directories still to delete on members (see Trash.swift),
    /// and the job deleting them.
    var trash: [(member: Member, path: String)] = []
    var trashJobRunning = false
    var trashJob: JobRunner.Job?
}

/// Who is asking, for ownership of what they create.
public struct Caller: Sendable {
    public var uid: uid_t
    public var gid: gid_t
    public init(uid: uid_t, gid: gid_t) { self.uid = uid; self.gid = gid }
}

/// The namespace (tree and metadata) kept on every member. Reads are served
/// by the first active member; changes are logged per directory in the
/// write-intent log, then go to the first member (whose error is the
/// caller's answer) and then to every other active member. A member that
/// then answers differently has diverged (a crash cut an earlier change
/// short, or a power cut lost it there): its copy of the directories is
/// brought in line with the first member's, as a self-healing read repairs a
/// chunk, and it stays in. Only a real I/O error fails a member, and never
/// more members than the level tolerates.
extension RAIDArray {
    /// Runs a read-only `body` on the first active member still present.
    func onPrimary<T>(_ what: String, _ body: (Member) throws -> T) throws -> T {
        try onPrimaryRole(what) { try body($1) }
    }

    /// `onPrimary`, telling `body` the role it asks too.
    func onPrimaryRole<T>(_ what: String, _ body: (Int, Member) throws -> T) throws -> T {
        for role in activeRoles {
            guard let m = member(role) else { continue }
            do {
                return try body(role, m)
            } catch let e as FSError {
                // (An answer a member that vanished cannot give — no such
                // attribute, the name exists, access denied — is the answer.)
                if e.mayMeanVanished && !m.isPresent() {
                    memberFailed(role: role, reason: "member vanished during \(what) (\(e))")
                } else if e.isMemberFault {
                    noteReadError(role: role, e)   // ask the next member
                } else {
                    throw e
                }
            }
        }
        throw FSError.io("\(what): no active member left in array \(arrayUUID)")
    }

    /// Applies a change to every active member; caller holds the namespace
    /// lock. `dirs` are the directories whose entries the change touches.
    func replicateLocked(_ what: String, dirs: [String], _ body: (Member) throws -> Void) throws {
        guard !readOnly else { throw FSError(EROFS, "\(what): read-only array") }
        try requireNotFailed(what)
        let logged = try intentLog.beginNamespace(dirs)
        defer { intentLog.endNamespace(logged) }
        var primary: (role: Int, member: Member)? = nil
        for role in activeRoles {
            guard let m = member(role) else { continue }
            do {
                try body(m)
                primary = (role, m)
                break
            } catch let e as FSError {
                if !m.isPresent() {
                    memberFailed(role: role, reason: "member vanished during \(what) (\(e))")
                } else if e.isMemberFault {
                    // The member's fault, not the caller's: fail it (as md
                    // fails a member on a write error) and go on.
                    guard failWithinRedundancy(role: role, reason: "\(what): \(e)") else {
                        intentLog.pinDirectories(logged)
                        throw FSError.io("\(what): \(e); not failing \(memberName(role)) as well: that would exceed RAID \(geometry.level.rawValue)'s redundancy")
                    }
                } else {
                    throw e
                }
            }
        }
        guard let p = primary else { throw FSError.io("\(what): no active member left in array \(arrayUUID)") }
        var refused: FSError? = nil
        for role in activeRoles where role > p.role {
            guard let m = member(role) else { continue }
            do {
                try body(m)
            } catch let e as FSError where e.isDivergence && m.isPresent() {
                repairDivergence(role: role, authority: p, dirs: dirs, what: what, e)
            } catch {
                if !failWithinRedundancy(role: role, reason: "\(what) failed on this member only: \(error)") {
                    intentLog.pinDirectories(logged)
                    refused = FSError.io("\(what): \(error); not failing \(memberName(role)) as well: that would exceed RAID \(geometry.level.rawValue)'s redundancy")
                }
            }
        }
        // A member being rebuilt may not have the parent yet: what the
        // change would have removed goes now (a rename's source, a name
        // replaced), and the rebuild walks the tree again for the rest.
        for m in rebuildingRoles.compactMap({ member($0) }) + shadowRoles.compactMap({ shadowMember($0) }) {
            do { try body(m) } catch {
                rebuildMissed()
                namespaceRepair.pruneLocked(m, like: p.member, dirs: dirs)
            }
        }
        if let refused { throw refused }
        try requireNotFailed(what)
    }

    func replicate(_ what: String, dirs: [String], _ body: (Member) throws -> Void) throws {
        try namespace.lock.withLock { try replicateLocked(what, dirs: dirs, body) }
    }

    /// `role` answered a namespace change differently from the first
    /// member: bring its copy of `dirs` in line (rolling the change forward
    /// there) and record it. Failing the repair is an I/O error: the member
    /// is failed, within redundancy.
    func repairDivergence(role: Int, authority: (role: Int, member: Member), dirs: [String], what: String, _ cause: FSError) {
        guard let m = member(role) else { return }
        do {
            let fixed = try namespaceRepair.reconcileLocked(role: role, target: m, authority: authority.member, dirs: dirs)
            eventLog.record(ArrayEvent(kind: .namespaceRepaired, member: role, path: dirs.first,
                                       message: "\(what): \(memberName(role)) answered \(String(cString: strerror(cause.errno))) where member \(authority.role) succeeded; \(fixed) entries of \(dirs.joined(separator: ", ")) brought in line with member \(authority.role)"))
        } catch {
            _ = failWithinRedundancy(role: role, reason: "\(what): namespace diverged (\(cause)) and could not be repaired: \(error)")
        }
    }

    /// A new entry belongs to its creator (the daemon, as root, makes it
    /// so), and to the group of its directory where that directory is
    /// set-group-ID, as Linux's filesystems do (the member's own copy of
    /// the directory has given it that group, and a new directory the
    /// set-group-ID bit).
    /// `group` nil: the entry is the caller's already (see newEntryGroup).
    private func chownIfRoot(_ m: Member, _ path: String, _ caller: Caller, group: gid_t?) throws {
        if let group { try m.chown(path, uid: caller.uid, gid: group) }
    }

    /// The group a new entry at `path` takes: its directory's where that
    /// is set-group-ID, else the caller's (one lstat of the directory on
    /// the first active member). Nil when the entry needs no chown: the
    /// daemon is not root, or the caller is the daemon's own user and
    /// group, which the member gives it (its directory's group where that
    /// is set-group-ID, as the member's copy of the directory is too).
    private func newEntryGroup(_ path: String, _ caller: Caller) -> gid_t? {
        let me = environment.effectiveUser
        guard me.uid == 0, caller.uid != me.uid || caller.gid != me.gid else { return nil }
        guard let dir = setgidDirectory(of: path) else { return caller.gid }
        return dir.st_gid
    }

    /// `path`'s directory, when it is set-group-ID.
    private func setgidDirectory(of path: String) -> stat? {
        guard let dir = try? onPrimary("lstat \(parentDirectory(path))", { try $0.lstat(parentDirectory(path)) }),
              dir.st_mode & S_ISGID != 0 else { return nil }
        return dir
    }

    // MARK: queries

    public func getattr(_ path: String) throws -> stat {
        var (role, st) = try onPrimaryRole("getattr \(path)") { ($0, try $1.lstat(path)) }
        if (st.st_mode & S_IFMT) == S_IFREG {
            let (size, fileId) = try logicalSize(path)
            st.st_size = off_t(size)
            st.st_blocks = blkcnt_t(geometry.estimatedBlocks(size: size, rowShift: fileId % UInt64(geometry.memberCount),
                                                             role: role, memberBlocks: Int64(st.st_blocks)))
            // The file id: the same through every hard link, on every
            // member, across remounts.
            st.st_ino = ino_t(fileId)
        }
        st.st_blksize = blksize_t(geometry.stripeDataBytes)
        return st
    }

    /// The size of a file: live from its open state, else from its header.
    func logicalSize(_ path: String) throws -> (size: UInt64, fileId: UInt64) {
        let header = try readHeader(path)
        if let af = namespace.lock.withLock({ namespace.openFiles[header.fileId] }) {
            af.timesObserved()   // (a stat by path reads the times too)
            return (af.currentSize(), header.fileId)
        }
        return (header.size, header.fileId)
    }

    /// One member file's header (from its attribute); nil when missing or
    /// damaged.
    func readHeader(of f: MemberFile) throws -> FileHeader? {
        try layout.readAttribute(f).header
    }

    /// After a first read that failed: `read` again until `done`, at once
    /// and then with the data path's backoff (1, 2, then 4 ms), up to
    /// `ArrayFile.patientAttempts` reads counting the first. A header is
    /// read this way, as a chunk is (a transient error may pass).
    func readAgainPatiently(until done: () -> Bool, _ read: () throws -> Void) rethrows {
        var reads = 1
        while reads < ArrayFile.patientAttempts && !done() {
            reads += 1
            if reads > 2 { environment.sleep(seconds: ArrayFile.retryBackoff(reads - 1)) }
            try read()
        }
    }

    /// The header of `path` from the first active member that reads it;
    /// where none does, they are read again patiently before the last
    /// error is thrown.
    func readHeader(_ path: String) throws -> FileHeader {
        var lastError: FSError? = nil
        var header: FileHeader? = nil
        func readAll(first: Bool) throws {
            for role in activeRoles {
                guard let m = member(role) else { continue }
                do {
                    header = try layout.readAttribute(at: path, on: m).header
                    if header != nil { return }
                    lastError = FSError.io("\(path): file header on \(m.name) is damaged")
                } catch let e as FSError {
                    if e.errno == ENOENT && m.isPresent() { throw e }
                    if e.errno != ENOENT && first { noteReadError(role: role, e) }
                    lastError = e
                }
            }
        }
        try readAll(first: true)
        // (Nothing to read again: no member, or none there any longer.)
        try readAgainPatiently(until: { header != nil || lastError == nil || !activeRoles.contains { member($0)?.isPresent() == true } }) {
            try readAll(first: false)
        }
        if let header { return header }
        throw lastError ?? FSError.io("\(path): no active member")
    }

    /// Visits every entry of the namespace in sorted depth-first pre-order:
    /// each directory, then everything in it, then its next sibling — the
    /// order of paths compared component by component, which a rebuild
    /// checkpoint relies on. `body` returns false to stop. A directory
    /// removed while the walk runs is skipped. From `root` (a directory),
    /// the entries under it.
    public func walk(from root: String = "/", _ body: (_ path: String, _ type: UInt8) throws -> Bool) throws {
        func sortedList(_ dir: String) throws -> [DirectoryEntry]? {
            do {
                return try list(dir).sorted { $0.name < $1.name }
            } catch let e as FSError where e.errno == ENOENT && dir != "/" {
                return nil
            }
        }
        var stack: [(dir: String, entries: [DirectoryEntry], next: Int)] = [(root, try sortedList(root) ?? [], 0)]
        while let top = stack.last {
            guard top.next < top.entries.count else {
                stack.removeLast()
                continue
            }
            stack[stack.count - 1].next += 1
            let e = top.entries[top.next]
            let path = top.dir == "/" ? "/" + e.name : top.dir + "/" + e.name
            if path == RAIDArray.trashDirectory { continue }
            guard try body(path, e.type) else { return }
            if e.type == UInt8(DT_DIR), let children = try sortedList(path) {
                stack.append((path, children, 0))
            }
        }
    }

    public func list(_ path: String) throws -> [DirectoryEntry] {
        try onPrimary("readdir \(path)") { try $0.list(path) }
    }

    public func readlink(_ path: String) throws -> String {
        try onPrimary("readlink \(path)") { try $0.readlink(path) }
    }

    /// Usable capacity, counting each filesystem once. A filesystem that
    /// holds g active members receives g of every n chunks written, so it
    /// fills after its space × k / g bytes of data (k data chunks per
    /// stripe); the array's size and free space are the least of that over
    /// the filesystems the members are on (members on their own disks: the
    /// smallest member's space × k). Inodes: each file takes one on every
    /// member.
    public func statfs() throws -> statvfs {
        var groups: [UInt64: (s: statvfs, members: Int)] = [:]
        for role in activeRoles {
            guard let m = member(role), let s = try? m.statfs(), let root = try? m.lstat("/") else { continue }
            groups[UInt64(root.st_dev), default: (s, 0)].members += 1
        }
        guard var r = groups.values.first?.s, r.f_frsize > 0 else {
            throw FSError.io("statfs: no active member in array \(arrayUUID)")
        }
        let k = UInt64(geometry.dataChunkCount)
        // Each filesystem's share, in the first one's block size; the least wins.
        let shares = groups.values.map { (s, g) -> statvfs in
            var x = s
            let blocks = { (v: fsblkcnt_t) in fsblkcnt_t(UInt64(v) * UInt64(s.f_frsize) / UInt64(r.f_frsize) * k / UInt64(g)) }
            (x.f_blocks, x.f_bfree, x.f_bavail) = (blocks(s.f_blocks), blocks(s.f_bfree), blocks(s.f_bavail))
            (x.f_files, x.f_ffree, x.f_favail) = (s.f_files / fsfilcnt_t(g), s.f_ffree / fsfilcnt_t(g), s.f_favail / fsfilcnt_t(g))
            return x
        }
        r.f_blocks = shares.map(\.f_blocks).min()!
        r.f_bfree = shares.map(\.f_bfree).min()!
        r.f_bavail = shares.map(\.f_bavail).min()!
        r.f_files = shares.map(\.f_files).min()!
        r.f_ffree = shares.map(\.f_ffree).min()!
        r.f_favail = shares.map(\.f_favail).min()!
        r.f_namemax = 255
        return r
    }

    // MARK: changes

    public func mkdir(_ path: String, mode: mode_t, caller: Caller) throws {
        let parent = setgidDirectory(of: path)
        let group = environment.isSuperuser ? parent?.st_gid ?? caller.gid : caller.gid
        // (The member sets the mode exactly, past its umask: the bit a
        // set-group-ID parent gives is set here.)
        let mode = parent == nil ? mode : mode | S_ISGID
        try replicate("mkdir \(path)", dirs: [parentDirectory(path)]) { m in
            try m.mkdir(path, mode: mode)
            try chownIfRoot(m, path, caller, group: group)
        }
    }

    public func rmdir(_ path: String) throws {
        try removeDirectory(path)
    }

    /// The last name of an open file goes to the orphan area instead (see
    /// Orphans.swift).
    public func unlink(_ path: String) throws {
        try namespace.lock.withLock {
            if let af = openFileAtLastLinkLocked(path) {
                try orphanLocked(af, path, move: true)
            } else {
                try replicateLocked("unlink \(path)", dirs: [parentDirectory(path)]) { try $0.unlink(path) }
            }
        }
    }

    /// `path` as the primary member has it; nil when it is not there.
    private func primaryStat(_ path: String) -> stat? { try? onPrimary("lstat \(path)") { try $0.lstat(path) } }

    public func rename(_ from: String, _ to: String, flags: UInt32) throws {
        // A file renamed over another (the way editors and rsync replace a
        // file) is made durable first, as ext4's auto_da_alloc does: after
        // a power cut the name holds the old file or the new one whole. Its
        // header, written at create, may not be durable yet; were the rename
        // cut short after the first member, the crash repair would have no
        // way to tell the new file at that name from the one it replaced.
        if flags & 2 == 0, from != to, let target = primaryStat(to), (target.st_mode & S_IFMT) == S_IFREG,
           let source = primaryStat(from), (source.st_mode & S_IFMT) == S_IFREG, source.st_ino != target.st_ino {
            let opened: ArrayFile?
            do {
                opened = try open(from)
            } catch let e as FSError where e.errno == EIO {
                // Its header is lost beyond redundancy: there is nothing of
                // it to make durable, and the rename itself reads no data.
                opened = nil
            }
            if let af = opened {
                defer { release(af) }
                try af.sync(dataOnly: true)
            }
        }
        try namespace.lock.withLock {
            // Two names of one file: POSIX says nothing happens (and with
            // RENAME_NOREPLACE, EEXIST). Decided here, once, on the primary:
            // a member still being rebuilt may not hold the target's name
            // yet, and would move the source onto it while the others kept
            // both names.
            let target = from != to ? primaryStat(to) : nil
            let source = target != nil ? primaryStat(from) : nil
            if let target, let source, source.st_ino == target.st_ino, source.st_dev == target.st_dev {
                if flags & 1 != 0 { throw FSError(EEXIST, "rename \(from) to \(to): \(to) exists") }
                return
            }
            // Renaming over the last name of an open file: the file keeps an
            // orphan name first. Only when the rename can succeed: a file
            // (not a directory) moving onto it, and no RENAME_NOREPLACE or
            // RENAME_EXCHANGE (flags 1 and 2), which remove nothing.
            if flags & 3 == 0, let source, (source.st_mode & S_IFMT) != S_IFDIR, let af = openFileAtLastLinkLocked(to) {
                try orphanLocked(af, to, move: false)
            }
            try replicateLocked("rename \(from)", dirs: directories(of: from, to)) { try $0.rename(from, to, flags: flags) }
            // During a rebuild: what moved behind the walk is not met again.
            if !rebuildingRoles.isEmpty || !shadowRoles.isEmpty { toRebuild { $0.renamed(to: to) } }
            // Nor during a scrub: it does it after its walk (or, paused
            // till the next mount, resumes before it).
            scrubRenamed(to: to)
        }
    }

    public func link(_ from: String, _ to: String) throws {
        try namespace.lock.withLock {
            try replicateLocked("link \(to)", dirs: directories(of: to, from)) { try $0.link(from, to) }
            if !rebuildingRoles.isEmpty || !shadowRoles.isEmpty {
                if let h = try? readHeader(from) {
                    toRebuild { $0.linkedWithoutTarget(from: from, to: to, fileId: h.fileId) }
                } else {
                    // Which file it is cannot be read now: the walk goes
                    // over the tree again rather than miss the new name.
                    rebuildMissed()
                }
            }
        }
    }

    public func symlink(target: String, at path: String, caller: Caller) throws {
        let group = newEntryGroup(path, caller)
        try replicate("symlink \(path)", dirs: [parentDirectory(path)]) { m in
            try m.symlink(target: target, at: path)
            try chownIfRoot(m, path, caller, group: group)
        }
    }

    public func mknod(_ path: String, mode: mode_t, device: dev_t, caller: Caller) throws {
        guard (mode & S_IFMT) != S_IFREG else {
            release(try create(path, mode: mode, exclusive: true, caller: caller))
            return
        }
        let group = newEntryGroup(path, caller)
        try replicate("mknod \(path)", dirs: [parentDirectory(path)]) { m in
            try m.mknod(path, mode: mode, device: device)
            try chownIfRoot(m, path, caller, group: group)
        }
    }

    public func chmod(_ path: String, mode: mode_t) throws {
        try replicate("chmod \(path)", dirs: [parentDirectory(path)]) { try $0.chmod(path, mode: mode) }
    }

    public func chown(_ path: String, uid: uid_t, gid: gid_t) throws {
        try replicate("chown \(path)", dirs: [parentDirectory(path)]) { try $0.chown(path, uid: uid, gid: gid) }
    }

    public func utimens(_ path: String, _ times: (timespec, timespec)) throws {
        try replicate("utimens \(path)", dirs: [parentDirectory(path)]) { try $0.utimens(path, times) }
    }

    /// The engine's own attribute on member files is not the user's: it
    /// is neither listed nor read, set or removed through the array.
    private func requireUserAttribute(_ path: String, _ name: String, _ op: String) throws {
        if name == FileAttribute.name {
            throw FSError(EPERM, "\(op) \(path): \(name) is reserved for raidfs's own metadata")
        }
    }

    public func setxattr(_ path: String, name: String, value: [UInt8], flags: Int32) throws {
        try requireUserAttribute(path, name, "setxattr")
        try replicate("setxattr \(path)", dirs: [parentDirectory(path)]) { try $0.setxattr(path, name: name, value: value, flags: flags) }
    }

    public func getxattr(_ path: String, name: String) throws -> [UInt8] {
        if name == FileAttribute.name { throw FSError(ENODATA, "getxattr \(path): no attribute \(name)") }
        return try onPrimary("getxattr \(path)") { try $0.getxattr(path, name: name) }
    }

    public func listxattr(_ path: String) throws -> [String] {
        try onPrimary("listxattr \(path)") { try $0.listxattr(path) }.filter { $0 != FileAttribute.name }
    }

    public func removexattr(_ path: String, name: String) throws {
        try requireUserAttribute(path, name, "removexattr")
        try replicate("removexattr \(path)", dirs: [parentDirectory(path)]) { try $0.removexattr(path, name: name) }
    }

    /// fsyncdir: the directory's entries durable on every active member.
    public func syncDirectory(_ path: String) throws {
        for role in activeRoles {
            guard let m = member(role) else { continue }
            do {
                try m.syncDirectory(path)
            } catch let e as FSError {
                if m.isPresent() && e.errno == ENOENT { throw e }
                noteWriteError(role: role, e)
            }
        }
        try requireNotFailed("fsyncdir \(path)")
    }

    public func truncate(_ path: String, size: UInt64) throws {
        let af = try open(path)
        defer { release(af) }
        try af.truncate(to: size)
    }

    // MARK: open files

    /// Creates a regular file (or opens it when it exists and `exclusive` is false).
    public func create(_ path: String, mode: mode_t, exclusive: Bool, caller: Caller) throws -> ArrayFile {
        try createOrOpen(path, mode: mode, exclusive: exclusive, caller: caller).file
    }

    /// `create`, saying whether the file existed (O_TRUNC truncates only
    /// a file that did, as on Linux).
    public func createOrOpen(_ path: String, mode: mode_t, exclusive: Bool, caller: Caller) throws -> (file: ArrayFile, existed: Bool) {
        try namespace.lock.withLock {
            // (An exclusive create asks no question first: the first
            // member's O_EXCL answers EEXIST.)
            var exists = false
            if !exclusive {
                do {
                    _ = try onPrimary("create \(path)") { try $0.lstat(path) }
                    exists = true
                } catch let e as FSError where e.errno == ENOENT {
                    exists = false
                }
            }
            if exists {
                if exclusive { throw FSError(EEXIST, "\(path): file exists") }
            } else {
                let id = try intentLog.takeFileId(for: path) { newFileIdLocked() }
                let group = newEntryGroup(path, caller)
                let header = FileHeader(fileId: id, size: 0)
                // The member files made are the array file's: opened once.
                var created: [ObjectIdentifier: MemberFile] = [:]
                do {
                    try replicateLocked("create \(path)", dirs: [parentDirectory(path)]) { m in
                        let f = try m.open(path, flags: O_CREAT | O_EXCL | O_RDWR, mode: mode & 0o7777)
                        do {
                            try layout.writeFreshAttribute(f, header)
                            try chownIfRoot(m, path, caller, group: group)
                        } catch {
                            f.close()
                            throw error
                        }
                        created[ObjectIdentifier(m)]?.close()
                        created[ObjectIdentifier(m)] = f
                    }
                } catch {
                    for f in created.values { f.close() }
                    throw error
                }
                return (try openLocked(path, created: created, header: header), false)
            }
            return (try openLocked(path), exists)
        }
    }

    /// A new file's id: 63 bits, also its inode number, which must stay
    /// positive as off_t-like values do; ids below 2^32 are never used (the
    /// intent log marks directories with 0). Caller holds the namespace lock.
    func newFileIdLocked() -> UInt64 {
        var id: UInt64 = 0
        repeat { id = UInt64.random(in: (1 << 32)...(UInt64(Int64.max)), using: &namespace.fileIds) } while namespace.openFiles[id] != nil
        return id
    }

    public func open(_ path: String) throws -> ArrayFile {
        try namespace.lock.withLock { try openLocked(path) }
    }

    /// `byRebuild`: the rebuild's own open, which does not tell the rebuild
    /// that a target lacks the name (it is about to create it).
    func open(_ path: String, byRebuild: Bool) throws -> ArrayFile {
        try namespace.lock.withLock { try openLocked(path, byRebuild: byRebuild) }
    }

    /// New files get ids from `seed`'s sequence (the simulation's replay).
    public func seedFileIds(_ seed: UInt64) {
        namespace.lock.withLock { namespace.fileIds = SeededGenerator.independent(of: seed) }
    }

    /// `created`: the member files a create just made (by member), with
    /// their `header`, used instead of opening them again; those not used
    /// are closed.
    func openLocked(_ path: String, byRebuild: Bool = false,
                    created: [ObjectIdentifier: MemberFile] = [:], header createdHeader: FileHeader? = nil) throws -> ArrayFile {
        var unused = created
        defer { for f in unused.values { f.close() } }
        func take(_ m: Member) -> MemberFile? { unused.removeValue(forKey: ObjectIdentifier(m)) }
        var fresh = Set<Int>()
        let n = geometry.memberCount
        // Sampled before opening: a role that changes member meanwhile
        // leaves a handle that no longer matches, and is not used.
        let sampled = membership
        let generations = sampled.generations
        var files = [MemberFile?](repeating: nil, count: n)
        var primary: (role: Int, member: Member)? = nil
        let flags = readOnly ? O_RDONLY : O_RDWR
        for role in sampled.activeRoles {
            guard let m = member(role) else { continue }
            do {
                if let f = take(m) {
                    files[role] = f
                    fresh.insert(role)
                } else {
                    files[role] = try m.open(path, flags: flags, mode: 0)
                }
                if primary == nil { primary = (role, m) }
            } catch let e as FSError {
                if !m.isPresent() {
                    memberFailed(role: role, reason: "member vanished during open \(path) (\(e))")
                } else if primary == nil {
                    throw e
                } else if e.isDivergence && !readOnly {
                    // The first member has the file and this one does not.
                    repairDivergence(role: role, authority: primary!, dirs: [parentDirectory(path)], what: "open \(path)", e)
                    files[role] = isActive(role) ? try? m.open(path, flags: flags, mode: 0) : nil
                } else {
                    _ = failWithinRedundancy(role: role, reason: "open \(path) failed on this member only: \(e)")
                }
            }
        }
        guard let primary else { throw FSError.io("open \(path): no active member left in array \(arrayUUID)") }
        for role in rebuildingRoles {
            if let m = member(role), let f = take(m) {
                files[role] = f
                fresh.insert(role)
            } else {
                files[role] = try? member(role)?.open(path, flags: flags, mode: 0)
            }
        }
        // The header is replicated: take the file id the members agree on and
        // the largest size recorded (an extending write writes data first).
        var headers = [FileHeader?](repeating: nil, count: n)
        for role in 0..<n {
            guard let f = files[role] else { continue }
            if fresh.contains(role), let createdHeader {
                headers[role] = createdHeader
                continue
            }
            do {
                headers[role] = try readHeader(of: f)
                if headers[role] == nil {
                    logger.error("member \(role) (\(memberName(role))): file header of \(path) damaged")
                }
            } catch {
                noteReadError(role: role, error)
            }
        }
        // The active members' headers decide. A member being rebuilt may
        // hold one the walk has not brought up to date yet (a change made
        // through a name it did not have, or a file it has only created):
        // taken when no active header reads, its size would be written
        // over theirs and their data cut to it. Beyond redundancy the file
        // is unreadable instead, and nothing is written.
        // None reads: a transient error (EIO, bits flipped on the way) may
        // pass. Read them again patiently before giving up.
        readAgainPatiently(until: { (0..<n).contains { isActive($0) && headers[$0] != nil } }) {
            for role in 0..<n where isActive(role) && member(role)?.isPresent() == true {
                if let f = files[role] { headers[role] = try? readHeader(of: f) }
            }
        }
        let valid = (0..<n).filter { isActive($0) }.compactMap { headers[$0] }
        guard let fileId = valid.first?.fileId else {
            for f in files { f?.close() }
            throw FSError.io("\(path): no active member holds a readable file header")
        }
        // A member whose file at this path is another file (a crash cut a
        // rename or an unlink-and-create short there) has diverged: repair
        // it, never write this file's header over the other's.
        for role in 0..<n where headers[role] != nil && headers[role]!.fileId != fileId {
            files[role]?.close()
            files[role] = nil
            headers[role] = nil
            guard !readOnly, isActive(role), let m = member(role) else { continue }
            repairDivergence(role: role, authority: primary, dirs: [parentDirectory(path)], what: "open \(path)",
                             FSError(EEXIST, "\(path) on \(m.name) is another file"))
            if isActive(role), let f = try? m.open(path, flags: flags, mode: 0), let h = try? readHeader(of: f), h.fileId == fileId {
                files[role] = f
                headers[role] = h
            }
        }
        // Opened by a name a member being rebuilt (or the replacement) does
        // not have yet: what is done through it misses that member, so a
        // file the rebuild finished must be done again when it meets it.
        if !byRebuild && (rebuildingRoles.contains(where: { files[$0] == nil }) || !shadowRoles.isEmpty) {
            toRebuild { $0.openedWithoutTarget(path, fileId: fileId) }
        }
        if let existing = reopenLocked(fileId) {
            for f in files { f?.close() }
            if !byRebuild { noteOpenedDuringRebuild(existing) }
            return existing
        }
        let size = valid.filter { $0.fileId == fileId }.map { $0.size }.max()!
        let af = ArrayFile(array: self, fileId: fileId, files: files, generations: generations, size: size, path: path)
        let shadows = membership
        for role in shadows.shadowRoles {
            let gen = shadows.shadowGenerations[role]
            if let m = shadowMember(role), let f = take(m) ?? (try? m.open(path, flags: flags, mode: 0)) {
                af.shadowFiles[role] = f
                af.shadowFileGenerations[role] = gen
            }
        }
        if !readOnly && headers.enumerated().contains(where: { files[$0.offset] != nil && $0.element != FileHeader(fileId: fileId, size: size) }) {
            try af.lock.withWriteLock { try af.writeHeadersLocked() }
        }
        if !readOnly && !needsResync && createdHeader == nil && af.hasStripesBeyondEOF() {
            // A crash cut a truncate short, or lost a size update: restore
            // the zeros-past-EOF invariant before anything relies on it.
            try af.lock.withWriteLock { try af.trimBeyondEOFLocked() }
        }
        af.openCount = 1
        namespace.openFiles[fileId] = af
        if !byRebuild { noteOpenedDuringRebuild(af) }
        return af
    }

    /// Tells a running rebuild which inode on each target the open file
    /// writes to: one the rebuild did not finish (the target holding the
    /// file twice, under a name the walk has not met yet) sends it back.
    private func noteOpenedDuringRebuild(_ af: ArrayFile) {
        let roles = rebuildingRoles, shadows = shadowRoles
        guard !roles.isEmpty || !shadows.isEmpty, let rebuilder = maintenance.rebuilder else { return }
        // A replacement's too: it would otherwise keep a copy that writes
        // through another name had missed.
        let inodes: [(Int, ino_t)] = af.lock.withReadLock {
            roles.compactMap { r in af.writable(r).flatMap { try? $0.status() }.map { (r, $0.st_ino) } }
                + shadows.compactMap { r in af.shadow(r).flatMap { try? $0.status() }.map { (r, $0.st_ino) } }
        }
        rebuilder.opened(fileId: af.fileId, inodes: inodes)
    }

    public func release(_ af: ArrayFile) {
        namespace.lock.withLock { releaseLocked(af) }
    }

    func releaseLocked(_ af: ArrayFile) {
        precondition(af.openCount > 0, "\(af.displayPath): released more often than opened")
        af.openCount -= 1
        if af.openCount == 0 {
            if namespace.openFiles[af.fileId] === af { namespace.openFiles[af.fileId] = nil }
            af.closeMembers()
            reclaimOrphanLocked(af)
        }
    }
}

/// The directory holding `path` ("/" for a name in the root).
func parentDirectory(_ path: String) -> String {
    guard let i = path.lastIndex(of: "/"), i != path.startIndex else { return "/" }
    return String(path[..<i])
}

/// The directories holding `a` and `b`, once each.
func directories(of a: String, _ b: String) -> [String] {
    let (x, y) = (parentDirectory(a), parentDirectory(b))
    return x == y ? [x] : [x, y]
}
