#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// A member disk that is a directory on any POSIX filesystem:
/// `DIR/raidfs.sb` is the superblock, `DIR/data/` mirrors the array's tree.
public final class DirectoryMember: Member, @unchecked Sendable {
    public static let superblockName = "raidfs.sb"
    public static let dataDirectoryName = "data"

    public let root: String
    public var name: String { root }
    private let dataRoot: String

    public init(root: String) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
        self.dataRoot = r + "/" + DirectoryMember.dataDirectoryName
    }

    @inline(__always)
    func hostPath(_ path: String) -> String {
        path == "/" ? dataRoot : dataRoot + path
    }

    private func fail(_ op: String, _ path: String) -> FSError {
        FSError.system(op, root + ":" + path)
    }

    public func readSuperblock() throws -> [UInt8] {
        try DirectoryMember.readWholeFile(root + "/" + DirectoryMember.superblockName)
    }

    public func writeSuperblock(_ bytes: [UInt8]) throws {
        try DirectoryMember.writeFileAtomically(directory: root, name: DirectoryMember.superblockName, bytes: bytes)
    }

    public static let intentLogName = "raidfs.intent"

    public func readIntentLog() throws -> [UInt8] {
        let path = root + "/" + DirectoryMember.intentLogName
        var st = stat()
        if hostStat(path, &st) != 0 && errno == ENOENT { return [] }
        return try DirectoryMember.readWholeFile(path)
    }

    public func writeIntentLog(slot: Int, slotBytes: Int, _ bytes: [UInt8]) throws {
        precondition(bytes.count <= slotBytes)
        let path = root + "/" + DirectoryMember.intentLogName
        guard isPresent() else { throw FSError(ENOENT, "\(root): member not present") }
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError.system("open", path) }
        defer { Glibc.close(fd) }
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(slot * slotBytes)) }
        guard n == bytes.count else { throw FSError.system("pwrite", path) }
        guard fdatasync(fd) == 0 else { throw FSError.system("fdatasync", path) }
    }

    public func readEvents() throws -> [UInt8] {
        let path = root + "/" + EventLog.fileName
        var st = stat()
        if hostStat(path, &st) != 0 && errno == ENOENT { return [] }
        // Keep the newest 1 MiB; the log is for people, not for recovery.
        let all = try DirectoryMember.readWholeFile(path)
        return all.count > 1 << 20 ? Array(all.suffix(1 << 20)) : all
    }

    public func appendEvents(_ bytes: [UInt8]) throws {
        let path = root + "/" + EventLog.fileName
        // Never create files in a member that is being removed (rm -rf of
        // its directory would fail with "Directory not empty").
        guard isPresent() else { throw FSError(ENOENT, "\(root): member not present") }
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError.system("open", path) }
        defer { Glibc.close(fd) }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw FSError.system("write", path) }
    }

    public func syncAll() throws {
        let fd = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FSError.system("open", root) }
        defer { Glibc.close(fd) }
        guard syncfs(fd) == 0 else { throw FSError.system("syncfs", root) }
    }

    public func isPresent() -> Bool {
        var st = stat()
        return hostStat(root + "/" + DirectoryMember.superblockName, &st) == 0
            && hostStat(dataRoot, &st) == 0
    }

    public func lstat(_ path: String) throws -> stat {
        var st = stat()
        guard Glibc.lstat(hostPath(path), &st) == 0 else { throw fail("lstat", path) }
        return st
    }

    public func list(_ path: String) throws -> [DirectoryEntry] {
        guard let dir = opendir(hostPath(path)) else { throw fail("opendir", path) }
        defer { closedir(dir) }
        var out: [DirectoryEntry] = []
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
        guard Glibc.mkdir(hostPath(path), mode) == 0 else { throw fail("mkdir", path) }
        // The umask applied by mkdir(2) is the daemon's, not the caller's.
        guard Glibc.chmod(hostPath(path), mode & 0o7777) == 0 else { throw fail("chmod", path) }
    }

    public func rmdir(_ path: String) throws {
        guard Glibc.rmdir(hostPath(path)) == 0 else { throw fail("rmdir", path) }
    }

    public func unlink(_ path: String) throws {
        guard Glibc.unlink(hostPath(path)) == 0 else { throw fail("unlink", path) }
    }

    public func rename(_ from: String, _ to: String, flags: UInt32) throws {
        let rc: Int32
        if flags == 0 {
            rc = Glibc.rename(hostPath(from), hostPath(to))
        } else {
            rc = renameat2(AT_FDCWD, hostPath(from), AT_FDCWD, hostPath(to), flags)
        }
        guard rc == 0 else { throw fail("rename", from + " -> " + to) }
    }

    public func link(_ from: String, _ to: String) throws {
        guard Glibc.link(hostPath(from), hostPath(to)) == 0 else { throw fail("link", to) }
    }

    public func symlink(target: String, at path: String) throws {
        guard Glibc.symlink(target, hostPath(path)) == 0 else { throw fail("symlink", path) }
    }

    public func readlink(_ path: String) throws -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = Glibc.readlink(hostPath(path), &buf, buf.count - 1)
        guard n >= 0 else { throw fail("readlink", path) }
        buf[n] = 0
        return String(cString: buf)
    }

    public func mknod(_ path: String, mode: mode_t, device: dev_t) throws {
        guard Glibc.mknod(hostPath(path), mode, device) == 0 else { throw fail("mknod", path) }
        guard Glibc.chmod(hostPath(path), mode & 0o7777) == 0 else { throw fail("chmod", path) }
    }

    public func chmod(_ path: String, mode: mode_t) throws {
        guard Glibc.chmod(hostPath(path), mode & 0o7777) == 0 else { throw fail("chmod", path) }
    }

    public func chown(_ path: String, uid: uid_t, gid: gid_t) throws {
        guard Glibc.lchown(hostPath(path), uid, gid) == 0 else { throw fail("chown", path) }
    }

    public func utimens(_ path: String, _ times: (timespec, timespec)) throws {
        var t = [times.0, times.1]
        guard utimensat(AT_FDCWD, hostPath(path), &t, AT_SYMLINK_NOFOLLOW) == 0 else { throw fail("utimensat", path) }
    }

    public func statfs() throws -> statvfs {
        var s = statvfs()
        guard hostStatvfs(root, &s) == 0 else { throw fail("statvfs", "/") }
        return s
    }

    public func setxattr(_ path: String, name: String, value: [UInt8], flags: Int32) throws {
        let rc = value.withUnsafeBytes { lsetxattr(hostPath(path), name, $0.baseAddress, $0.count, flags) }
        guard rc == 0 else { throw fail("setxattr", path) }
    }

    public func getxattr(_ path: String, name: String) throws -> [UInt8] {
        let host = hostPath(path)
        for _ in 0..<4 {
            let n = lgetxattr(host, name, nil, 0)
            guard n >= 0 else { throw fail("getxattr", path) }
            var buf = [UInt8](repeating: 0, count: n)
            let got = buf.withUnsafeMutableBytes { lgetxattr(host, name, $0.baseAddress, $0.count) }
            if got >= 0 { return Array(buf[0..<got]) }
            if errno != ERANGE { throw fail("getxattr", path) }
        }
        throw FSError(EAGAIN, "getxattr \(root):\(path): value kept changing")
    }

    public func listxattr(_ path: String) throws -> [String] {
        let host = hostPath(path)
        let n = llistxattr(host, nil, 0)
        guard n >= 0 else { throw fail("listxattr", path) }
        if n == 0 { return [] }
        var buf = [CChar](repeating: 0, count: n)
        let got = llistxattr(host, &buf, n)
        guard got >= 0 else { throw fail("listxattr", path) }
        return buf[0..<got].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }

    public func removexattr(_ path: String, name: String) throws {
        guard lremovexattr(hostPath(path), name) == 0 else { throw fail("removexattr", path) }
    }

    public func syncDirectory(_ path: String) throws {
        let fd = Glibc.open(hostPath(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("open", path) }
        defer { Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw fail("fsync", path) }
    }

    public func open(_ path: String, flags: Int32, mode: mode_t) throws -> MemberFile {
        let fd = Glibc.open(hostPath(path), flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw fail("open", path) }
        if flags & O_CREAT != 0 {
            // open(2) applied the daemon's umask; the array's mode is the caller's.
            _ = fchmod(fd, mode & 0o7777)
        }
        return DirectoryMemberFile(fd: fd, name: root + ":" + path)
    }

    // MARK: whole-file helpers (superblocks, event log)

    public static func readWholeFile(_ path: String) throws -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FSError.system("open", path) }
        defer { Glibc.close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FSError.system("read", path)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > 64 * 1024 * 1024 { throw FSError.io("\(path): larger than 64 MiB") }
        }
        return out
    }

    public static func writeFileAtomically(directory: String, name: String, bytes: [UInt8]) throws {
        let tmp = directory + "/." + name + ".tmp"
        let final = directory + "/" + name
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError.system("open", tmp) }
        var ok = false
        defer {
            Glibc.close(fd)
            if !ok { Glibc.unlink(tmp) }
        }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FSError.system("write", tmp)
            }
            done += n
        }
        guard fsync(fd) == 0 else { throw FSError.system("fsync", tmp) }
        guard Glibc.rename(tmp, final) == 0 else { throw FSError.system("rename", final) }
        ok = true
        let dfd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            defer { Glibc.close(dfd) }
            guard fsync(dfd) == 0 else { throw FSError.system("fsync", directory) }
        }
    }
}

final class DirectoryMemberFile: MemberFile {
    private var fd: Int32
    private let name: String

    init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }

    deinit { close() }

    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws -> Int {
        while true {
            let n = pread(fd, buffer, count, off_t(offset))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw FSError.system("pread", name)
        }
    }

    func write(from buffer: UnsafeRawPointer, count: Int, at offset: UInt64) throws {
        var done = 0
        while done < count {
            let n = pwrite(fd, buffer + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FSError.system("pwrite", name)
            }
            done += n
        }
    }

    func sync(dataOnly: Bool) throws {
        guard (dataOnly ? fdatasync(fd) : fsync(fd)) == 0 else { throw FSError.system("fsync", name) }
    }

    func truncate(to size: UInt64) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw FSError.system("ftruncate", name) }
    }

    func allocate(at offset: UInt64, length: UInt64) throws {
        guard fallocate(fd, 1 /* FALLOC_FL_KEEP_SIZE */, off_t(offset), off_t(length)) == 0 else {
            throw FSError.system("fallocate", name)
        }
    }

    func punchHole(at offset: UInt64, length: UInt64) throws {
        guard fallocate(fd, 3 /* PUNCH_HOLE | KEEP_SIZE */, off_t(offset), off_t(length)) == 0 else {
            throw FSError.system("fallocate", name)
        }
    }

    func status() throws -> stat {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FSError.system("fstat", name) }
        return st
    }

    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }
}

// Free functions, so the names resolve to the syscalls and not to the
// `stat` / `statvfs` structs or this file's methods.
@inline(__always) func hostStat(_ path: String, _ st: inout stat) -> Int32 { stat(path, &st) }
@inline(__always) func hostStatvfs(_ path: String, _ s: inout statvfs) -> Int32 { statvfs(path, &s) }
