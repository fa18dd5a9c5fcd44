import Foundation
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// A process crash (kill -9) shared by the members of one simulated array:
/// armed with a count, it lets that many member mutations through and then
/// fails every later one, so what the members hold is frozen at that moment,
/// wherever it falls — inside a namespace change, a data write, a superblock
/// or intent-log update. Disarm it to "restart the daemon".
// @unchecked Sendable: its state is read and written only under `lock`.
public final class SimulatedCrash: @unchecked Sendable {
    private let lock = Lock()
    private var remaining: Int? = nil
    public private(set) var fired = false
    public init() {}

    /// The next `count` mutations succeed; the one after is the crash.
    public func arm(after count: Int) { lock.withLock { remaining = count; fired = false } }
    public func disarm() { lock.withLock { remaining = nil } }

    func tick(_ what: String) throws {
        try lock.withLock {
            guard let r = remaining else { return }
            if r == 0 {
                fired = true
                throw FSError(EIO, "\(what): the process crashed here (simulated)")
            }
            remaining = r - 1
        }
    }
}

/// An in-memory member disk for tests and the deterministic simulation: a
/// namespace and files whose writes stay volatile until synced, so a power
/// cut can drop (or tear) exactly what was not yet durable. Faults come
/// from the `FaultInjectingMember` the array puts in front of every member,
/// as for a directory; the engine cannot tell it from one.
///
/// Namespace changes are durable at once (as on a journaling filesystem
/// that orders metadata); file data follows fsync/fdatasync/syncfs.
// @unchecked Sendable: its tree, files and fault settings change only under `lock`.
public final class SimulatedMember: Member, @unchecked Sendable {
    public let name: String
    private let lock = Lock()
    private var nodes: [String: Node] = [:]
    private var superblock: [UInt8]? = nil
    private var intentLog = SimulatedData()
    /// The array's simulated process crash, if a test arms one.
    public var crash: SimulatedCrash? = nil

    final class SimulatedData {
        var current: [UInt8] = []
        var durable: [UInt8] = []
        /// Operations since the last sync, oldest first.
        var unsynced: [Op] = []
        /// `replace`: the whole value at once (an extended attribute).
        enum Op { case write(UInt64, [UInt8]), truncate(UInt64), replace([UInt8]) }

        func apply(_ op: Op, to buf: inout [UInt8]) {
            switch op {
            case .write(let off, let bytes):
                let end = Int(off) + bytes.count
                if buf.count < end { buf += [UInt8](repeating: 0, count: end - buf.count) }
                buf.replaceSubrange(Int(off)..<end, with: bytes)
            case .truncate(let size):
                if buf.count > Int(size) { buf.removeLast(buf.count - Int(size)) }
                else { buf += [UInt8](repeating: 0, count: Int(size) - buf.count) }
            case .replace(let bytes):
                buf = bytes
            }
        }
        func perform(_ op: Op) {
            apply(op, to: &current)
            unsynced.append(op)
        }
        func sync() {
            durable = current
            unsynced = []
        }
    }

    /// The time stamped on changes: the wall clock, or the simulation's
    /// logical one (so that a seed replays to the nanosecond).
    public var clock: @Sendable () -> Double = { Date().timeIntervalSince1970 }
    /// The last inode number given out (under the lock).
    private var lastInode: UInt = 1
    private func nextInode() -> UInt { lastInode += 1; return lastInode }

    private func now() -> timespec {
        let t = clock()
        return timespec(tv_sec: Int(t), tv_nsec: Int((t - t.rounded(.down)) * 1e9))
    }

    final class Node {
        var st: stat
        var data: SimulatedData?
        /// The engine's attribute of a file (empty: none).
        var attribute: SimulatedData?
        var target: String?
        var xattrs: [String: [UInt8]] = [:]
        init(mode: mode_t, at ts: timespec, inode: UInt) {
            st = stat()
            st.st_ino = inode
            st.st_mode = mode
            st.st_nlink = 1
            st.st_mtim = ts
            st.st_atim = ts
            st.st_ctim = ts
        }
    }

    public init(name: String) {
        self.name = name
        nodes["/"] = Node(mode: S_IFDIR | 0o755, at: timespec(), inode: 1)
    }

    // MARK: power cut

    /// Imitates losing power: every file's writes since its last sync are
    /// dropped, or (with `tear`) a random subset of them survives, 4 KiB
    /// page by page, as a host's writeback might have left them.
    public func powerCut(tear: Bool, rng: inout SeededGenerator) {
        lock.withLock {
            // A file's engine attribute is journaled apart from its data:
            // either may survive without the other.
            // In the names' order, each file once (hard links share a node):
            // the torn subset is drawn from `rng`, so the order is the run's.
            let files = filesInNameOrder()
            for data in files.compactMap({ $0.data }) + files.compactMap({ $0.attribute }) + [intentLog] {
                var buf = data.durable
                if tear {
                    for op in data.unsynced {
                        switch op {
                        case .truncate, .replace:
                            if rng.next() % 2 == 0 { data.apply(op, to: &buf) }
                        case .write(let off, let bytes):
                            var page = 0
                            while page < bytes.count {
                                let end = min(bytes.count, page + 4096)
                                if rng.next() % 2 == 0 {
                                    data.apply(.write(off + UInt64(page), Array(bytes[page..<end])), to: &buf)
                                }
                                page = end
                            }
                        }
                    }
                }
                data.current = buf
                data.sync()
            }
        }
    }

    // MARK: rot

    /// Imitates media damage: `count` bytes of the files' data flipped
    /// where they lie, as durable as the rest (a sector that rotted on the
    /// platter), at offsets drawn from `rng`. Attributes, the superblock
    /// and the intent log are left alone.
    public func rot(count: Int, rng: inout SeededGenerator) {
        lock.withLock {
            let files = filesInNameOrder().compactMap { $0.data }.filter { !$0.durable.isEmpty }
            guard !files.isEmpty else { return }
            for _ in 0..<count {
                let data = files[Int(rng.next() % UInt64(files.count))]
                let at = Int(rng.next() % UInt64(data.durable.count))
                let mask = UInt8(1 + rng.next() % 255)
                data.durable[at] ^= mask
                if at < data.current.count { data.current[at] ^= mask }
            }
        }
    }

    // MARK: helpers

    private func parent(_ path: String) -> String {
        guard let i = path.lastIndex(of: "/"), i != path.startIndex else { return "/" }
        return String(path[..<i])
    }

    private func node(_ path: String, _ op: String) throws -> Node {
        guard let n = nodes[path] else { throw FSError(ENOENT, "\(op) \(name):\(path): No such file or directory") }
        return n
    }

    private func requireParentDirectory(_ path: String, _ op: String) throws {
        let p = try node(parent(path), op)
        guard (p.st.st_mode & S_IFMT) == S_IFDIR else { throw FSError(ENOTDIR, "\(op) \(name):\(path): Not a directory") }
    }

    private func insert(_ path: String, _ n: Node, _ op: String) throws {
        try requireParentDirectory(path, op)
        guard nodes[path] == nil else { throw FSError(EEXIST, "\(op) \(name):\(path): File exists") }
        nodes[path] = n
        grewEntry(in: path)
        changedEntries(of: path)
    }

    /// The directory holding `path` had an entry made or removed: its
    /// modification and change times move, as a host's do.
    private func changedEntries(of path: String) {
        guard let d = nodes[parent(path)] else { return }
        let ts = now()
        d.st.st_mtim = ts
        d.st.st_ctim = ts
    }

    /// A directory's size grows with every entry ever made in it and never
    /// shrinks, as ext4's does; by 17 blocks an entry, one more than the
    /// engine removes in place, so that a directory that ever held an entry
    /// is removed the way the engine removes a large one (Trash.swift), and
    /// one that never did the way it removes a small one.
    private func grewEntry(in path: String) {
        nodes[parent(path)]?.st.st_size += 17 * 4096
    }

    /// The names in `path`, sorted: a host lists them in an order of its
    /// own, and the simulation's must not depend on the process's hashing.
    private func children(_ path: String) -> [String] {
        let prefix = path == "/" ? "/" : path + "/"
        return nodes.keys.filter { $0 != "/" && $0.hasPrefix(prefix) && !$0.dropFirst(prefix.count).contains("/") }.sorted()
    }

    /// Every node once, in the order of its first name.
    private func filesInNameOrder() -> [Node] {
        var seen = Set<ObjectIdentifier>()
        return nodes.keys.sorted().compactMap { nodes[$0] }.filter { seen.insert(ObjectIdentifier($0)).inserted }
    }

    // MARK: Member

    public func readSuperblock() throws -> [UInt8] {
        try lock.withLock {
            guard let sb = superblock else { throw FSError(ENOENT, "\(name): no superblock") }
            return sb
        }
    }

    public func writeSuperblock(_ bytes: [UInt8]) throws {
        try lock.withLock {
            try crash?.tick("write superblock \(name)")
            superblock = bytes
        }
    }

    public func isPresent() -> Bool { lock.withLock { superblock != nil } }

    public func readIntentLog() throws -> [UInt8] {
        try lock.withLock { return intentLog.current }
    }

    public func writeIntentLog(slot: Int, slotBytes: Int, _ bytes: [UInt8]) throws {
        try lock.withLock {
            try crash?.tick("write intent log \(name)")
            intentLog.perform(.write(UInt64(slot * slotBytes), bytes))
            intentLog.sync()
        }
    }

    private var events: [UInt8] = []

    public func readEvents() throws -> [UInt8] {
        try lock.withLock { return events }
    }

    public func appendEvents(_ bytes: [UInt8]) throws {
        try lock.withLock { try crash?.tick("append events \(name)"); events += bytes }
    }

    public func syncAll() throws {
        try lock.withLock {
            try crash?.tick("syncfs \(name)")
            for d in nodes.values.compactMap({ $0.data }) + nodes.values.compactMap({ $0.attribute }) { d.sync() }
        }
    }

    public func lstat(_ path: String) throws -> stat {
        try lock.withLock {
            let n = try node(path, "lstat")
            var st = n.st
            if let d = n.data { st.st_size = off_t(d.current.count); st.st_blocks = blkcnt_t((d.current.count + 511) / 512) }
            if let t = n.target { st.st_size = off_t(t.utf8.count) }
            return st
        }
    }

    public func list(_ path: String) throws -> [DirectoryEntry] {
        try lock.withLock {
            let n = try node(path, "opendir")
            guard (n.st.st_mode & S_IFMT) == S_IFDIR else { throw FSError(ENOTDIR, "opendir \(name):\(path): Not a directory") }
            return children(path).map { c in
                let mode = nodes[c]!.st.st_mode & S_IFMT
                let type: Int32 = mode == S_IFDIR ? Int32(DT_DIR) : mode == S_IFLNK ? Int32(DT_LNK) : mode == S_IFREG ? Int32(DT_REG) : Int32(DT_UNKNOWN)
                return DirectoryEntry(name: String(c.split(separator: "/").last!), type: UInt8(type))
            }
        }
    }

    public func mkdir(_ path: String, mode: mode_t) throws {
        try lock.withLock { try crash?.tick("mkdir \(name)"); try insert(path, Node(mode: S_IFDIR | (mode & 0o7777), at: now(), inode: nextInode()), "mkdir") }
    }

    public func rmdir(_ path: String) throws {
        try lock.withLock {
            try crash?.tick("rmdir \(name)")
            let n = try node(path, "rmdir")
            guard (n.st.st_mode & S_IFMT) == S_IFDIR else { throw FSError(ENOTDIR, "rmdir \(name):\(path): Not a directory") }
            guard children(path).isEmpty else { throw FSError(ENOTEMPTY, "rmdir \(name):\(path): Directory not empty") }
            nodes[path] = nil
            changedEntries(of: path)
        }
    }

    public func unlink(_ path: String) throws {
        try lock.withLock {
            try crash?.tick("unlink \(name)")
            let n = try node(path, "unlink")
            if (n.st.st_mode & S_IFMT) == S_IFDIR { throw FSError(EISDIR, "unlink \(name):\(path): Is a directory") }
            n.st.st_nlink -= 1
            nodes[path] = nil
            changedEntries(of: path)
        }
    }

    public func rename(_ from: String, _ to: String, flags: UInt32) throws {
        try lock.withLock {
            try crash?.tick("rename \(name)")
            let n = try node(from, "rename")
            try requireParentDirectory(to, "rename")
            if flags & 1 != 0 && nodes[to] != nil { throw FSError(EEXIST, "rename \(name):\(to): File exists") }
            if flags & 2 != 0 {   // RENAME_EXCHANGE: both names stay, their nodes (and subtrees) swap
                guard nodes[to] != nil else { throw FSError(ENOENT, "rename \(name):\(to): No such file or directory") }
                let a = nodes.filter { $0.key == from || $0.key.hasPrefix(from + "/") }
                let b = nodes.filter { $0.key == to || $0.key.hasPrefix(to + "/") }
                for k in a.keys { nodes[k] = nil }
                for k in b.keys { nodes[k] = nil }
                for (k, v) in a { nodes[to + k.dropFirst(from.count)] = v }
                for (k, v) in b { nodes[from + k.dropFirst(to.count)] = v }
                changedEntries(of: from)
                changedEntries(of: to)
                return
            }
            if let existing = nodes[to], (existing.st.st_mode & S_IFMT) == S_IFDIR, !children(to).isEmpty {
                throw FSError(ENOTEMPTY, "rename \(name):\(to): Directory not empty")
            }
            if nodes[to] === n { return }   // two names of one file: nothing happens
            nodes[to]?.st.st_nlink -= 1
            let prefix = from + "/"
            let moved = nodes.keys.filter { $0.hasPrefix(prefix) }
            nodes[to] = n
            nodes[from] = nil
            grewEntry(in: to)
            changedEntries(of: from)
            changedEntries(of: to)
            for k in moved {
                nodes[to + "/" + k.dropFirst(prefix.count)] = nodes[k]
                nodes[k] = nil
            }
        }
    }

    public func link(_ from: String, _ to: String) throws {
        try lock.withLock {
            try crash?.tick("link \(name)")
            let n = try node(from, "link")
            try insert(to, n, "link")
            n.st.st_nlink += 1
        }
    }

    public func link(_ file: MemberFile, at path: String) throws {
        guard let f = file as? SimulatedMemberFile, f.member === self else { preconditionFailure("link: \(type(of: file)) is not \(name)'s file") }
        try lock.withLock {
            try crash?.tick("link \(name)")
            guard f.node.st.st_nlink > 0, nodes.values.contains(where: { $0 === f.node }) else {
                throw FSError(ENOENT, "link \(name):\(path): the open file has no name left")
            }
            try insert(path, f.node, "link")
            f.node.st.st_nlink += 1
        }
    }

    public func symlink(target: String, at path: String) throws {
        try lock.withLock {
            try crash?.tick("symlink \(name)")
            let n = Node(mode: S_IFLNK | 0o777, at: now(), inode: nextInode())
            n.target = target
            try insert(path, n, "symlink")
        }
    }

    public func readlink(_ path: String) throws -> String {
        try lock.withLock {
            guard let t = try node(path, "readlink").target else { throw FSError(EINVAL, "readlink \(name):\(path): Invalid argument") }
            return t
        }
    }

    public func mknod(_ path: String, mode: mode_t, device: dev_t) throws {
        try lock.withLock { try crash?.tick("mknod \(name)"); try insert(path, Node(mode: mode, at: now(), inode: nextInode()), "mknod") }
    }

    public func chmod(_ path: String, mode: mode_t) throws {
        try lock.withLock {
            try crash?.tick("chmod \(name)")
            let n = try node(path, "chmod")
            n.st.st_mode = (n.st.st_mode & S_IFMT) | (mode & 0o7777)
        }
    }

    public func chown(_ path: String, uid: uid_t, gid: gid_t) throws {
        try lock.withLock {
            try crash?.tick("chown \(name)")
            let n = try node(path, "chown")
            if uid != uid_t.max { n.st.st_uid = uid }
            if gid != gid_t.max { n.st.st_gid = gid }
        }
    }

    public func utimens(_ path: String, _ times: (timespec, timespec)) throws {
        try lock.withLock {
            try crash?.tick("utimens \(name)")
            let n = try node(path, "utimens")
            n.st.st_atim = times.0
            n.st.st_mtim = times.1
        }
    }

    public func statfs() throws -> statvfs {
        try lock.withLock {
            var s = statvfs()
            s.f_bsize = 4096
            s.f_frsize = 4096
            s.f_blocks = 1 << 20
            s.f_bfree = 1 << 19
            s.f_bavail = 1 << 19
            s.f_files = 1 << 20
            s.f_ffree = 1 << 19
            s.f_favail = 1 << 19
            return s
        }
    }

    public func setxattr(_ path: String, name: String, value: [UInt8], flags: Int32) throws {
        try lock.withLock {
            try crash?.tick("setxattr \(name)")
            let n = try node(path, "setxattr")
            if flags == 1 && n.xattrs[name] != nil { throw FSError(EEXIST, "setxattr \(name): exists") }   // XATTR_CREATE
            if flags == 2 && n.xattrs[name] == nil { throw FSError(ENODATA, "setxattr \(name): no such attribute") }  // XATTR_REPLACE
            n.xattrs[name] = value
        }
    }

    public func getxattr(_ path: String, name: String) throws -> [UInt8] {
        try lock.withLock {
            guard let v = try node(path, "getxattr").xattrs[name] else { throw FSError(ENODATA, "getxattr \(name): no such attribute") }
            return v
        }
    }

    public func listxattr(_ path: String) throws -> [String] {
        try lock.withLock { Array(try node(path, "listxattr").xattrs.keys).sorted() }
    }

    public func removexattr(_ path: String, name: String) throws {
        try lock.withLock {
            try crash?.tick("removexattr \(name)")
            let n = try node(path, "removexattr")
            guard n.xattrs.removeValue(forKey: name) != nil else { throw FSError(ENODATA, "removexattr \(name): no such attribute") }
        }
    }

    /// Namespace changes are durable at once here.
    public func syncDirectory(_ path: String) throws {
        try lock.withLock { _ = try node(path, "fsync") }
    }

    public func open(_ path: String, flags: Int32, mode: mode_t) throws -> MemberFile {
        try lock.withLock {
            if flags & O_CREAT != 0 {
                if nodes[path] != nil {
                    if flags & O_EXCL != 0 { throw FSError(EEXIST, "open \(name):\(path): File exists") }
                } else {
                    try crash?.tick("create \(name):\(path)")
                    let n = Node(mode: S_IFREG | (mode & 0o7777), at: now(), inode: nextInode())
                    n.data = SimulatedData()
                    n.attribute = SimulatedData()
                    try insert(path, n, "open")
                }
            }
            let n = try node(path, "open")
            guard let data = n.data else {
                throw FSError((n.st.st_mode & S_IFMT) == S_IFDIR ? EISDIR : EINVAL, "open \(name):\(path): not a regular file")
            }
            return SimulatedMemberFile(member: self, node: n, data: data, path: path)
        }
    }

    // MARK: file I/O (called by SimulatedMemberFile)

    func read(_ data: SimulatedData, _ path: String, into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws -> Int {
        try lock.withLock {
            let start = Int(offset)
            guard start < data.current.count else { return 0 }
            let n = min(count, data.current.count - start)
            data.current.withUnsafeBytes { memcpy(buffer, $0.baseAddress! + start, n) }
            return n
        }
    }

    func write(_ data: SimulatedData, _ path: String, from buffer: UnsafeRawPointer, count: Int, at offset: UInt64) throws {
        try lock.withLock {
            try crash?.tick("pwrite \(name)")
            data.perform(.write(offset, Array(UnsafeRawBufferPointer(start: buffer, count: count))))
        }
    }

    func truncate(_ data: SimulatedData, _ path: String, to size: UInt64) throws {
        try lock.withLock {
            try crash?.tick("ftruncate \(name)")
            data.perform(.truncate(size))
        }
    }

    func sync(_ data: SimulatedData, _ node: Node, _ path: String) throws {
        try lock.withLock {
            try crash?.tick("fsync \(name)")
            data.sync()
            node.attribute?.sync()
        }
    }

    func readAttribute(_ node: Node, into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        lock.withLock {
            guard let value = node.attribute?.current, !value.isEmpty else { return nil }
            value.withUnsafeBytes { memcpy(buffer, $0.baseAddress!, min(capacity, value.count)) }
            return value.count
        }
    }

    func modifyAttribute(_ node: Node, capacity: Int, _ body: (UnsafeMutableRawPointer, Int?) -> Int?) throws {
        try lock.withLock {
            try crash?.tick("fsetxattr \(name)")
            let value = node.attribute?.current ?? []
            try withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 8) { raw in
                value.withUnsafeBytes { memcpy(raw.baseAddress!, $0.baseAddress!, min(capacity, value.count)) }
                guard let n = body(raw.baseAddress!, value.isEmpty ? nil : value.count) else { return }
                node.attribute?.perform(.replace(Array(UnsafeRawBufferPointer(start: raw.baseAddress!, count: n))))
            }
        }
    }

    func writeAttribute(_ node: Node, from buffer: UnsafeRawPointer, count: Int) throws {
        try lock.withLock {
            try crash?.tick("fsetxattr \(name)")
            node.attribute?.perform(.replace(Array(UnsafeRawBufferPointer(start: buffer, count: count))))
        }
    }

    func markAccessed(_ node: Node, _ path: String) throws {
        try lock.withLock {
            node.st.st_atim = now()
        }
    }

    func markModified(_ node: Node, _ path: String) throws {
        try lock.withLock {
            try crash?.tick("futimens \(name)")
            let ts = now()
            node.st.st_mtim = ts
            node.st.st_ctim = ts
        }
    }

    func status(_ node: Node, _ path: String) throws -> stat {
        try lock.withLock {
            var st = node.st
            st.st_size = off_t(node.data?.current.count ?? 0)
            st.st_blocks = blkcnt_t((st.st_size + 511) / 512)   // (no holes)
            return st
        }
    }
}

final class SimulatedMemberFile: MemberFile {
    let member: SimulatedMember
    let node: SimulatedMember.Node
    let data: SimulatedMember.SimulatedData
    let path: String

    init(member: SimulatedMember, node: SimulatedMember.Node, data: SimulatedMember.SimulatedData, path: String) {
        self.member = member
        self.node = node
        self.data = data
        self.path = path
    }

    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws -> Int {
        try member.read(data, path, into: buffer, count: count, at: offset)
    }
    func write(from buffer: UnsafeRawPointer, count: Int, at offset: UInt64) throws {
        try member.write(data, path, from: buffer, count: count, at: offset)
    }
    func sync(dataOnly: Bool) throws { try member.sync(data, node, path) }
    func readAttribute(into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        try member.readAttribute(node, into: buffer, capacity: capacity)
    }
    func writeAttribute(from buffer: UnsafeRawPointer, count: Int) throws { try member.writeAttribute(node, from: buffer, count: count) }
    func modifyAttribute(capacity: Int, _ body: (UnsafeMutableRawPointer, Int?) -> Int?) throws {
        try member.modifyAttribute(node, capacity: capacity, body)
    }
    func truncate(to size: UInt64) throws { try member.truncate(data, path, to: size) }
    func status() throws -> stat { try member.status(node, path) }
    func markModified() throws { try member.markModified(node, path) }
    func markAccessed() throws { try member.markAccessed(node, path) }
    func allocate(at offset: UInt64, length: UInt64) throws {}
    func nextData(from offset: UInt64) throws -> UInt64? {
        // (It keeps no holes: everything before the end is data.)
        offset < UInt64(try status().st_size) ? offset : nil
    }

    func punchHole(at offset: UInt64, length: UInt64) throws {
        // Zeros within the current size; the size stays.
        let size = UInt64(try status().st_size)
        guard offset < size else { return }
        let n = Int(min(length, size - offset))
        let zeros = [UInt8](repeating: 0, count: n)
        try zeros.withUnsafeBytes { try write(from: $0.baseAddress!, count: n, at: offset) }
    }
    func close() {}
}

