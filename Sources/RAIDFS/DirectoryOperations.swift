import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

func fillDirectory(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t,
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

func fillEntries(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ d: DirectoryHandle, _ buf: UnsafeMutablePointer<CChar>,
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

/// The directory operations: open, read (plain and plus), release, fsync.
func installDirectoryOperations(_ ops: inout fuse_lowlevel_ops) {
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
}
