import RAIDBase
import RAIDLayout
#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// A member disk that is a directory on any POSIX filesystem:
/// `DIR/raidfs.sb` is the superblock, `DIR/data/` mirrors the array's tree.
// @unchecked Sendable: its data directory's fd is opened once under `dataFdLock` and its superblock written under `superblockLock`; the rest are system calls on fds and paths.
public final class DirectoryMember: Member, @unchecked Sendable {
    public static let superblockName = "raidfs.sb"
    public static let dataDirectoryName = "data"

    public let root: String
    public var name: String { root }
    private let dataRoot: String

    /// The data directory, opened once: every namespace call is made
    /// relative to it (the *at calls), so array paths up to the kernel's
    /// PATH_MAX work however deep the member directory itself is.
    private var dataFd: Int32 = -1
    private let dataFdLock = Lock()
    /// One superblock write at a time: each goes through the same temporary
    /// name, and two at once would tear it or lose the rename.
    private let superblockLock = Lock()
    /// `largestFileBytes`, once probed (under `sizeProbeLock`).
    private var probedLargestFileBytes: UInt64?
    private let sizeProbeLock = Lock()
    /// Every system call made on the member, counted (`raidctl iostat`).
    public let io = MemberIO()
    public var ioCounters: MemberIO? { io }
    /// The superblock reached through the data directory: one stat finds
    /// both there (the kernel walks "..", it does not drop it).
    private let presenceProbe: String

    /// The process's umask, read once (the daemon clears it as it starts,
    /// so that its creates need no chmod after them).
    package static let processUmask: mode_t = {
        if let status = try? readWholeFile("/proc/self/status"),
           let line = String(decoding: status, as: UTF8.self).split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }),
           let mask = mode_t(line.dropFirst(6).trimmingCharacters(in: .whitespaces), radix: 8) {
            return mask
        }
        let mask = umask(0)
        umask(mask)
        return mask
    }()

    public init(root: String) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
        self.dataRoot = r + "/" + DirectoryMember.dataDirectoryName
        presenceProbe = dataRoot + "/../" + DirectoryMember.superblockName
    }

    deinit {
        if dataFd >= 0 { Glibc.close(dataFd) }
    }

    @inline(__always)
    package func hostPath(_ path: String) -> String {
        path == "/" ? dataRoot : dataRoot + path
    }

    /// The data directory's descriptor, opened on first use (a new member's
    /// directory is made after this object); -1 while it cannot be opened.
    private func dataDirectory() -> Int32 {
        dataFdLock.withLock {
            if dataFd < 0 { dataFd = io.call(.open) { Glibc.open(dataRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } }
            return dataFd
        }
    }

    /// Names array path `path` as (directory descriptor, relative name) for
    /// the *at calls and runs `body` on it; returns -1 with errno set when
    /// the path cannot be reached. A name too long for one system call (an
    /// array path near PATH_MAX plus nothing: the kernel's limit applies to
    /// each call's argument) is reached by opening its parent directories a
    /// few components at a time, as a local filesystem walks them.
    @inline(__always)
    private func at(_ path: String, _ body: (Int32, UnsafePointer<CChar>) -> Int) -> Int {
        let base = dataDirectory()
        if base < 0 { return hostPath(path).withCString { body(AT_FDCWD, $0) } }
        if path == "/" { return body(base, ".") }
        let relative = path.utf8.dropFirst()
        if relative.count < 4000 { return String(Substring(relative)).withCString { body(base, $0) } }
        var components = relative.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
        guard let last = components.popLast() else { return body(base, ".") }
        var dir = base
        defer { if dir != base { io.call(.other) { _ = Glibc.close(dir) } } }
        var batch: [UInt8] = []
        func descend() -> Bool {
            let next = (batch + [0]).withUnsafeBufferPointer { b in
                io.call(.open) { b.withMemoryRebound(to: CChar.self) { openat(dir, $0.baseAddress!, RAIDFS_O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) } }
            }
            if dir != base { let saved = errno; io.call(.other) { _ = Glibc.close(dir) }; errno = saved }
            dir = next
            batch.removeAll(keepingCapacity: true)
            return next >= 0
        }
        for c in components {
            if !batch.isEmpty && batch.count + 1 + c.count >= 4000 {
                guard descend() else { dir = base; return -1 }
            }
            if !batch.isEmpty { batch.append(UInt8(ascii: "/")) }
            batch += c
        }
        if !batch.isEmpty { guard descend() else { dir = base; return -1 } }
        return String(decoding: last, as: UTF8.self).withCString { body(dir, $0) }
    }

    /// A path the path-only calls (the xattr family) can take for `path`:
    /// through /proc/self/fd when it lives under an open directory.
    private func viaProc(_ dir: Int32, _ name: UnsafePointer<CChar>) -> String {
        dir == AT_FDCWD ? String(cString: name) : "/proc/self/fd/\(dir)/" + String(cString: name)
    }

    private func fail(_ op: String, _ path: String) -> FSError {
        FSError.system(op, root + ":" + path)
    }

    public func readSuperblock() throws -> [UInt8] {
        try DirectoryMember.readWholeFile(root + "/" + DirectoryMember.superblockName, io: io)
    }

    public func writeSuperblock(_ bytes: [UInt8]) throws {
        try superblockLock.withLock {
            try DirectoryMember.writeFileAtomically(directory: root, name: DirectoryMember.superblockName, bytes: bytes, io: io)
        }
    }

    public static let intentLogName = "raidfs.intent"
    public static let eventLogName = "raidfs.events"

    public func readIntentLog() throws -> [UInt8] {
        let path = root + "/" + DirectoryMember.intentLogName
        var st = stat()
        if io.call(.other, { hostStat(path, &st) }) != 0 && errno == ENOENT { return [] }
        return try DirectoryMember.readWholeFile(path, io: io)
    }

    public func writeIntentLog(slot: Int, slotBytes: Int, _ bytes: [UInt8]) throws {
        precondition(bytes.count <= slotBytes)
        let path = root + "/" + DirectoryMember.intentLogName
        guard isPresent() else { throw FSError(ENOENT, "\(root): member not present") }
        let fd = io.call(.open) { Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { throw FSError.system("open", path) }
        defer { io.call(.other) { _ = Glibc.close(fd) } }
        let n = bytes.withUnsafeBytes { b in io.transfer(.write) { pwrite(fd, b.baseAddress, b.count, off_t(slot * slotBytes)) } }
        guard n == bytes.count else { throw FSError.system("pwrite", path) }
        guard io.call(.flush, { fdatasync(fd) }) == 0 else { throw FSError.system("fdatasync", path) }
    }

    public func readEvents() throws -> [UInt8] {
        let path = root + "/" + DirectoryMember.eventLogName
        var st = stat()
        if io.call(.other, { hostStat(path, &st) }) != 0 && errno == ENOENT { return [] }
        // Keep the newest 1 MiB; the log is for people, not for recovery.
        let all = try DirectoryMember.readWholeFile(path, io: io)
        return all.count > 1 << 20 ? Array(all.suffix(1 << 20)) : all
    }

    public func appendEvents(_ bytes: [UInt8]) throws {
        let path = root + "/" + DirectoryMember.eventLogName
        // Never create files in a member that is being removed (rm -rf of
        // its directory would fail with "Directory not empty").
        guard isPresent() else { throw FSError(ENOENT, "\(root): member not present") }
        let fd = io.call(.open) { Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { throw FSError.system("open", path) }
        defer { io.call(.other) { _ = Glibc.close(fd) } }
        let n = bytes.withUnsafeBytes { b in io.transfer(.write) { Glibc.write(fd, b.baseAddress, b.count) } }
        guard n == bytes.count else { throw FSError.system("write", path) }
    }

    public func syncAll() throws {
        let fd = io.call(.open) { Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw FSError.system("open", root) }
        defer { io.call(.other) { _ = Glibc.close(fd) } }
        guard io.call(.flush, { syncfs(fd) }) == 0 else { throw FSError.system("syncfs", root) }
    }

    /// The data directory and the superblock beside it, in one stat.
    public func isPresent() -> Bool {
        var st = stat()
        return io.call(.other, { hostStat(presenceProbe, &st) }) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    public func lstat(_ path: String) throws -> stat {
        var st = stat()
        guard at(path, { d, n in io.call(.other) { Int(fstatat(d, n, &st, AT_SYMLINK_NOFOLLOW)) } }) == 0 else { throw fail("lstat", path) }
        return st
    }

    public func list(_ path: String) throws -> [DirectoryEntry] {
        let fd = Int32(at(path) { d, n in io.call(.open) { Int(openat(d, n, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) } })
        guard fd >= 0, let dir = fdopendir(fd) else {
            let saved = errno
            if fd >= 0 { io.call(.other) { _ = Glibc.close(fd) } }
            errno = saved
            throw fail("opendir", path)
        }
        defer { io.call(.other) { _ = closedir(dir) } }
        var out: [DirectoryEntry] = []
        let start = MemberIO.now()
        defer { io.count(.other, since: start) }   // the directory read (getdents), however many calls
        errno = 0
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." {
                out.append(DirectoryEntry(name: name, type: ent.pointee.d_type))
            }
        }
        if errno != 0 { throw fail("readdir", path) }
        return out
    }

    public func mkdir(_ path: String, mode: mode_t) throws {
        let rc = at(path) { dir, name in
            // The umask applied by mkdir(2) is the daemon's, not the caller's.
            guard io.call(.other, { mkdirat(dir, name, mode) }) == 0 else { return -1 }
            return Int(io.call(.other) { raidfs_fchmodat_nofollow(dir, name, UInt32(mode & 0o7777)) })
        }
        guard rc == 0 else { throw fail("mkdir", path) }
    }

    public func rmdir(_ path: String) throws {
        guard at(path, { d, n in io.call(.other) { Int(unlinkat(d, n, AT_REMOVEDIR)) } }) == 0 else { throw fail("rmdir", path) }
    }

    public func unlink(_ path: String) throws {
        guard at(path, { d, n in io.call(.other) { Int(unlinkat(d, n, 0)) } }) == 0 else { throw fail("unlink", path) }
    }

    public func rename(_ from: String, _ to: String, flags: UInt32) throws {
        let rc = at(from) { fromDir, fromName in
            at(to) { toDir, toName in io.call(.rename) { Int(renameat2(fromDir, fromName, toDir, toName, flags)) } }
        }
        guard rc == 0 else { throw fail("rename", from + " -> " + to) }
    }

    public func link(_ from: String, _ to: String) throws {
        let rc = at(from) { fromDir, fromName in
            at(to) { toDir, toName in io.call(.other) { Int(linkat(fromDir, fromName, toDir, toName, 0)) } }
        }
        guard rc == 0 else { throw fail("link", to) }
    }

    public func link(_ file: MemberFile, at path: String) throws {
        guard let f = file as? DirectoryMemberFile else { preconditionFailure("link: \(type(of: file)) is not \(name)'s file") }
        let rc = at(path) { dir, name in io.call(.other) { Int(linkat(AT_FDCWD, "/proc/self/fd/\(f.descriptor)", dir, name, AT_SYMLINK_FOLLOW)) } }
        guard rc == 0 else { throw fail("link", path) }
    }

    public func symlink(target: String, at path: String) throws {
        guard at(path, { d, n in io.call(.other) { Int(symlinkat(target, d, n)) } }) == 0 else { throw fail("symlink", path) }
    }

    public func readlink(_ path: String) throws -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buf.withUnsafeMutableBufferPointer { b in
            at(path) { d, n in io.call(.other) { readlinkat(d, n, b.baseAddress!, b.count - 1) } }
        }
        guard n >= 0 else { throw fail("readlink", path) }
        buf[n] = 0
        return String(cString: buf)
    }

    public func mknod(_ path: String, mode: mode_t, device: dev_t) throws {
        let rc = at(path) { dir, name in
            guard io.call(.other, { mknodat(dir, name, mode, device) }) == 0 else { return -1 }
            return Int(io.call(.other) { fchmodat(dir, name, mode & 0o7777, 0) })
        }
        guard rc == 0 else { throw fail("mknod", path) }
    }

    /// Never through a symlink: a member that diverged (a crash cut a
    /// change short) may hold one where the repair expects a file, and
    /// following it could change the host outside the member. A symlink's
    /// own mode means nothing on Linux: setting it is a no-op.
    public func chmod(_ path: String, mode: mode_t) throws {
        let rc = at(path) { dir, name in
            let r = io.call(.other) { raidfs_fchmodat_nofollow(dir, name, UInt32(mode & 0o7777)) }
            if r != 0 && (errno == EOPNOTSUPP || errno == ENOTSUP) {
                var st = stat()
                if io.call(.other, { fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) }) == 0 && (st.st_mode & S_IFMT) == S_IFLNK { return 0 }
                errno = EOPNOTSUPP
            }
            return Int(r)
        }
        guard rc == 0 else { throw fail("chmod", path) }
    }

    public func chown(_ path: String, uid: uid_t, gid: gid_t) throws {
        guard at(path, { d, n in io.call(.other) { Int(fchownat(d, n, uid, gid, AT_SYMLINK_NOFOLLOW)) } }) == 0 else { throw fail("chown", path) }
    }

    public func utimens(_ path: String, _ times: (timespec, timespec)) throws {
        var t = [times.0, times.1]
        guard at(path, { d, n in io.call(.other) { Int(utimensat(d, n, &t, AT_SYMLINK_NOFOLLOW)) } }) == 0 else { throw fail("utimensat", path) }
    }

    /// Probed once: a file of no name (O_TMPFILE in the data directory, or
    /// a named one removed at once where the host has no O_TMPFILE) is
    /// truncated to ever larger sizes until the host says EFBIG. It holds
    /// no block, and nothing is left behind.
    public func largestFileBytes() -> UInt64? {
        sizeProbeLock.withLock { () -> UInt64? in
            if let probed = probedLargestFileBytes { return probed }
            var fd = Glibc.open(dataRoot, RAIDFS_O_TMPFILE | O_RDWR | O_CLOEXEC, 0o600)
            if fd < 0 {
                let name = root + "/.raidfs-size-probe"
                fd = Glibc.open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
                if fd >= 0 { Glibc.unlink(name) }
            }
            guard fd >= 0 else { return nil }
            defer { Glibc.close(fd) }
            // FAT extends a file by writing zeros: its limit is known.
            if raidfs_fs_type(fd) == 0x4d44 /* MSDOS_SUPER_MAGIC */ {
                probedLargestFileBytes = 0xFFFF_FFFF
                return 0xFFFF_FFFF
            }
            // The largest size that ftruncate takes (binary search: about 63 calls).
            var lo: Int64 = 0, hi = Int64.max
            while lo < hi {
                let mid = lo + (hi - lo) / 2 + 1
                if ftruncate(fd, off_t(mid)) == 0 { lo = mid } else { hi = mid - 1 }
            }
            probedLargestFileBytes = UInt64(lo)
            return UInt64(lo)
        }
    }

    public func statfs() throws -> statvfs {
        var s = statvfs()
        guard io.call(.other, { hostStatvfs(root, &s) }) == 0 else { throw fail("statvfs", "/") }
        return s
    }

    public func setxattr(_ path: String, name: String, value: [UInt8], flags: Int32) throws {
        let rc = value.withUnsafeBytes { v in
            at(path) { d, n in io.call(.xattr) { Int(lsetxattr(viaProc(d, n), name, v.baseAddress, v.count, flags)) } }
        }
        guard rc == 0 else { throw fail("setxattr", path) }
    }

    public func getxattr(_ path: String, name: String) throws -> [UInt8] {
        var value: [UInt8] = []
        let rc = at(path) { dir, node in
            let host = viaProc(dir, node)
            for _ in 0..<4 {
                let n = io.call(.xattr) { lgetxattr(host, name, nil, 0) }
                guard n >= 0 else { return -1 }
                value = [UInt8](repeating: 0, count: n)
                let got = value.withUnsafeMutableBytes { v in io.call(.xattr) { lgetxattr(host, name, v.baseAddress, v.count) } }
                if got >= 0 { value.removeSubrange(got...); return 0 }
                if errno != ERANGE { return -1 }
            }
            errno = EAGAIN   // the value kept changing size
            return -1
        }
        guard rc == 0 else { throw fail("getxattr", path) }
        return value
    }

    public func listxattr(_ path: String) throws -> [String] {
        var buf: [CChar] = []
        let rc = at(path) { dir, node in
            let host = viaProc(dir, node)
            let n = io.call(.xattr) { llistxattr(host, nil, 0) }
            guard n > 0 else { return n }
            buf = [CChar](repeating: 0, count: n)
            let got = io.call(.xattr) { llistxattr(host, &buf, n) }
            if got >= 0 { buf.removeSubrange(got...) }
            return got
        }
        guard rc >= 0 else { throw fail("listxattr", path) }
        return buf.split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }

    /// One lgetxattr, where opening the file took three calls.
    public func readAttribute(at path: String, into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        let n = at(path) { d, node in io.call(.xattr) { lgetxattr(viaProc(d, node), FileAttribute.name, buffer, capacity) } }
        if n >= 0 { return n }
        switch errno {
        case ENODATA: return nil
        case ERANGE: return capacity + 1
        default: throw fail("getxattr \(FileAttribute.name)", path)
        }
    }

    public func removexattr(_ path: String, name: String) throws {
        guard at(path, { d, n in io.call(.xattr) { Int(lremovexattr(viaProc(d, n), name)) } }) == 0 else { throw fail("removexattr", path) }
    }

    public func syncDirectory(_ path: String) throws {
        let fd = Int32(at(path) { d, n in io.call(.open) { Int(openat(d, n, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) } })
        guard fd >= 0 else { throw fail("open", path) }
        defer { io.call(.other) { _ = Glibc.close(fd) } }
        guard io.call(.flush, { fsync(fd) }) == 0 else { throw fail("fsync", path) }
    }

    public func open(_ path: String, flags: Int32, mode: mode_t) throws -> MemberFile {
        // O_NOATIME: the engine's reads (headers for stat, chunks, scrubs)
        // are not the user's; a user's read marks the file accessed itself.
        var fd = Int32(at(path) { d, n in io.call(.open) { Int(openat(d, n, flags | O_CLOEXEC | RAIDFS_O_NOATIME, mode)) } })
        if fd < 0 && errno == EPERM {   // not the owner and no CAP_FOWNER
            fd = Int32(at(path) { d, n in io.call(.open) { Int(openat(d, n, flags | O_CLOEXEC, mode)) } })
        }
        guard fd >= 0 else { throw fail("open", path) }
        if flags & O_CREAT != 0 && DirectoryMember.processUmask != 0 {
            // open(2) applied the daemon's umask; the array's mode is the caller's.
            _ = io.call(.other) { fchmod(fd, mode & 0o7777) }
        }
        return DirectoryMemberFile(fd: fd, name: root + ":" + path, io: io)
    }

    // MARK: whole-file helpers (superblocks, event log)

    /// (`io` counts its system calls.)
    public static func readWholeFile(_ path: String, io: MemberIO = .uncounted) throws -> [UInt8] {
        let fd = io.call(.open) { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw FSError.system("open", path) }
        defer { io.call(.other) { _ = Glibc.close(fd) } }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try io.transfer(.read) {
                try retryingEINTR("read", path) { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > 64 * 1024 * 1024 { throw FSError.io("\(path): larger than 64 MiB") }
        }
        return out
    }

    public static func writeFileAtomically(directory: String, name: String, bytes: [UInt8], io: MemberIO = .uncounted) throws {
        let tmp = directory + "/." + name + ".tmp"
        let final = directory + "/" + name
        let fd = io.call(.open) { Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { throw FSError.system("open", tmp) }
        var ok = false
        defer {
            io.call(.other) { _ = Glibc.close(fd) }
            if !ok { io.call(.other) { _ = Glibc.unlink(tmp) } }
        }
        var done = 0
        while done < bytes.count {
            done += try io.transfer(.write) {
                try retryingEINTR("write", tmp) { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) } }
            }
        }
        guard io.call(.flush, { fsync(fd) }) == 0 else { throw FSError.system("fsync", tmp) }
        guard io.call(.rename, { Glibc.rename(tmp, final) }) == 0 else { throw FSError.system("rename", final) }
        ok = true
        let dfd = io.call(.open) { Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if dfd >= 0 {
            defer { io.call(.other) { _ = Glibc.close(dfd) } }
            guard io.call(.flush, { fsync(dfd) }) == 0 else { throw FSError.system("fsync", directory) }
        }
    }
}

package final class DirectoryMemberFile: MemberFile {
    private var fd: Int32
    package var descriptor: Int32 { fd }
    private let name: String
    private let io: MemberIO

    package init(fd: Int32, name: String, io: MemberIO) {
        self.fd = fd
        self.name = name
        self.io = io
    }

    deinit { close() }

    package func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws -> Int {
        try io.transfer(.read) { try retryingEINTR("pread", name) { pread(fd, buffer, count, off_t(offset)) } }
    }

    package func write(from buffer: UnsafeRawPointer, count: Int, at offset: UInt64) throws {
        var done = 0
        while done < count {
            done += try io.transfer(.write) {
                try retryingEINTR("pwrite", name) { pwrite(fd, buffer + done, count - done, off_t(offset) + off_t(done)) }
            }
        }
    }

    package func sync(dataOnly: Bool) throws {
        guard io.call(.flush, { dataOnly ? fdatasync(fd) : fsync(fd) }) == 0 else { throw FSError.system("fsync", name) }
    }

    package func truncate(to size: UInt64) throws {
        guard io.call(.other, { ftruncate(fd, off_t(size)) }) == 0 else { throw FSError.system("ftruncate", name) }
    }

    package func allocate(at offset: UInt64, length: UInt64) throws {
        guard io.call(.other, { fallocate(fd, 1 /* FALLOC_FL_KEEP_SIZE */, off_t(offset), off_t(length)) }) == 0 else {
            throw FSError.system("fallocate", name)
        }
    }

    package func punchHole(at offset: UInt64, length: UInt64) throws {
        guard io.call(.other, { fallocate(fd, 3 /* PUNCH_HOLE | KEEP_SIZE */, off_t(offset), off_t(length)) }) == 0 else {
            throw FSError.system("fallocate", name)
        }
    }

    package func nextData(from offset: UInt64) throws -> UInt64? {
        guard offset <= UInt64(Int64.max) else { return nil }
        let at = io.call(.other) { lseek(fd, off_t(offset), 3 /* SEEK_DATA */) }
        if at >= 0 { return UInt64(at) }
        if errno == ENXIO { return nil }
        throw FSError.system("lseek", name)
    }

    package func markModified() throws {
        let omit = (1 << 30) - 2, now = (1 << 30) - 1   // UTIME_OMIT, UTIME_NOW
        var times = [timespec(tv_sec: 0, tv_nsec: omit), timespec(tv_sec: 0, tv_nsec: now)]
        guard io.call(.other, { futimens(fd, &times) }) == 0 else { throw FSError.system("futimens", name) }
    }

    package func markAccessed() throws {
        // A one-byte read through a descriptor without O_NOATIME: the host
        // applies its own atime policy, and ctime does not move (setting
        // the time explicitly would change it).
        let reader = io.call(.open) { Glibc.open("/proc/self/fd/\(fd)", O_RDONLY | O_CLOEXEC) }
        guard reader >= 0 else { throw FSError.system("open", name) }
        defer { io.call(.other) { _ = Glibc.close(reader) } }
        var byte: UInt8 = 0
        guard io.call(.read, { pread(reader, &byte, 1, 0) }) >= 0 else { throw FSError.system("pread", name) }
    }

    package func status() throws -> stat {
        var st = stat()
        guard io.call(.other, { fstat(fd, &st) }) == 0 else { throw FSError.system("fstat", name) }
        return st
    }

    package func readAttribute(into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        let n = io.call(.xattr) { fgetxattr(fd, FileAttribute.name, buffer, capacity) }
        if n >= 0 { return n }
        switch errno {
        case ENODATA: return nil
        case ERANGE: return capacity + 1
        default: throw FSError.system("fgetxattr \(FileAttribute.name)", name)
        }
    }

    package func modifyAttribute(capacity: Int, _ body: (UnsafeMutableRawPointer, Int?) -> Int?) throws {
        try withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 8) { raw in
            let n = try readAttribute(into: raw.baseAddress!, capacity: capacity)
            if let count = body(raw.baseAddress!, n) { try writeAttribute(from: raw.baseAddress!, count: count) }
        }
    }

    package func writeAttribute(from buffer: UnsafeRawPointer, count: Int) throws {
        guard io.call(.xattr, { fsetxattr(fd, FileAttribute.name, buffer, count, 0) }) == 0 else {
            throw FSError.system("fsetxattr \(FileAttribute.name)", name)
        }
    }

    package func close() {
        if fd >= 0 {
            io.call(.other) { _ = Glibc.close(fd) }
            fd = -1
        }
    }
}

// Free functions, so the names resolve to the syscalls and not to the
// `stat` / `statvfs` structs or this file's methods.
@inline(__always) package func hostStat(_ path: String, _ st: inout stat) -> Int32 { stat(path, &st) }
@inline(__always) package func hostStatvfs(_ path: String, _ s: inout statvfs) -> Int32 { statvfs(path, &s) }
