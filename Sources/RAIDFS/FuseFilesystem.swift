import CFuse3
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// An open file as FUSE sees it: the shared array file behind a handle.
final class OpenHandle {
    let file: ArrayFile
    init(file: ArrayFile) { self.file = file }
}

/// An open directory: with nullpath_ok, readdir gets no path, so the
/// handle carries it.
final class DirectoryHandle {
    let path: String
    init(path: String) { self.path = path }
}

/// The mounted filesystem: the array plus the hooks the daemon runs when
/// the kernel connects.
public final class MountedArray: @unchecked Sendable {
    public let array: RAIDArray
    let logger: Logger
    /// Runs once the mount is live (after daemonising), e.g. to mark the
    /// array in use in its superblocks and start background work.
    let onInit: () -> Void

    public init(array: RAIDArray, logger: Logger, onInit: @escaping () -> Void) {
        self.array = array
        self.logger = logger
        self.onInit = onInit
    }
}

/// The single mounted array of this process; FUSE callbacks are C function
/// pointers and cannot capture context.
nonisolated(unsafe) var mounted: MountedArray!

@inline(__always)
private func run(_ body: () throws -> Int32) -> Int32 {
    do {
        return try body()
    } catch let e as FSError {
        if e.errno == EIO { mounted.logger.error("\(e.message)") }
        return -e.errno
    } catch {
        mounted.logger.error("\(error)")
        return -EIO
    }
}

@inline(__always)
private func str(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }

@inline(__always)
private func handle(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> OpenHandle? {
    guard let fi, fi.pointee.fh != 0 else { return nil }
    return Unmanaged<OpenHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).takeUnretainedValue()
}

private func attach(_ file: ArrayFile, to fi: UnsafeMutablePointer<fuse_file_info>?) {
    let h = OpenHandle(file: file)
    fi!.pointee.fh = UInt64(UInt(bitPattern: Unmanaged.passRetained(h).toOpaque()))
}

private func caller() -> Caller {
    let ctx = fuse_get_context()!.pointee
    return Caller(uid: ctx.uid, gid: ctx.gid)
}

/// Builds the libfuse operation table. Kept out of main.swift: callbacks
/// defined in top-level code trap when a FUSE worker thread calls them.
func makeOperations() -> fuse_operations {
    var ops = fuse_operations()
    ops.`init` = { conn, cfg in
        // 1 MiB requests (the kernel's ceiling) and matching readahead.
        conn!.pointee.max_write = 1 << 20
        conn!.pointee.max_readahead = 1 << 20
        cfg!.pointee.nullpath_ok = 1
        // Inode numbers are ours: a regular file's is its file id, stable
        // across remounts and shared by its hard links.
        cfg!.pointee.use_ino = 1
        // No attribute or entry caching in the kernel: the high-level API
        // gives each hard link its own node, so a cached link count or size
        // would go stale when the file changes through another name (libfuse's
        // passthrough example makes the same choice).
        cfg!.pointee.attr_timeout = 0
        cfg!.pointee.entry_timeout = 0
        cfg!.pointee.negative_timeout = 0
        // Unlinking an open file: libfuse renames it to .fuse_hiddenNNN and
        // unlinks it at the last close, so fstat and I/O through open
        // handles keep working (with hard_remove the kernel's getattr of an
        // unlinked open file has no path to ask for). readdir hides them.
        cfg!.pointee.hard_remove = 0
        mounted.onInit()
        return nil
    }
    ops.getattr = { path, st, fi in
        run {
            if let h = handle(fi) {
                st!.pointee = try h.file.attributes()
            } else {
                st!.pointee = try mounted.array.getattr(str(path))
            }
            return 0
        }
    }
    ops.readlink = { path, buf, size in
        run {
            let target = Array(try mounted.array.readlink(str(path)).utf8)
            let n = min(target.count, size - 1)
            target.withUnsafeBytes { memcpy(buf!, $0.baseAddress!, n) }
            buf![n] = 0
            return 0
        }
    }
    ops.mknod = { path, mode, dev in
        run { try mounted.array.mknod(str(path), mode: mode, device: dev, caller: caller()); return 0 }
    }
    ops.mkdir = { path, mode in
        run { try mounted.array.mkdir(str(path), mode: mode, caller: caller()); return 0 }
    }
    ops.unlink = { path in run { try mounted.array.unlink(str(path)); return 0 } }
    ops.rmdir = { path in run { try mounted.array.rmdir(str(path)); return 0 } }
    ops.symlink = { target, path in
        run { try mounted.array.symlink(target: str(target), at: str(path), caller: caller()); return 0 }
    }
    ops.rename = { from, to, flags in
        run { try mounted.array.rename(str(from), str(to), flags: flags); return 0 }
    }
    ops.link = { from, to in run { try mounted.array.link(str(from), str(to)); return 0 } }
    ops.chmod = { path, mode, _ in run { try mounted.array.chmod(str(path), mode: mode); return 0 } }
    ops.chown = { path, uid, gid, _ in run { try mounted.array.chown(str(path), uid: uid, gid: gid); return 0 } }
    ops.truncate = { path, size, fi in
        run {
            guard size >= 0 else { return -EINVAL }
            if let h = handle(fi) {
                try h.file.truncate(to: UInt64(size))
            } else {
                try mounted.array.truncate(str(path), size: UInt64(size))
            }
            return 0
        }
    }
    ops.open = { path, fi in
        run {
            let file = try mounted.array.open(str(path))
            if fi!.pointee.flags & O_TRUNC != 0 && fi!.pointee.flags & O_ACCMODE != O_RDONLY {
                do { try file.truncate(to: 0) } catch { mounted.array.release(file); throw error }
            }
            attach(file, to: fi)
            return 0
        }
    }
    ops.create = { path, mode, fi in
        run {
            let exclusive = fi!.pointee.flags & O_EXCL != 0
            let file = try mounted.array.create(str(path), mode: mode, exclusive: exclusive, caller: caller())
            if fi!.pointee.flags & O_TRUNC != 0 {
                do { try file.truncate(to: 0) } catch { mounted.array.release(file); throw error }
            }
            attach(file, to: fi)
            return 0
        }
    }
    ops.read = { _, buf, size, offset, fi in
        run {
            guard let h = handle(fi), offset >= 0 else { return -EBADF }
            return Int32(try h.file.read(into: buf!, count: size, at: UInt64(offset)))
        }
    }
    ops.write = { _, buf, size, offset, fi in
        run {
            guard let h = handle(fi), offset >= 0 else { return -EBADF }
            try h.file.write(from: buf!, count: size, at: UInt64(offset))
            return Int32(size)
        }
    }
    ops.statfs = { _, out in
        run { out!.pointee = try mounted.array.statfs(); return 0 }
    }
    ops.flush = { _, _ in 0 }
    ops.release = { _, fi in
        guard let fi, fi.pointee.fh != 0 else { return 0 }
        let h = Unmanaged<OpenHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).takeRetainedValue()
        fi.pointee.fh = 0
        mounted.array.release(h.file)
        return 0
    }
    ops.fsync = { _, datasync, fi in
        run {
            guard let h = handle(fi) else { return -EBADF }
            try h.file.sync(dataOnly: datasync != 0)
            return 0
        }
    }
    ops.opendir = { path, fi in
        run {
            let p = str(path)
            let st = try mounted.array.getattr(p)
            guard (st.st_mode & S_IFMT) == S_IFDIR else { return -ENOTDIR }
            fi!.pointee.fh = UInt64(UInt(bitPattern: Unmanaged.passRetained(DirectoryHandle(path: p)).toOpaque()))
            return 0
        }
    }
    ops.fsyncdir = { _, _, fi in
        run {
            guard let fi, fi.pointee.fh != 0 else { return -EBADF }
            let dir = Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).takeUnretainedValue()
            try mounted.array.syncDirectory(dir.path)
            return 0
        }
    }
    ops.releasedir = { _, fi in
        guard let fi, fi.pointee.fh != 0 else { return 0 }
        Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).release()
        fi.pointee.fh = 0
        return 0
    }
    ops.readdir = { path, buf, filler, _, fi, _ in
        run {
            guard let fi, fi.pointee.fh != 0 else { return -EBADF }
            let dir = Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).takeUnretainedValue()
            let entries = try mounted.array.list(dir.path)
            _ = filler!(buf, ".", nil, 0, fuse_fill_dir_flags(0))
            _ = filler!(buf, "..", nil, 0, fuse_fill_dir_flags(0))
            for e in entries where !e.name.hasPrefix(".fuse_hidden") {
                var st = stat()
                st.st_mode = mode_t(e.type) << 12
                st.st_ino = 0xffff_ffff  // FUSE_UNKNOWN_INO: the kernel asks getattr for the real one
                if filler!(buf, e.name, &st, 0, fuse_fill_dir_flags(0)) != 0 { break }
            }
            return 0
        }
    }
    ops.access = { path, _ in
        run { _ = try mounted.array.getattr(str(path)); return 0 }
    }
    ops.utimens = { path, tv, _ in
        run {
            let now = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1 /* UTIME_NOW */)
            let times = tv.map { ($0[0], $0[1]) } ?? (now, now)
            try mounted.array.utimens(str(path), times)
            return 0
        }
    }
    ops.fallocate = { _, mode, offset, length, fi in
        run {
            guard let h = handle(fi) else { return -EBADF }
            guard offset >= 0, length > 0 else { return -EINVAL }
            let keepSize: Int32 = 0x01, punchHole: Int32 = 0x02
            switch mode {
            case 0, keepSize:
                try h.file.allocate(offset: UInt64(offset), length: UInt64(length), keepSize: mode == keepSize)
            case punchHole | keepSize:
                try h.file.punchHole(offset: UInt64(offset), length: UInt64(length))
            default:
                return -EOPNOTSUPP   // collapse, insert, zero-range, unshare
            }
            return 0
        }
    }
    ops.setxattr = { path, name, value, size, flags in
        run {
            let bytes = size == 0 ? [] : Array(UnsafeRawBufferPointer(start: value, count: size))
            try mounted.array.setxattr(str(path), name: str(name), value: bytes, flags: flags)
            return 0
        }
    }
    ops.getxattr = { path, name, value, size in
        run {
            let v = try mounted.array.getxattr(str(path), name: str(name))
            if size == 0 { return Int32(v.count) }
            guard v.count <= size else { return -ERANGE }
            v.withUnsafeBytes { if $0.count > 0 { memcpy(value!, $0.baseAddress!, $0.count) } }
            return Int32(v.count)
        }
    }
    ops.listxattr = { path, list, size in
        run {
            var bytes: [UInt8] = []
            for n in try mounted.array.listxattr(str(path)) { bytes += Array(n.utf8) + [0] }
            if size == 0 { return Int32(bytes.count) }
            guard bytes.count <= size else { return -ERANGE }
            bytes.withUnsafeBytes { if $0.count > 0 { memcpy(list!, $0.baseAddress!, $0.count) } }
            return Int32(bytes.count)
        }
    }
    ops.removexattr = { path, name in
        run { try mounted.array.removexattr(str(path), name: str(name)); return 0 }
    }
    return ops
}

/// Mounts `array` at the mount point named in `fuseArguments` and serves it
/// until unmounted or signalled (fuse_main: parses the FUSE options,
/// daemonises unless -f, runs the multithreaded loop).
public func serve(_ m: MountedArray, fuseArguments: [String]) -> Int32 {
    mounted = m
    var ops = makeOperations()
    var cargs = fuseArguments.map { strdup($0) }
    defer { for p in cargs { free(p) } }
    return raidfs_fuse_main(Int32(cargs.count), &cargs, &ops, nil)
}
