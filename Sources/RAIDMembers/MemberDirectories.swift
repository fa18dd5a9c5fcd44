import RAIDBase
import RAIDLayout
import Foundation
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Where member directories come from, and the checks and preparation a
/// directory needs before it becomes a member: the part of the `Member`
/// seam that comes before there is a member. `HostDirectories` works on
/// the host's filesystems; the simulation passes its own, so that creating,
/// assembling, adding and replacing go through the seam as reads and
/// writes do.
public protocol MemberDirectories: Sendable {
    /// The member whose directory is `directory` (nothing is checked).
    func member(at directory: String) -> Member
    /// `directory` as the array names it: absolute, symlinks resolved.
    func resolve(_ directory: String) -> String
    /// What makes two names one directory (on a host, device and inode).
    func identity(of directory: String) throws -> String
    /// Throws unless `directory` is a directory holding nothing but, perhaps,
    /// an ext4 root's lost+found.
    func requireEmpty(_ directory: String) throws
    /// Empties a former member's directory (lost+found stays).
    func wipe(_ directory: String) throws
    /// Makes the member's data root (`DirectoryMember.dataDirectoryName`);
    /// one that is there already is kept.
    func makeDataRoot(_ directory: String) throws
    /// Whether `directory`'s filesystem takes `user.` extended attributes,
    /// where member files keep their headers.
    func takesUserAttributes(_ directory: String) -> Bool
}

/// Member directories on the host's filesystems.
public struct HostDirectories: MemberDirectories {
    public init() {}

    public func member(at directory: String) -> Member { DirectoryMember(root: directory) }

    public func resolve(_ directory: String) -> String { absolutePath(directory) }

    public func identity(of directory: String) throws -> String {
        var st = stat()
        guard stat(directory, &st) == 0 else { throw FSError.system("stat", directory) }
        return "\(st.st_dev):\(st.st_ino)"
    }

    public func requireEmpty(_ directory: String) throws {
        var st = stat()
        guard stat(directory, &st) == 0 else { throw FSError.system("stat", directory) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw FSError(ENOTDIR, "\(directory): not a directory") }
        let entries = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0 != "lost+found" }
        guard entries.isEmpty else {
            throw FSError(ENOTEMPTY, "\(directory): directory is not empty (\(entries.count) entries, e.g. \(entries.sorted()[0]))")
        }
    }

    public func wipe(_ directory: String) throws {
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name != "lost+found" {
            try FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }

    public func makeDataRoot(_ directory: String) throws {
        let data = directory + "/" + DirectoryMember.dataDirectoryName
        guard Glibc.mkdir(data, 0o755) == 0 || errno == EEXIST else { throw FSError.system("mkdir", data) }
    }

    public func takesUserAttributes(_ directory: String) -> Bool {
        let name = FileAttribute.name + ".probe"
        var byte: UInt8 = 0
        guard lsetxattr(directory, name, &byte, 1, 0) == 0 else { return false }
        lremovexattr(directory, name)
        return true
    }
}

/// `path` made absolute (symlinks resolved when it exists).
public func absolutePath(_ path: String) -> String {
    if let r = realpath(path, nil) {
        defer { free(r) }
        return String(cString: r)
    }
    if path.hasPrefix("/") { return path }
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buf, buf.count) != nil else { return path }
    return String(cString: buf) + "/" + path
}
