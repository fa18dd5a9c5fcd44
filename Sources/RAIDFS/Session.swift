import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

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
func serve(_ req: fuse_req_t?, _ body: () throws -> Void) {
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
func named(_ req: fuse_req_t?, renaming: Bool = false, _ body: () throws -> Void) {
    if renaming { treeLock.withWriteLock { serve(req, body) } } else { treeLock.withReadLock { serve(req, body) } }
}

@inline(__always)
func str(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }

func path(_ ino: fuse_ino_t) throws -> String {
    if let p = mounted.inodes.path(ino) { return p }
    // An open file whose every name is gone: its orphan name.
    if let id = mounted.inodes.fileId(ino), let p = mounted.array.orphanPath(ofOpenFile: id) { return p }
    throw Stale()
}

/// The path of `name` in `parent`. raidfs's own names in the root
/// (`.raidfs-…`) do not exist for users: looking them up finds nothing, and
/// making them is refused.
func child(_ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, creating: Bool = false) throws -> String {
    let n = str(name)
    if parent == InodeTable.rootId && n.hasPrefix(RAIDArray.reservedPrefix) {
        throw creating ? FSError(EPERM, "\(n): names beginning with \(RAIDArray.reservedPrefix) in the root are raidfs's own")
                       : FSError(ENOENT, "\(n): no such file")
    }
    guard let p = mounted.inodes.path(parent, n) else { throw Stale() }
    return p
}

func caller(_ req: fuse_req_t?) -> Caller {
    let ctx = fuse_req_ctx(req)!.pointee
    return Caller(uid: ctx.uid, gid: ctx.gid)
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
    ops.statfs = { req, _ in
        serve(req) {
            var st = try mounted.array.statfs()
            fuse_reply_statfs(req, &st)
        }
    }
    installEntryOperations(&ops)
    installFileOperations(&ops)
    installDirectoryOperations(&ops)
    installXattrOperations(&ops)
    return ops
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
