import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// getxattr/listxattr: the size when asked for it, else the bytes.
func replyXattr(_ req: fuse_req_t?, _ v: [UInt8], _ size: Int) throws {
    if size == 0 {
        fuse_reply_xattr(req, v.count)
        return
    }
    guard v.count <= size else { throw FSError(ERANGE, "xattr value larger than the buffer") }
    v.withUnsafeBytes { fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
}

/// The extended-attribute operations.
func installXattrOperations(_ ops: inout fuse_lowlevel_ops) {
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
}
