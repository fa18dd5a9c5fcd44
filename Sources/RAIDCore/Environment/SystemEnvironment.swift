import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The host's environment, which the daemon and `raidctl` run in: the
/// system clocks, real sleeps, the system's random source, the process's
/// user, member directories on the host's filesystems, and a thread per
/// background job. The one place in the engine that asks the system for
/// any of these.
// @unchecked Sendable: immutable after init.
public final class SystemEnvironment: EngineEnvironment, @unchecked Sendable {
    public let jobs = JobRunner(mode: .threads)
    public let directories: MemberDirectories = HostDirectories()
    /// The daemon runs as one user for its whole life.
    public let effectiveUser = (uid: geteuid(), gid: getegid())

    public init() {}

    public func wallClockSeconds() -> Double { Date().timeIntervalSince1970 }

    @inline(__always)
    public func coarseWallClockNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    @inline(__always)
    public func monotonicMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec) &* 1000 &+ UInt64(ts.tv_nsec / 1_000_000)
    }

    public func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        usleep(UInt32(seconds * 1_000_000))
    }

    public func fileIdGenerator() -> any RandomNumberGenerator { SystemRandomNumberGenerator() }

    public func newUUID() -> String { UUID().uuidString.lowercased() }
}
