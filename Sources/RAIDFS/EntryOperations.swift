import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// Attributes of a node: an open file's from its open state (no member file
/// is opened), anything else from the members.
func attributes(_ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>?) throws -> stat {
    let st = try currentAttributes(ino, fi)
    mounted.inodes.noteAttributes(ino, st)
    return st
}

func currentAttributes(_ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>?) throws -> stat {
    if let h = handle(fi) { return try h.file.attributes() }
    if let af = heldOpen(ino) {
        defer { mounted.array.release(af) }
        return try af.attributes()
    }
    // A node whose last name is gone (see InodeTable.Node.attributes).
    if let st = mounted.inodes.removedAttributes(ino) { return st }
    return try mounted.array.getattr(try path(ino))
}

/// A setattr of a removed node (fchmod, fchown, futimens through a
/// descriptor still open on a removed directory): changes what its node
/// answers, as ext4 changes the inode it still holds; nil for any other
/// node, and for a regular file still open (served through its handle).
func removedNode(_ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>?, _ a: stat,
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
func entry(_ parent: fuse_ino_t, _ name: String, _ st: stat) -> fuse_entry_param {
    var e = fuse_entry_param()
    e.ino = mounted.inodes.remember(parent, name, st)
    e.generation = 0   // node ids are never reused within a mount
    e.attr = st
    e.attr_timeout = cacheTimeout
    e.entry_timeout = cacheTimeout
    return e
}

func replyEntry(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ st: stat) {
    var e = entry(parent, str(name), st)
    if fuse_reply_entry(req, &e) != 0 { mounted.inodes.forget(e.ino, 1) }
}

/// Makes `name` in `parent` with `make` (given its path) and answers with
/// its node.
func makeEntry(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?,
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
func lookupEntry(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) throws {
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

/// The entry operations: lookups and forgets, attributes, and the changes
/// that make, link, remove and rename names.
func installEntryOperations(_ ops: inout fuse_lowlevel_ops) {
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
}
