import RAIDBase
import RAIDLayout
import RAIDControl
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The counters behind `MemberIOStatus`: one per member, bumped by each
/// system call the daemon makes on it, from any thread, without a lock
/// (relaxed atomic adds on one allocation made up front).
// @unchecked Sendable: its slots are only touched through relaxed atomics.
public final class MemberIO: @unchecked Sendable {
    public enum Kind: Int, CaseIterable { case open, read, write, flush, xattr, rename, other }

    /// Latency buckets: under 1 µs, under 2 µs, ... under 2^(n-1) µs (about
    /// 34 s), and the slower ones.
    package static let buckets = 27
    private static let kinds = Kind.allCases.count
    private static let readBytes = kinds, writeBytes = kinds + 1, latency = kinds + 2, histogram = kinds + 3
    private let slots: UnsafeMutablePointer<UInt64>

    public init() {
        let n = MemberIO.histogram + MemberIO.buckets
        slots = .allocate(capacity: n)
        slots.initialize(repeating: 0, count: n)
    }

    deinit { slots.deallocate() }

    /// A start time for `count`: nanoseconds of the monotonic clock.
    @inline(__always)
    public static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }

    /// Counts one call of `kind` begun at `start` (`now()`), moving `bytes`.
    @inline(__always)
    public func count(_ kind: Kind, since start: UInt64, bytes: Int = 0) {
        let micros = (MemberIO.now() &- start) / 1000
        raidfs_add_relaxed_u64(slots + kind.rawValue, 1)
        if bytes > 0 {
            if kind == .read { raidfs_add_relaxed_u64(slots + MemberIO.readBytes, UInt64(bytes)) }
            if kind == .write { raidfs_add_relaxed_u64(slots + MemberIO.writeBytes, UInt64(bytes)) }
        }
        raidfs_add_relaxed_u64(slots + MemberIO.latency, micros)
        let bucket = micros == 0 ? 0 : min(MemberIO.buckets - 1, 64 - micros.leadingZeroBitCount)
        raidfs_add_relaxed_u64(slots + MemberIO.histogram + bucket, 1)
    }

    /// Runs `call`, one system call of `kind`, and counts it.
    @inline(__always)
    public func call<T>(_ kind: Kind, _ call: () throws -> T) rethrows -> T {
        let start = MemberIO.now()
        defer { count(kind, since: start) }
        return try call()
    }

    /// Runs `call`, one system call of `kind` that moves the bytes it
    /// returns (none when it fails), and counts it.
    @inline(__always)
    public func transfer(_ kind: Kind, _ call: () throws -> Int) rethrows -> Int {
        let start = MemberIO.now()
        var n = -1
        defer { count(kind, since: start, bytes: max(n, 0)) }
        n = try call()
        return n
    }

    /// Counters no one reads: for the whole-file helpers used outside any
    /// member (`DirectoryMember.readWholeFile` of /proc).
    public static let uncounted = MemberIO()

    public func snapshot() -> MemberIOStatus {
        func load(_ i: Int) -> UInt64 { raidfs_load_relaxed_u64(slots + i) }
        var s = MemberIOStatus()
        s.opens = load(Kind.open.rawValue)
        s.reads = load(Kind.read.rawValue)
        s.writes = load(Kind.write.rawValue)
        s.flushes = load(Kind.flush.rawValue)
        s.xattrs = load(Kind.xattr.rawValue)
        s.renames = load(Kind.rename.rawValue)
        s.other = load(Kind.other.rawValue)
        s.readBytes = load(MemberIO.readBytes)
        s.writeBytes = load(MemberIO.writeBytes)
        s.latencyMicroseconds = load(MemberIO.latency)
        s.latencyHistogram = (0..<MemberIO.buckets).map { load(MemberIO.histogram + $0) }
        return s
    }
}
