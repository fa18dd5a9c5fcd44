import RAIDBase
import RAIDLayout
#if canImport(Glibc)
import Glibc
#endif

/// One entry of a member directory listing.
public struct DirectoryEntry: Sendable, Equatable {
    public let name: String
    public let type: UInt8   // DT_* value
    public init(name: String, type: UInt8) { self.name = name; self.type = type }
}

/// The seam between the engine and a member disk. Every byte the engine reads
/// or writes on a member goes through this protocol, so a simulated member
/// that injects faults drops in without touching the engine.
///
/// Paths are array paths ("/", "/a/b"); the member maps them into its own
/// namespace. Errors are `FSError` carrying the errno the host returned.
public protocol Member: AnyObject, Sendable {
    /// How the member is named to people (its directory).
    var name: String { get }

    func readSuperblock() throws -> [UInt8]
    /// Replaces the superblock atomically (write temp, fsync, rename).
    func writeSuperblock(_ bytes: [UInt8]) throws
    /// True when the member still looks like itself: root and superblock there.
    func isPresent() -> Bool

    /// The write-intent log: two fixed slots written in place, so a torn
    /// write leaves the other slot intact.
    func readIntentLog() throws -> [UInt8]
    func writeIntentLog(slot: Int, slotBytes: Int, _ bytes: [UInt8]) throws
    /// Makes everything written to this member so far durable (syncfs).
    func syncAll() throws

    /// The array's event log (JSON lines), appended on every member.
    func readEvents() throws -> [UInt8]
    func appendEvents(_ bytes: [UInt8]) throws

    func lstat(_ path: String) throws -> stat
    func list(_ path: String) throws -> [DirectoryEntry]
    func mkdir(_ path: String, mode: mode_t) throws
    func rmdir(_ path: String) throws
    func unlink(_ path: String) throws
    func rename(_ from: String, _ to: String, flags: UInt32) throws
    func link(_ from: String, _ to: String) throws
    /// Gives `file`, open on this member, the further name `path` (linkat
    /// of its descriptor): the rebuild names a file it holds open by
    /// another name. ENOENT once the file has no name left.
    func link(_ file: MemberFile, at path: String) throws
    func symlink(target: String, at path: String) throws
    func readlink(_ path: String) throws -> String
    func mknod(_ path: String, mode: mode_t, device: dev_t) throws
    func chmod(_ path: String, mode: mode_t) throws
    func chown(_ path: String, uid: uid_t, gid: gid_t) throws
    func utimens(_ path: String, _ times: (timespec, timespec)) throws
    func statfs() throws -> statvfs
    /// Extended attributes of a node (not following symlinks).
    func setxattr(_ path: String, name: String, value: [UInt8], flags: Int32) throws
    func getxattr(_ path: String, name: String) throws -> [UInt8]
    func listxattr(_ path: String) throws -> [String]
    func removexattr(_ path: String, name: String) throws
    /// fsync of a directory: its entries are durable.
    func syncDirectory(_ path: String) throws
    /// Opens (or with O_CREAT creates) the member's file for array file `path`.
    func open(_ path: String, flags: Int32, mode: mode_t) throws -> MemberFile
    /// The longest file the host lets this member hold (its filesystem's
    /// s_maxbytes: 16 TiB on ext4 with 4 KiB blocks), found once; nil when
    /// it cannot be told (a read-only member). The array's largest file
    /// follows from its members' (`RAIDArray.largestFileBytes`).
    func largestFileBytes() -> UInt64?
    /// The member's system call counters (`raidctl iostat`); nil for a
    /// member that counts nothing.
    var ioCounters: MemberIO? { get }
    /// `MemberFile.readAttribute` of the file at `path`, without opening it
    /// where the member can (a stat by path reads the header so).
    func readAttribute(at path: String, into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int?
}

extension Member {
    public func largestFileBytes() -> UInt64? { nil }
    public var ioCounters: MemberIO? { nil }
    public func readAttribute(at path: String, into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        try readAttributeOpening(path, into: buffer, capacity: capacity)
    }

    /// `readAttribute(at:)` the plain way: the file opened, read, closed.
    public func readAttributeOpening(_ path: String, into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        let f = try open(path, flags: O_RDONLY, mode: 0)
        defer { f.close() }
        return try f.readAttribute(into: buffer, capacity: capacity)
    }
}

/// An open member file: positioned I/O only.
public protocol MemberFile: AnyObject {
    /// Reads up to `count` bytes; returns fewer only at end of file.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws -> Int
    func write(from buffer: UnsafeRawPointer, count: Int, at offset: UInt64) throws
    func sync(dataOnly: Bool) throws
    func truncate(to size: UInt64) throws
    /// fstat(2) of the member file (mode, owner, times, link count).
    func status() throws -> stat
    /// Reserves space for [offset, offset+length) without changing the size
    /// (fallocate KEEP_SIZE); EOPNOTSUPP where the host cannot.
    func allocate(at offset: UInt64, length: UInt64) throws
    /// Deallocates [offset, offset+length), which then reads as zeros
    /// (fallocate PUNCH_HOLE); EOPNOTSUPP where the host cannot.
    func punchHole(at offset: UInt64, length: UInt64) throws
    /// The first offset at or after `offset` that holds data (lseek
    /// SEEK_DATA: a host that keeps no holes says `offset` itself); nil
    /// when nothing past it does.
    func nextData(from offset: UInt64) throws -> UInt64?
    /// Sets the file's modification and change times to now, as a write to
    /// it would (for a write whose chunks all lie on other members).
    func markModified() throws
    /// Updates the access time as a read of it would under the host's atime
    /// policy (relatime, noatime...). The engine's own reads leave it alone.
    func markAccessed() throws
    /// The engine's own attribute of the member file (`FileAttribute.name`):
    /// reads it into `buffer` and returns its length (more than `capacity`
    /// when it is longer: only `capacity` bytes were read), nil when the
    /// file has none.
    func readAttribute(into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int?
    /// Replaces the engine's attribute; the host applies it whole or not at
    /// all, and `sync` makes it durable with the data.
    func writeAttribute(from buffer: UnsafeRawPointer, count: Int) throws
    /// Changes the engine's attribute as the host changes an inode it holds
    /// in memory: `body` gets a buffer of `capacity` bytes holding the
    /// value (its length, more than `capacity` when longer, or nil when
    /// there is none), leaves the new value there and returns its length,
    /// or nil to leave the attribute as it is.
    /// The read half is no read from the disk, so no read fault applies to
    /// it (the host checks the inode when it loads it: rot in it is a read
    /// error there, or still there on every read).
    func modifyAttribute(capacity: Int, _ body: (UnsafeMutableRawPointer, Int?) -> Int?) throws
    func close()
}

extension MemberFile {
    /// Reads exactly `count` bytes, zero-filling past end of file (holes and
    /// the unwritten tail of a member file read as zeros).
    @inline(__always)
    public func readFull(into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws {
        var done = 0
        while done < count {
            let n = try read(into: buffer + done, count: count - done, at: offset + UInt64(done))
            if n == 0 {
                memset(buffer + done, 0, count - done)
                return
            }
            done += n
        }
    }
}
