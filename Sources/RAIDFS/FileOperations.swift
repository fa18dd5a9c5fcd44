import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// Opens the file of node `ino` by its path: ESTALE (the kernel looks the
/// name up again) when another file has taken that name meanwhile.
func openNode(_ ino: fuse_ino_t) throws -> ArrayFile {
    let af = try mounted.array.open(try path(ino))
    if let id = mounted.inodes.fileId(ino), af.fileId != id {
        mounted.array.release(af)
        throw Stale()
    }
    return af
}

/// The file of node `ino`, opened once more: from its open state when a
/// handle has it open (no member file is opened), else by its path.
func openFile(_ ino: fuse_ino_t) throws -> ArrayFile {
    try heldOpen(ino) ?? openNode(ino)
}

/// The open state of a regular file's node, held (released by the caller)
/// so that a release racing with this request cannot close its member files
/// underneath; nil when no handle has the file open.
func heldOpen(_ ino: fuse_ino_t) -> ArrayFile? {
    mounted.inodes.fileId(ino).flatMap { mounted.array.open(fileId: $0) }
}

/// The file operations: create and open, read and write, flush, release,
/// fsync and fallocate.
func installFileOperations(_ ops: inout fuse_lowlevel_ops) {
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
}
