import Foundation
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// The simulation's environment: a logical clock that starts at `start`
/// and moves only by `advance` (and by the engine's own sleeps), UUIDs and
/// file ids drawn from `seed`, jobs that run only when stepped, root as the
/// user (whoever runs the simulation), and no member directories (its
/// disks are passed as members). One seed gives one run.
// @unchecked Sendable: the clock and the identifier source change only under `lock`.
public final class SimulatedEnvironment: EngineEnvironment, @unchecked Sendable {
    public let jobs = JobRunner(mode: .stepped)
    public let directories: MemberDirectories = NoDirectories()
    public let effectiveUser: (uid: uid_t, gid: gid_t) = (0, 0)
    private let lock = Lock()
    private var logicalNow: Double
    private var ids: SeededGenerator

    public init(seed: UInt64, start: Double = 1_800_000_000) {
        logicalNow = start
        // Independent of the stream `seed` came from: a plain seed would
        // repeat it (xorshift's state is its last output), and the
        // simulation seeds from its own stream, which also seeds each
        // mount's file ids: two files could be given one id.
        ids = SeededGenerator.independent(of: seed)
    }

    public func wallClockSeconds() -> Double { lock.withLock { logicalNow } }

    /// The logical clock's millisecond, in nanoseconds.
    public func coarseWallClockNanoseconds() -> Int64 {
        Int64((wallClockSeconds() * 1000).rounded(.down)) &* 1_000_000
    }

    /// The logical clock's milliseconds (it never goes back).
    public func monotonicMilliseconds() -> UInt64 { UInt64((wallClockSeconds() * 1000).rounded(.down)) }

    /// The logical clock moved on by as much.
    public func sleep(seconds: Double) { advance(by: seconds) }

    /// Moves the logical clock on (the simulation's passing of time).
    public func advance(by seconds: Double) { lock.withLock { logicalNow += seconds } }

    /// A generator independent of the identifiers' own stream, from which
    /// the simulation seeds generators too.
    public func fileIdGenerator() -> any RandomNumberGenerator {
        lock.withLock { SeededGenerator.independent(of: ids.next()) }
    }

    public func newUUID() -> String {
        lock.withLock { () -> String in
            let a = ids.next(), b = ids.next()
            let c = Array(String(format: "%016llx%016llx", a, b))
            return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
        }
    }
}

/// The simulation's member directories: none. Its disks reach the engine
/// as `Member`s (creating, assembling, adding and replacing take members
/// there), so a directory named to it is missing, as one that does not
/// exist on a host: its member is an empty disk, with no superblock.
struct NoDirectories: MemberDirectories {
    private func missing(_ directory: String) -> FSError {
        FSError(ENOENT, "\(directory): the simulation has no directories (its disks are passed as members)")
    }
    func member(at directory: String) -> Member { SimulatedMember(name: directory) }
    func resolve(_ directory: String) -> String { directory }
    func identity(of directory: String) throws -> String { throw missing(directory) }
    func requireEmpty(_ directory: String) throws { throw missing(directory) }
    func wipe(_ directory: String) throws { throw missing(directory) }
    func makeDataRoot(_ directory: String) throws { throw missing(directory) }
    func takesUserAttributes(_ directory: String) -> Bool { false }
}
