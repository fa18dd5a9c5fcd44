import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// An open file as FUSE sees it: the shared array file behind a handle.
final class OpenHandle {
    let file: ArrayFile
    /// Opened with O_DIRECT: the kernel sends its reads and writes straight
    /// here (FOPEN_DIRECT_IO), writes within the size in parallel.
    let direct: Bool
    init(file: ArrayFile, direct: Bool) {
        self.file = file
        self.direct = direct
    }
}

/// Keeps the kernel's page cache of a file true to the array when O_DIRECT
/// handles write it, since their writes do not pass through that cache:
/// buffered handles open at the time have the written range invalidated,
/// and the next buffered open after writes made while none was open drops
/// what the kernel kept (keep_cache off).
// @unchecked Sendable: its tables change only under `lock`.
final class PageCacheCoherence: @unchecked Sendable {
    private struct State { var buffered = 0, stale = false }
    private let lock = Lock()
    /// By file id; only files with buffered handles open or a stale cache.
    private var files: [UInt64: State] = [:]

    /// A buffered open of file `id`: whether the kernel may keep its cache.
    func bufferedOpen(_ id: UInt64) -> Bool {
        lock.withLock {
            var s = files[id] ?? State()
            defer { s.stale = false; s.buffered += 1; files[id] = s }
            return !s.stale
        }
    }

    func bufferedRelease(_ id: UInt64) {
        lock.withLock {
            guard var s = files[id] else { return }
            s.buffered -= 1
            files[id] = s.buffered == 0 && !s.stale ? nil : s
        }
    }

    /// An O_DIRECT write to file `id`: true when buffered handles are open,
    /// whose cached pages of the range must be invalidated now.
    func directWrite(_ id: UInt64) -> Bool {
        lock.withLock {
            if let s = files[id], s.buffered > 0 { return true }
            files[id] = State(buffered: 0, stale: true)
            return false
        }
    }
}

/// An open directory: the directory's entries as they were at opendir (or
/// at the last rewind), served by index as the offset.
final class DirectoryHandle {
    let node: UInt64
    /// Empty until loaded ("." and ".." are always there).
    var entries: [DirectoryEntry] = []
    init(node: UInt64) { self.node = node }
}

/// The mounted filesystem: the array plus the hooks the daemon runs when
/// the kernel connects.
// @unchecked Sendable: `writebackCache` is set before the mount serves a request and only read after; what it holds is Sendable itself.
public final class MountedArray: @unchecked Sendable {
    public let array: RAIDArray
    let logger: Logger
    /// Runs once the mount is live (after daemonising), e.g. to mark the
    /// array in use in its superblocks and start background work.
    let onInit: () -> Void
    let inodes = InodeTable()
    /// -o writeback_cache: the kernel gathers small writes in its page
    /// cache and sends them as large ones.
    public var writebackCache = false
    /// Read buffers, one per concurrent read: no allocation per request.
    let readBuffers = Pool<AlignedBuffer>(keepMax: 16) { AlignedBuffer(count: 1 << 20) }
    let pageCache = PageCacheCoherence()
    /// The FUSE session, for invalidation notices (set by serve).
    nonisolated(unsafe) var session: OpaquePointer?

    public init(array: RAIDArray, logger: Logger, onInit: @escaping () -> Void) {
        self.array = array
        self.logger = logger
        self.onInit = onInit
    }
}

/// The single mounted array of this process; FUSE callbacks are C function
/// pointers and cannot capture context.
nonisolated(unsafe) var mounted: MountedArray!

/// How long the kernel may keep names and attributes. Every change goes
/// through this daemon, and the kernel updates or drops what a change of its
/// own touches; one second bounds what it does not see (the access time a
/// read sets on the members), as passthrough_ll's default does.
let cacheTimeout = 1.0

struct Stale: Error {}

/// Runs `body`, which replies on success; a thrown error replies its errno.
@inline(__always)
private func serve(_ req: fuse_req_t?, _ body: () throws -> Void) {
    do {
        try body()
    } catch let e as FSError {
        if e.errno == EIO { mounted.logger.error("\(e.message)") }
        fuse_reply_err(req, e.errno)
    } catch is Stale {
        fuse_reply_err(req, ESTALE)
    } catch {
        mounted.logger.error("\(error)")
        fuse_reply_err(req, EIO)
    }
}

/// Held shared by every request that works by path, exclusively by a
/// rename: a path found from the inode table stays the node's path until
/// the request is done (what libfuse's high-level tree lock does).
let treeLock = ReadWriteLock()

/// `serve` for a request that resolves paths.
@inline(__always)
private func named(_ req: fuse_req_t?, renaming: Bool = false, _ body: () throws -> Void) {
    if renaming { treeLock.withWriteLock { serve(req, body) } } else { treeLock.withReadLock { serve(req, body) } }
}

@inline(__always)
private func str(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }

private func path(_ ino: fuse_ino_t) throws -> String {
    if let p = mounted.inodes.path(ino) { return p }
    // An open file whose every name is gone: its orphan name.
    if let id = mounted.inodes.fileId(ino), let p = mounted.array.orphanPath(ofOpenFile: id) { return p }
    throw Stale()
}

/// The path of `name` in `parent`. raidfs's own names in the root
/// (`.raidfs-…`) do not exist for users: looking them up finds nothing, and
/// making them is refused.
private func child(_ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, creating: Bool = false) throws -> String {
    let n = str(name)
    if parent == InodeTable.rootId && n.hasPrefix(RAIDArray.reservedPrefix) {
        throw creating ? FSError(EPERM, "\(n): names beginning with \(RAIDArray.reservedPrefix) in the root are raidfs's own")
                       : FSError(ENOENT, "\(n): no such file")
    }
    guard let p = mounted.inodes.path(parent, n) else { throw Stale() }
    return p
}

/// The object a request's `fh` carries (an OpenHandle or a DirectoryHandle).
@inline(__always)
private func carried<T: AnyObject>(_ fi: UnsafeMutablePointer<fuse_file_info>?, _: T.Type) -> Unmanaged<T>? {
    guard let fi, fi.pointee.fh != 0 else { return nil }
    return Unmanaged<T>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!)
}

@inline(__always)
private func handle(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> OpenHandle? {
    carried(fi, OpenHandle.self)?.takeUnretainedValue()
}

private func carry(_ object: AnyObject, in fi: UnsafeMutablePointer<fuse_file_info>?) {
    fi!.pointee.fh = UInt64(UInt(bitPattern: Unmanaged.passRetained(object).toOpaque()))
}

/// Takes the object back from `fh` (release, or a reply that failed).
private func detach<T: AnyObject>(_ fi: UnsafeMutablePointer<fuse_file_info>?, _ type: T.Type) -> T? {
    guard let u = carried(fi, type) else { return nil }
    fi!.pointee.fh = 0
    return u.takeRetainedValue()
}

/// Hands `file` to the kernel as the handle in `fi`; a buffered handle
/// is told whether the kernel may keep its cached pages.
private func attach(_ file: ArrayFile, to fi: UnsafeMutablePointer<fuse_file_info>?, direct: Bool) {
    if !direct { fi!.pointee.keep_cache = mounted.pageCache.bufferedOpen(file.fileId) ? 1 : 0 }
    carry(OpenHandle(file: file, direct: direct), in: fi)
}

private func detachFile(_ fi: UnsafeMutablePointer<fuse_file_info>?) {
    guard let h = detach(fi, OpenHandle.self) else { return }
    if !h.direct { mounted.pageCache.bufferedRelease(h.file.fileId) }
    mounted.array.release(h.file)
}

/// What a write, a truncate or a chown must drop, which the kernel leaves
/// to this daemon under FUSE_HANDLE_KILLPRIV_V2 (as Linux's own filesystems
/// drop it): set-user-ID, and set-group-ID where group execute is set, when
/// the caller lacks CAP_FSETID (`setid`); security.capability whoever the
/// caller is. A node known to hold none of them costs nothing. Caller holds
/// the tree lock. True if the mode changed: a reply that carries no
/// attributes must have the kernel's dropped (`invalidateAttributes`).
@discardableResult
private func dropPrivilegesLocked(_ ino: fuse_ino_t, setid: Bool) throws -> Bool {
    guard raidfs_io_killpriv_v2() != 0 else { return false }
    let known = mounted.inodes.privilegeState(ino)
    if known.withoutCapabilities && known.withoutSetid { return false }
    var changed = false
    let p = try path(ino)
    if !known.withoutSetid {
        let mode = try mounted.array.getattr(p).st_mode & 0o7777
        var kept = mode
        if setid {
            kept &= ~S_ISUID
            if kept & S_IXGRP != 0 { kept &= ~S_ISGID }
        }
        if kept != mode {
            mounted.inodes.modeChanging(ino)
            try mounted.array.chmod(p, mode: kept)
            changed = true
        } else if kept & S_ISUID == 0 && (kept & S_ISGID == 0 || kept & S_IXGRP == 0) {
            mounted.inodes.noteWithoutSetid(ino, generation: known.generation)
        }
    }
    if !known.withoutCapabilities {
        let caps = "security.capability"
        do {
            _ = try mounted.array.getxattr(p, name: caps)
            mounted.inodes.xattrsChanging(ino)
            try mounted.array.removexattr(p, name: caps)
        } catch let e as FSError where e.errno == ENODATA {
            mounted.inodes.noteWithoutCapabilities(ino, generation: known.generation)
        }
    }
    return changed
}

/// `dropPrivilegesLocked` for a write, which does not hold the tree lock
/// and whose reply carries no attributes.
@inline(__always)
private func dropPrivileges(_ ino: fuse_ino_t, setid: Bool) throws {
    guard raidfs_io_killpriv_v2() != 0 else { return }
    let known = mounted.inodes.privilegeState(ino)
    if known.withoutCapabilities && known.withoutSetid { return }
    if try treeLock.withReadLock({ try dropPrivilegesLocked(ino, setid: setid) }) { invalidateAttributes(ino) }
}

/// Has the kernel drop the attributes it holds of `ino` (not its pages).
private func invalidateAttributes(_ ino: fuse_ino_t) {
    let rc = fuse_lowlevel_notify_inval_inode(mounted.session, ino, -1, 0)
    if rc != 0 && rc != -ENOENT {
        mounted.logger.warning("dropping the kernel's attributes of inode \(ino): \(String(cString: strerror(-rc)))")
    }
}

/// Whether the request this thread serves asked for setid bits to be
/// dropped (a WRITE, OPEN or CREATE from a caller without CAP_FSETID).
@inline(__always)
private func requestDropsSetid() -> Bool { raidfs_io_request_kills_setid() != 0 }

private func caller(_ req: fuse_req_t?) -> Caller {
    let ctx = fuse_req_ctx(req)!.pointee
    return Caller(uid: ctx.uid, gid: ctx.gid)
}

/// Attributes of a node: an open file's from its open state (no member file
/// is opened), anything else from the members.
private func attributes(_ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>?) throws -> stat {
    let st = try currentAttributes(ino, fi)
    mounted.inodes.noteAttributes(ino, st)
    return st
}

private func currentAttributes(_ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>?) throws -> stat {
    if let h = handle(fi) { return try h.file.attributes() }
    if let af = heldOpen(ino) {
        defer { mounted.array.release(af) }
        return try af.attributes()
    }
    // A node whose last name is gone (see InodeTable.Node.attributes).
    if let st = mounted.inodes.removedAttributes(ino) { return st }
    return try mounted.array.getattr(try path(ino))
}

/// Opens the file of node `ino` by its path: ESTALE (the kernel looks the
/// name up again) when another file has taken that name meanwhile.
private func openNode(_ ino: fuse_ino_t) throws -> ArrayFile {
    let af = try mounted.array.open(try path(ino))
    if let id = mounted.inodes.fileId(ino), af.fileId != id {
        mounted.array.release(af)
        throw Stale()
    }
    return af
}

/// The file of node `ino`, opened once more: from its open state when a
/// handle has it open (no member file is opened), else by its path.
private func openFile(_ ino: fuse_ino_t) throws -> ArrayFile {
    try heldOpen(ino) ?? openNode(ino)
}

/// The open state of a regular file's node, held (released by the caller)
/// so that a release racing with this request cannot close its member files
/// underneath; nil when no handle has the file open.
private func heldOpen(_ ino: fuse_ino_t) -> ArrayFile? {
    mounted.inodes.fileId(ino).flatMap { mounted.array.open(fileId: $0) }
}

/// A setattr of a removed node (fchmod, fchown, futimens through a
/// descriptor still open on a removed directory): changes what its node
/// answers, as ext4 changes the inode it still holds; nil for any other
/// node, and for a regular file still open (served through its handle).
private func removedNode(_ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>?, _ a: stat,
                         _ has: (Int32) -> Bool) -> stat? {
    if handle(fi) != nil { return nil }
    if let af = heldOpen(ino) { mounted.array.release(af); return nil }
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let mode = has(FUSE_SET_ATTR_MODE), uid = has(FUSE_SET_ATTR_UID), gid = has(FUSE_SET_ATTR_GID)
    let atime = has(FUSE_SET_ATTR_ATIME) ? (has(FUSE_SET_ATTR_ATIME_NOW) ? now : a.st_atim) : nil
    let mtime = has(FUSE_SET_ATTR_MTIME) ? (has(FUSE_SET_ATTR_MTIME_NOW) ? now : a.st_mtim) : nil
    return mounted.inodes.removedAttributes(ino) { st in
        if mode { st.st_mode = (st.st_mode & S_IFMT) | (a.st_mode & 0o7777) }
        if uid { st.st_uid = a.st_uid }
        if gid { st.st_gid = a.st_gid }
        if let atime { st.st_atim = atime }
        if let mtime { st.st_mtim = mtime }
        st.st_ctim = now
    }
}

/// Answers a lookup-like request with the node for `name` in `parent`.
private func entry(_ parent: fuse_ino_t, _ name: String, _ st: stat) -> fuse_entry_param {
    var e = fuse_entry_param()
    e.ino = mounted.inodes.remember(parent, name, st)
    e.generation = 0   // node ids are never reused within a mount
    e.attr = st
    e.attr_timeout = cacheTimeout
    e.entry_timeout = cacheTimeout
    return e
}

private func replyEntry(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ st: stat) {
    var e = entry(parent, str(name), st)
    if fuse_reply_entry(req, &e) != 0 { mounted.inodes.forget(e.ino, 1) }
}

/// Makes `name` in `parent` with `make` (given its path) and answers with
/// its node.
private func makeEntry(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?,
                       _ make: (String) throws -> Void) throws {
    let p = try child(parent, name, creating: true)
    try make(p)
    replyEntry(req, parent, name, try mounted.array.getattr(p))
}

/// Looks `name` up in `parent` and answers with its node.
/// A name that is not there is answered as a node 0 the kernel keeps for
/// `cacheTimeout` (a negative dentry, as a local filesystem's): every
/// change to the tree comes through this mount, and the kernel forgets it
/// when one makes the name. A program that looks for a name, then creates
/// it (rsync's temporary files, make's targets) asks once, not twice.
private func lookupEntry(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) throws {
    let st: stat
    do {
        st = try mounted.array.getattr(try child(parent, name))
    } catch let e as FSError where e.errno == ENOENT {
        var none = fuse_entry_param()
        none.entry_timeout = cacheTimeout
        fuse_reply_entry(req, &none)
        return
    }
    replyEntry(req, parent, name, st)
}

private func fillDirectory(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t,
                           _ fi: UnsafeMutablePointer<fuse_file_info>?, plus: Bool) throws {
    guard let d = carried(fi, DirectoryHandle.self)?.takeUnretainedValue(), offset >= 0 else {
        throw FSError(EBADF, "readdir: no directory handle")
    }
    if mounted.inodes.removedAttributes(ino) != nil {
        d.entries = []   // removed: nothing, not even "." (as ext4)
    } else if d.entries.isEmpty || offset == 0 {
        // "." and ".." first, then the entries; raidfs's own names in the
        // root stay hidden.
        let hideOwn = d.node == InodeTable.rootId
        d.entries = [DirectoryEntry(name: ".", type: UInt8(DT_DIR)), DirectoryEntry(name: "..", type: UInt8(DT_DIR))]
            + (try mounted.array.list(try path(ino))).filter { !(hideOwn && $0.name.hasPrefix(RAIDArray.reservedPrefix)) }
    }
    // The kernel asks for at most a few pages: a read buffer serves.
    guard size <= 1 << 20 else { throw FSError(EINVAL, "readdir: \(size) bytes asked") }
    try mounted.readBuffers.withItem { b in fillEntries(req, ino, d, b.pointer.assumingMemoryBound(to: CChar.self), size, offset, plus) }
}

private func fillEntries(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ d: DirectoryHandle, _ buf: UnsafeMutablePointer<CChar>,
                         _ size: Int, _ offset: off_t, _ plus: Bool) {
    var used = 0
    var counted: [UInt64] = []
    var index = Int(offset)
    while index < d.entries.count {
        let e = d.entries[index]
        let next = off_t(index + 1)
        var added: Int
        if plus {
            var param = fuse_entry_param()
            let isDot = e.name == "." || e.name == ".."
            if !isDot {
                // A name removed since the listing was taken is skipped.
                guard let p = mounted.inodes.path(ino, e.name), let st = try? mounted.array.getattr(p) else {
                    index += 1
                    continue
                }
                param = entry(ino, e.name, st)
            } else {
                // No node (ino 0), but a nonzero d_ino: readdir(3) skips 0.
                param.attr.st_mode = mode_t(e.type) << 12
                param.attr.st_ino = 0xffff_ffff
            }
            added = fuse_add_direntry_plus(req, buf + used, size - used, e.name, &param, next)
            if added > size - used {
                if !isDot { mounted.inodes.forget(param.ino, 1) }
                break
            }
            if !isDot { counted.append(param.ino) }
        } else {
            var st = stat()
            st.st_mode = mode_t(e.type) << 12
            st.st_ino = 0xffff_ffff
            added = fuse_add_direntry(req, buf + used, size - used, e.name, &st, next)
            if added > size - used { break }
        }
        used += added
        index += 1
    }
    if fuse_reply_buf(req, buf, used) != 0 {
        // Interrupted: the kernel never saw these entries.
        for id in counted { mounted.inodes.forget(id, 1) }
    }
}

/// Builds the low-level operation table. Kept out of main.swift: callbacks
/// defined in top-level code trap when a FUSE worker thread calls them.
func makeOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()
    ops.`init` = { _, conn in
        guard let conn else { return }
        // 1 MiB requests (the kernel's ceiling) and matching readahead.
        conn.pointee.max_write = 1 << 20
        conn.pointee.max_readahead = 1 << 20
        let want = UInt32(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_ATOMIC_O_TRUNC)
        conn.pointee.want |= want & conn.pointee.capable
        // FUSE_HANDLE_KILLPRIV (libfuse's default) would leave dropping
        // setid bits on write to a filesystem that cannot tell who wrote:
        // not asked for. CFuseIO asks for its second version instead, where
        // the kernel says when to drop them (dropPrivileges); without it the
        // kernel drops them itself.
        conn.pointee.want &= ~UInt32(FUSE_CAP_HANDLE_KILLPRIV)
        if mounted.writebackCache && conn.pointee.capable & UInt32(FUSE_CAP_WRITEBACK_CACHE) != 0 {
            conn.pointee.want |= UInt32(FUSE_CAP_WRITEBACK_CACHE)
        } else {
            conn.pointee.want &= ~UInt32(FUSE_CAP_WRITEBACK_CACHE)
        }
        mounted.onInit()
        // The control socket answers now: a detached daemon's parent exits.
        raidfs_daemon_ready()
    }
    ops.lookup = { req, parent, name in
        named(req) { try lookupEntry(req, parent, name) }
    }
    ops.forget = { req, ino, count in
        mounted.inodes.forget(ino, count)
        fuse_reply_none(req)
    }
    ops.forget_multi = { req, count, forgets in
        for i in 0..<count { mounted.inodes.forget(forgets![i].ino, forgets![i].nlookup) }
        fuse_reply_none(req)
    }
    ops.getattr = { req, ino, fi in
        named(req) {
            var st = try attributes(ino, fi)
            fuse_reply_attr(req, &st, cacheTimeout)
        }
    }
    ops.setattr = { req, ino, attr, toSet, fi in
        named(req) {
            let a = attr!.pointee
            let set = Int32(toSet)
            func has(_ flag: Int32) -> Bool { set & flag != 0 }
            if var st = removedNode(ino, fi, a, has) {
                fuse_reply_attr(req, &st, cacheTimeout)
                return
            }
            // An open file is truncated through its handle or open state (it
            // may have no name left); everything else goes by path.
            if has(FUSE_SET_ATTR_SIZE) {
                guard a.st_size >= 0 else { throw FSError(EINVAL, "truncate: negative size") }
                if let h = handle(fi) {
                    try h.file.truncate(to: UInt64(a.st_size))
                } else {
                    let af = try openFile(ino)
                    defer { mounted.array.release(af) }
                    try af.truncate(to: UInt64(a.st_size))
                }
            }
            if has(FUSE_SET_ATTR_MODE) {
                mounted.inodes.modeChanging(ino)
                try mounted.array.chmod(try path(ino), mode: a.st_mode & 0o7777)
            }
            if has(FUSE_SET_ATTR_UID) || has(FUSE_SET_ATTR_GID) {
                try mounted.array.chown(try path(ino), uid: has(FUSE_SET_ATTR_UID) ? a.st_uid : uid_t.max,
                                        gid: has(FUSE_SET_ATTR_GID) ? a.st_gid : gid_t.max)
            }
            // A truncate or a chown drops what a write does (the kernel
            // sets KILL_SUIDGID, FATTR_KILL_SUIDGID, when the setid bits
            // go too); a mode set in the same request stands.
            if !has(FUSE_SET_ATTR_MODE) && (has(FUSE_SET_ATTR_SIZE) || has(FUSE_SET_ATTR_UID) || has(FUSE_SET_ATTR_GID)) {
                try dropPrivilegesLocked(ino, setid: has(FUSE_SET_ATTR_KILL_SUID))
            }
            if has(FUSE_SET_ATTR_ATIME) || has(FUSE_SET_ATTR_MTIME) {
                let now = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1)    // UTIME_NOW
                let omit = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)   // UTIME_OMIT
                let at = has(FUSE_SET_ATTR_ATIME) ? (has(FUSE_SET_ATTR_ATIME_NOW) ? now : a.st_atim) : omit
                let mt = has(FUSE_SET_ATTR_MTIME) ? (has(FUSE_SET_ATTR_MTIME_NOW) ? now : a.st_mtim) : omit
                try mounted.array.utimens(try path(ino), (at, mt))
                // An open file's next write must set mtime again.
                if let id = mounted.inodes.fileId(ino), let af = mounted.array.open(fileId: id) {
                    af.timesSet()
                    mounted.array.release(af)
                }
            }
            var st = try attributes(ino, fi)
            fuse_reply_attr(req, &st, cacheTimeout)
        }
    }
    ops.readlink = { req, ino in
        named(req) {
            let target = try mounted.array.readlink(try path(ino))
            fuse_reply_readlink(req, target)
        }
    }
    ops.mknod = { req, parent, name, mode, rdev in
        named(req) { try makeEntry(req, parent, name) { p in try mounted.array.mknod(p, mode: mode, device: rdev, caller: caller(req)) } }
    }
    ops.mkdir = { req, parent, name, mode in
        named(req) { try makeEntry(req, parent, name) { p in try mounted.array.mkdir(p, mode: mode, caller: caller(req)) } }
    }
    ops.symlink = { req, target, parent, name in
        named(req) { try makeEntry(req, parent, name) { p in try mounted.array.symlink(target: str(target), at: p, caller: caller(req)) } }
    }
    ops.link = { req, ino, newParent, newName in
        named(req) {
            let to = try child(newParent, newName, creating: true)
            try mounted.array.link(try path(ino), to)
            replyEntry(req, newParent, newName, try mounted.array.getattr(to))
        }
    }
    ops.unlink = { req, parent, name in
        named(req) {
            try mounted.array.unlink(try child(parent, name))
            mounted.inodes.removed(parent, str(name))
            fuse_reply_err(req, 0)
        }
    }
    ops.rmdir = { req, parent, name in
        named(req) {
            try mounted.array.rmdir(try child(parent, name))
            mounted.inodes.removed(parent, str(name))
            fuse_reply_err(req, 0)
        }
    }
    ops.rename = { req, parent, name, newParent, newName, flags in
        named(req, renaming: true) {
            try mounted.array.rename(try child(parent, name), try child(newParent, newName, creating: true), flags: flags)
            mounted.inodes.renamed(.init(parent: parent, name: str(name)), .init(parent: newParent, name: str(newName)),
                                   exchange: flags & 2 != 0)
            fuse_reply_err(req, 0)
        }
    }
    ops.create = { req, parent, name, mode, fi in
        named(req) {
            let p = try child(parent, name, creating: true)
            let flags = fi!.pointee.flags
            let (af, existed) = try mounted.array.createOrOpen(p, mode: mode, exclusive: flags & O_EXCL != 0, caller: caller(req))
            let truncating = existed && flags & O_TRUNC != 0
            do {
                if truncating { try af.truncate(to: 0, opening: true) }
                var e = entry(parent, str(name), try af.attributes())
                if truncating {
                    try dropPrivilegesLocked(e.ino, setid: requestDropsSetid())
                    e.attr = try af.attributes()
                }
                // (Buffered even with O_DIRECT: fuse_reply_create cannot ask
                // for direct I/O in parallel; the kernel still bypasses its
                // cache for an O_DIRECT descriptor.)
                attach(af, to: fi, direct: false)
                if fuse_reply_create(req, &e, fi) != 0 {
                    // Interrupted: the kernel will not release it.
                    mounted.inodes.forget(e.ino, 1)
                    detachFile(fi)
                }
            } catch {
                if fi!.pointee.fh != 0 { detachFile(fi) } else { mounted.array.release(af) }
                throw error
            }
        }
    }
    ops.open = { req, ino, fi in
        named(req) {
            let af = try openFile(ino)
            // O_TRUNC truncates whatever the access mode, as on Linux's own
            // filesystems (the kernel has checked write permission).
            if fi!.pointee.flags & O_TRUNC != 0 {
                do {
                    try af.truncate(to: 0, opening: true)
                    if try dropPrivilegesLocked(ino, setid: requestDropsSetid()) { invalidateAttributes(ino) }
                } catch { mounted.array.release(af); throw error }
            }
            // Every change to the file's data comes through this mount, and
            // the kernel's cache sees it: the cache is kept across opens
            // (see PageCacheCoherence for O_DIRECT writes).
            let direct = fi!.pointee.flags & raidfs_o_direct() != 0
            attach(af, to: fi, direct: direct)
            if direct {
                if raidfs_reply_open_direct(req, fi!.pointee.fh) != 0 { detachFile(fi) }
            } else if fuse_reply_open(req, fi) != 0 {
                detachFile(fi)
            }
        }
    }
    ops.read = { req, _, size, offset, fi in
        serve(req) {
            guard let h = handle(fi), offset >= 0 else { throw FSError(EBADF, "read: no open handle") }
            if size <= 1 << 20 {
                try mounted.readBuffers.withItem { b in
                    let n = try h.file.read(into: b.bytes, count: size, at: UInt64(offset))
                    fuse_reply_buf(req, b.pointer.assumingMemoryBound(to: CChar.self), n)
                }
            } else {
                let b = AlignedBuffer(count: size)
                let n = try h.file.read(into: b.bytes, count: size, at: UInt64(offset))
                fuse_reply_buf(req, b.pointer.assumingMemoryBound(to: CChar.self), n)
            }
        }
    }
    ops.write = { req, ino, buf, size, offset, fi in
        serve(req) {
            guard let h = handle(fi), offset >= 0 else { throw FSError(EBADF, "write: no open handle") }
            try dropPrivileges(ino, setid: requestDropsSetid())
            // (Fewer bytes only where the write crosses the largest file.)
            let written = try h.file.write(from: UnsafeRawPointer(buf!), count: size, at: UInt64(offset))
            if h.direct && mounted.pageCache.directWrite(h.file.fileId) {
                let rc = fuse_lowlevel_notify_inval_inode(mounted.session, ino, offset, off_t(written))
                if rc != 0 && rc != -ENOENT {
                    mounted.logger.warning("\(h.file.displayPath): dropping the kernel's cached pages after an O_DIRECT write: \(String(cString: strerror(-rc)))")
                }
            }
            fuse_reply_write(req, written)
        }
    }
    ops.flush = { req, _, _ in fuse_reply_err(req, 0) }
    ops.release = { req, ino, fi in
        // A file with no name left: what its node answers once this
        // handle, perhaps the last, is gone (an O_PATH descriptor on it).
        if mounted.inodes.removedAttributes(ino) != nil, let h = handle(fi), let st = try? h.file.attributes() {
            mounted.inodes.noteAttributes(ino, st)
        }
        detachFile(fi)
        fuse_reply_err(req, 0)
    }
    ops.fsync = { req, _, datasync, fi in
        serve(req) {
            guard let h = handle(fi) else { throw FSError(EBADF, "fsync: no open handle") }
            try h.file.sync(dataOnly: datasync != 0)
            fuse_reply_err(req, 0)
        }
    }
    ops.opendir = { req, ino, fi in
        named(req) {
            let st = try attributes(ino, nil)
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw FSError(ENOTDIR, "opendir: not a directory") }
            carry(DirectoryHandle(node: ino), in: fi)
            fi!.pointee.cache_readdir = 0
            if fuse_reply_open(req, fi) != 0 { _ = detach(fi, DirectoryHandle.self) }
        }
    }
    ops.readdir = { req, ino, size, offset, fi in
        named(req) { try fillDirectory(req, ino, size, offset, fi, plus: false) }
    }
    ops.readdirplus = { req, ino, size, offset, fi in
        named(req) { try fillDirectory(req, ino, size, offset, fi, plus: true) }
    }
    ops.releasedir = { req, _, fi in
        _ = detach(fi, DirectoryHandle.self)
        fuse_reply_err(req, 0)
    }
    ops.fsyncdir = { req, ino, _, _ in
        named(req) {
            // A removed directory has nothing left to make durable.
            if mounted.inodes.removedAttributes(ino) != nil { fuse_reply_err(req, 0); return }
            try mounted.array.syncDirectory(try path(ino))
            fuse_reply_err(req, 0)
        }
    }
    ops.statfs = { req, _ in
        serve(req) {
            var st = try mounted.array.statfs()
            fuse_reply_statfs(req, &st)
        }
    }
    ops.setxattr = { req, ino, name, value, size, flags in
        named(req) {
            mounted.inodes.xattrsChanging(ino)
            let bytes = size == 0 ? [] : Array(UnsafeRawBufferPointer(start: value, count: size))
            try mounted.array.setxattr(try path(ino), name: str(name), value: bytes, flags: flags)
            fuse_reply_err(req, 0)
        }
    }
    ops.getxattr = { req, ino, name, size in
        named(req) {
            let n = str(name)
            // Without FUSE_HANDLE_KILLPRIV_V2 the kernel asks for
            // security.capability before every write (to drop it, as a write
            // must): answered from memory once known absent, until an xattr
            // of the node changes.
            let isCaps = n == "security.capability"
            let known = mounted.inodes.capabilitiesState(ino)
            if isCaps && known.absent { throw FSError(ENODATA, "no \(n)") }
            do {
                let v = try mounted.array.getxattr(try path(ino), name: n)
                try replyXattr(req, v, size)
            } catch let e as FSError where e.errno == ENODATA && isCaps {
                mounted.inodes.noteWithoutCapabilities(ino, generation: known.generation)
                throw e
            }
        }
    }
    ops.listxattr = { req, ino, size in
        named(req) {
            var bytes: [UInt8] = []
            for n in try mounted.array.listxattr(try path(ino)) { bytes += Array(n.utf8) + [0] }
            try replyXattr(req, bytes, size)
        }
    }
    ops.removexattr = { req, ino, name in
        named(req) {
            mounted.inodes.xattrsChanging(ino)
            try mounted.array.removexattr(try path(ino), name: str(name))
            fuse_reply_err(req, 0)
        }
    }
    ops.fallocate = { req, _, mode, offset, length, fi in
        serve(req) {
            guard let h = handle(fi) else { throw FSError(EBADF, "fallocate: no open handle") }
            guard offset >= 0, length > 0 else { throw FSError(EINVAL, "fallocate: bad range") }
            // Past the largest file whatever the mode, as Linux's own check
            // (vfs_fallocate, against the filesystem's s_maxbytes) answers.
            let (end, over) = offset.addingReportingOverflow(length)
            if over { throw FSError(EFBIG, "fallocate: past 2^63 bytes") }
            try mounted.array.requireFits(UInt64(end), "\(h.file.displayPath): fallocate")
            let keepSize: Int32 = 0x01, punchHole: Int32 = 0x02
            switch mode {
            case 0, keepSize:
                try h.file.allocate(offset: UInt64(offset), length: UInt64(length), keepSize: mode == keepSize)
            case punchHole | keepSize:
                try h.file.punchHole(offset: UInt64(offset), length: UInt64(length))
            default:
                throw FSError(EOPNOTSUPP, "fallocate: mode \(mode) (collapse, insert, zero-range, unshare) is not supported")
            }
            fuse_reply_err(req, 0)
        }
    }
    return ops
}

/// getxattr/listxattr: the size when asked for it, else the bytes.
private func replyXattr(_ req: fuse_req_t?, _ v: [UInt8], _ size: Int) throws {
    if size == 0 {
        fuse_reply_xattr(req, v.count)
        return
    }
    guard v.count <= size else { throw FSError(ERANGE, "xattr value larger than the buffer") }
    v.withUnsafeBytes { fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
}

/// Mounts `m` at the mount point named in `fuseArguments` and serves it
/// until unmounted or signalled: libfuse's low-level session (parses the
/// FUSE options, daemonises unless -f, runs the multithreaded loop).
public func serve(_ m: MountedArray, fuseArguments: [String]) -> Int32 {
    mounted = m
    var ops = makeOperations()
    let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: fuseArguments.count + 1)
    for (i, a) in fuseArguments.enumerated() { argv[i] = strdup(a) }
    argv[fuseArguments.count] = nil
    defer {
        for i in 0..<fuseArguments.count { free(argv[i]) }
        argv.deallocate()
    }
    var args = fuse_args(argc: Int32(fuseArguments.count), argv: argv, allocated: 0)
    defer { fuse_opt_free_args(&args) }
    var opts = fuse_cmdline_opts()
    guard raidfs_parse_cmdline(&args, &opts) == 0 else { return 1 }
    defer { free(opts.mountpoint) }
    guard let se = fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, nil) else { return 1 }
    defer { fuse_session_destroy(se) }
    guard fuse_set_signal_handlers(se) == 0 else { return 1 }
    defer { fuse_remove_signal_handlers(se) }
    guard fuse_session_mount(se, opts.mountpoint) == 0 else { return 1 }
    // The same descriptor, read and written through CFuseIO's hooks.
    var io = fuse_custom_io(writev: raidfs_io_writev, read: raidfs_io_read, splice_receive: nil, splice_send: nil)
    guard fuse_session_custom_io(se, &io, fuse_session_fd(se)) == 0 else { return 1 }
    m.session = se
    defer { fuse_session_unmount(se) }
    if opts.foreground != 0 {
        fuse_daemonize(1)   // (chdir /)
    } else if raidfs_daemon_detach() != 0 {
        m.logger.critical("cannot detach the daemon: \(String(cString: strerror(errno)))")
        return 1
    }
    let rc: Int32
    if opts.singlethread != 0 {
        rc = fuse_session_loop(se)
    } else {
        let config = fuse_loop_cfg_create()
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_clone_fd(config, UInt32(opts.clone_fd))
        // (Unset, a limit reads as UINT_MAX, which libfuse 3.14 refuses with
        // a warning on every mount: only a value given is passed on.)
        if opts.max_idle_threads <= 100_000 { fuse_loop_cfg_set_idle_threads(config, opts.max_idle_threads) }
        if opts.max_threads <= 100_000 { fuse_loop_cfg_set_max_threads(config, opts.max_threads) }
        rc = raidfs_session_loop_mt(se, config)
    }
    return rc == 0 ? 0 : 1
}
