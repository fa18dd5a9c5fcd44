import RAIDBase
import RAIDLayout
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// A fault `raidctl inject` places on a member of a mounted array, as md's
/// faulty personality, dm-flakey/dm-dust or ZFS's zinject would.
public enum FaultKind: String, Codable, Sendable, CaseIterable {
    /// Reads of file data return one flipped bit (the disk is fine; what
    /// comes back is not), which the chunk checksums must catch.
    case bitrot
    /// Reads of file data fail with EIO.
    case eioRead = "eio-read"
    /// Writes (and fsyncs, truncations, superblock updates) fail with EIO.
    case eioWrite = "eio-write"
    /// Every file operation on the member first sleeps this many milliseconds.
    case latency
    /// The member behaves as unplugged: everything fails, and it no longer
    /// looks present to the health monitor.
    case vanish
}

/// One injected fault: how often it fires and how many times it may.
public struct InjectedFault: Codable, Sendable, Equatable, CustomStringConvertible {
    public var kind: FaultKind
    /// Probability per operation, (0, 1].
    public var rate: Double
    /// Firings left; nil for unlimited.
    public var remaining: Int?
    public var latencyMilliseconds: Int?

    public init(kind: FaultKind, rate: Double = 1, count: Int? = nil, latencyMilliseconds: Int? = nil) {
        self.kind = kind
        self.rate = rate
        self.remaining = count
        self.latencyMilliseconds = latencyMilliseconds
    }

    public var description: String {
        var s = kind == .latency ? "latency=\(latencyMilliseconds ?? 0)" : kind.rawValue
        if rate < 1 { s += " rate \(rate)" }
        if let r = remaining { s += " (\(r) left)" }
        return s
    }

    /// Parses the FAULT argument of `raidctl inject` ("bitrot", "latency=20"...).
    public static func parse(_ text: String, rate: Double?, count: Int?) throws -> InjectedFault {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard let kind = FaultKind(rawValue: parts[0]) else {
            throw FSError.invalid("unknown fault \(text) (bitrot, eio-read, eio-write, latency=MS, vanish)")
        }
        var ms: Int? = nil
        if kind == .latency {
            guard parts.count == 2, let v = Int(parts[1]), v >= 0, v <= 60_000 else {
                throw FSError.invalid("latency needs milliseconds, 0 to 60000: latency=MS")
            }
            ms = v
        } else if parts.count != 1 {
            throw FSError.invalid("fault \(parts[0]) takes no value")
        }
        if let r = rate, !(r > 0 && r <= 1) { throw FSError.invalid("--rate must be in (0, 1], not \(r)") }
        if let c = count, c < 1 { throw FSError.invalid("--count must be at least 1, not \(c)") }
        return InjectedFault(kind: kind, rate: rate ?? 1, count: count, latencyMilliseconds: ms)
    }
}

/// The faults active on one member; consulted on every operation, so the
/// check when none is active is one lock and one test.
// @unchecked Sendable: its faults change only under `lock`.
package final class FaultPlan: @unchecked Sendable {
    private let lock = Lock()
    private var faults: [FaultKind: InjectedFault] = [:]
    private var random = SeededGenerator(seed: 0x5EED)

    package var active: [InjectedFault] { lock.withLock { FaultKind.allCases.compactMap { faults[$0] } } }

    package func set(_ f: InjectedFault) { lock.withLock { faults[f.kind] = f } }
    package func clear() { lock.withLock { faults.removeAll() } }

    /// True when fault `kind` fires for this operation (and counts it).
    package func fires(_ kind: FaultKind) -> Bool {
        lock.withLock {
            guard var f = faults[kind] else { return false }
            if f.rate < 1 && Double(random.next() % 1_000_000) / 1_000_000 >= f.rate { return false }
            if let r = f.remaining {
                f.remaining = r - 1
                faults[kind] = r > 1 ? f : nil
            }
            return true
        }
    }

    /// A bit position to flip in a read of `count` bytes.
    package func bitToFlip(in count: Int) -> Int { lock.withLock { Int(random.next() % UInt64(count * 8)) } }

    package func latency() -> Int? {
        lock.withLock { faults[.latency]?.latencyMilliseconds }
    }

    /// The one check every file operation pays when no fault is set.
    package var hasFaults: Bool { lock.withLock { !faults.isEmpty } }

    package var vanished: Bool { lock.withLock { faults[.vanish] != nil } }
}

/// A member with `raidctl inject` faults in front of it. Every member of a
/// mounted array is wrapped so; with no fault active it only forwards.
// @unchecked Sendable: its faults are in `plan` (locked) and `base` is a Member, Sendable itself.
public final class FaultInjectingMember: Member, @unchecked Sendable {
    public let base: Member
    package let plan = FaultPlan()

    public init(_ base: Member) { self.base = base }

    public var name: String { base.name }
    public var faults: [InjectedFault] { plan.active }
    public func inject(_ f: InjectedFault) { plan.set(f) }
    public func clearFaults() { plan.clear() }

    @inline(__always)
    private func present(_ op: String) throws {
        if plan.vanished { throw FSError(ENODEV, "\(op) \(name): member unplugged (injected fault)") }
    }

    @inline(__always)
    private func writable(_ op: String) throws {
        try present(op)
        if plan.fires(.eioWrite) { throw FSError(EIO, "\(op) \(name): Input/output error (injected fault)") }
    }

    public func readSuperblock() throws -> [UInt8] { try present("read superblock"); return try base.readSuperblock() }
    public func writeSuperblock(_ bytes: [UInt8]) throws { try writable("write superblock"); try base.writeSuperblock(bytes) }
    public func isPresent() -> Bool { !plan.vanished && base.isPresent() }
    public func readIntentLog() throws -> [UInt8] { try present("read intent log"); return try base.readIntentLog() }
    public func writeIntentLog(slot: Int, slotBytes: Int, _ bytes: [UInt8]) throws {
        try writable("write intent log")
        try base.writeIntentLog(slot: slot, slotBytes: slotBytes, bytes)
    }
    public func syncAll() throws { try writable("syncfs"); try base.syncAll() }
    public func readEvents() throws -> [UInt8] { try present("read events"); return try base.readEvents() }
    public func appendEvents(_ bytes: [UInt8]) throws { try present("append events"); try base.appendEvents(bytes) }
    public func lstat(_ path: String) throws -> stat { try present("lstat"); return try base.lstat(path) }
    public func list(_ path: String) throws -> [DirectoryEntry] { try present("opendir"); return try base.list(path) }
    public func mkdir(_ path: String, mode: mode_t) throws { try present("mkdir"); try base.mkdir(path, mode: mode) }
    public func rmdir(_ path: String) throws { try present("rmdir"); try base.rmdir(path) }
    public func unlink(_ path: String) throws { try present("unlink"); try base.unlink(path) }
    public func rename(_ from: String, _ to: String, flags: UInt32) throws { try present("rename"); try base.rename(from, to, flags: flags) }
    public func link(_ from: String, _ to: String) throws { try present("link"); try base.link(from, to) }
    public func link(_ file: MemberFile, at path: String) throws {
        try present("link")
        guard let f = file as? FaultInjectingFile else { preconditionFailure("link: \(type(of: file)) is not \(name)'s file") }
        try base.link(f.base, at: path)
    }
    public func symlink(target: String, at path: String) throws { try present("symlink"); try base.symlink(target: target, at: path) }
    public func readlink(_ path: String) throws -> String { try present("readlink"); return try base.readlink(path) }
    public func mknod(_ path: String, mode: mode_t, device: dev_t) throws { try present("mknod"); try base.mknod(path, mode: mode, device: device) }
    public func chmod(_ path: String, mode: mode_t) throws { try present("chmod"); try base.chmod(path, mode: mode) }
    public func chown(_ path: String, uid: uid_t, gid: gid_t) throws { try present("chown"); try base.chown(path, uid: uid, gid: gid) }
    public func utimens(_ path: String, _ times: (timespec, timespec)) throws { try present("utimensat"); try base.utimens(path, times) }
    public func statfs() throws -> statvfs { try present("statvfs"); return try base.statfs() }
    public func largestFileBytes() -> UInt64? { base.largestFileBytes() }
    public var ioCounters: MemberIO? { base.ioCounters }
    /// With a fault set, through an opened file, so the file's faults apply.
    public func readAttribute(at path: String, into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        plan.hasFaults ? try readAttributeOpening(path, into: buffer, capacity: capacity)
                       : try base.readAttribute(at: path, into: buffer, capacity: capacity)
    }
    public func setxattr(_ path: String, name: String, value: [UInt8], flags: Int32) throws {
        try present("setxattr")
        try base.setxattr(path, name: name, value: value, flags: flags)
    }
    public func getxattr(_ path: String, name: String) throws -> [UInt8] { try present("getxattr"); return try base.getxattr(path, name: name) }
    public func listxattr(_ path: String) throws -> [String] { try present("listxattr"); return try base.listxattr(path) }
    public func removexattr(_ path: String, name: String) throws { try present("removexattr"); try base.removexattr(path, name: name) }
    public func syncDirectory(_ path: String) throws { try writable("fsync"); try base.syncDirectory(path) }
    public func open(_ path: String, flags: Int32, mode: mode_t) throws -> MemberFile {
        try present("open")
        return FaultInjectingFile(try base.open(path, flags: flags, mode: mode), member: self)
    }
}

/// A member file with its member's faults in front of it.
package final class FaultInjectingFile: MemberFile {
    package let base: MemberFile
    unowned let member: FaultInjectingMember

    package init(_ base: MemberFile, member: FaultInjectingMember) {
        self.base = base
        self.member = member
    }

    /// Applies the member's faults before an operation: unplugged, latency,
    /// and the I/O error `failing` if it fires. Returns whether any fault is
    /// set (after a single check when none is).
    @inline(__always)
    @discardableResult
    private func before(_ op: String, failing kind: FaultKind? = nil) throws -> Bool {
        let plan = member.plan
        guard plan.hasFaults else { return false }
        if plan.vanished { throw FSError(ENODEV, "\(op) \(member.name): member unplugged (injected fault)") }
        if let ms = plan.latency(), plan.fires(.latency) { usleep(useconds_t(ms) * 1000) }
        if let kind, plan.fires(kind) { throw FSError(EIO, "\(op) \(member.name): Input/output error (injected fault)") }
        return true
    }

    package func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws -> Int {
        let armed = try before("pread", failing: .eioRead)
        let n = try base.read(into: buffer, count: count, at: offset)
        if armed && n > 0 { rot(buffer, n) }
        return n
    }

    /// Bit rot, if it fires: one bit of the `n` bytes read flipped.
    private func rot(_ buffer: UnsafeMutableRawPointer, _ n: Int) {
        guard member.plan.fires(.bitrot) else { return }
        let bit = member.plan.bitToFlip(in: n)
        let p = buffer.assumingMemoryBound(to: UInt8.self) + bit / 8
        p.pointee ^= UInt8(1) << (bit % 8)
    }

    package func write(from buffer: UnsafeRawPointer, count: Int, at offset: UInt64) throws {
        try before("pwrite", failing: .eioWrite)
        try base.write(from: buffer, count: count, at: offset)
    }

    package func sync(dataOnly: Bool) throws {
        try before("fsync", failing: .eioWrite)
        try base.sync(dataOnly: dataOnly)
    }

    package func truncate(to size: UInt64) throws {
        try before("ftruncate", failing: .eioWrite)
        try base.truncate(to: size)
    }

    package func status() throws -> stat { try before("fstat"); return try base.status() }
    package func allocate(at offset: UInt64, length: UInt64) throws { try before("fallocate"); try base.allocate(at: offset, length: length) }
    package func punchHole(at offset: UInt64, length: UInt64) throws { try before("fallocate"); try base.punchHole(at: offset, length: length) }
    package func nextData(from offset: UInt64) throws -> UInt64? { try before("lseek"); return try base.nextData(from: offset) }
    package func markModified() throws { try before("futimens"); try base.markModified() }
    package func markAccessed() throws { try before("pread"); try base.markAccessed() }

    package func readAttribute(into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        let armed = try before("fgetxattr", failing: .eioRead)
        let n = try base.readAttribute(into: buffer, capacity: capacity)
        // A read of the attribute is a read of the header and one of the
        // entries (as they were in format 2's table): each may rot.
        if armed, let n, n > 0 {
            let header = min(n, capacity, FileAttribute.encodedBytes - Int(Geometry.leadingStripes) * 8)
            rot(buffer, header)
            if min(n, capacity) > header { rot(buffer + header, min(n, capacity) - header) }
        }
        return n
    }

    package func writeAttribute(from buffer: UnsafeRawPointer, count: Int) throws {
        try before("fsetxattr", failing: .eioWrite)
        try base.writeAttribute(from: buffer, count: count)
    }

    package func modifyAttribute(capacity: Int, _ body: (UnsafeMutableRawPointer, Int?) -> Int?) throws {
        try before("fsetxattr", failing: .eioWrite)
        try base.modifyAttribute(capacity: capacity, body)
    }
    package func close() { base.close() }
}
