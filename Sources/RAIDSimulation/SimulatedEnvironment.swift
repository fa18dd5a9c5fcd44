import Foundation
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// The simulation's environment: a logical clock that starts at `start`
/// and moves only by `advance` (and by the engine's own sleeps), UUIDs and
/// file ids drawn from `seed`, jobs that run only when stepped, root as the
/// user (whoever runs the simulation), and member directories that are
/// simulated disks by name. One seed gives one run.
// @unchecked Sendable: the clock and the identifier source change only under `lock`.
public final class SimulatedEnvironment: EngineEnvironment, @unchecked Sendable {
    public let jobs = JobRunner(mode: .stepped)
    public let directories: MemberDirectories
    public let effectiveUser: (uid: uid_t, gid: gid_t) = (0, 0)
    private let lock = Lock()
    private var logicalNow: Double
    private var ids: SeededGenerator

    public init(seed: UInt64, start: Double = 1_800_000_000, disks: SimulatedDisks = SimulatedDisks()) {
        logicalNow = start
        directories = disks
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

    public func monotonicMilliseconds() -> UInt64 {
        UInt64(((wallClockSeconds() - 1_000_000_000) * 1000).rounded(.down))
    }

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

/// Simulated disks by name: the member directories of a simulation. A
/// disk is there once registered (`add`); an unknown name is missing, as a
/// directory that does not exist.
// @unchecked Sendable: its disks change only under `lock`.
public final class SimulatedDisks: MemberDirectories, @unchecked Sendable {
    private let lock = Lock()
    private var disks: [String: SimulatedMember] = [:]

    public init() {}

    /// Makes `disk` a directory of this simulation, under its name.
    public func add(_ disk: SimulatedMember) { lock.withLock { disks[disk.name] = disk } }

    private func disk(_ directory: String) throws -> SimulatedMember {
        guard let d = lock.withLock({ disks[directory] }) else {
            throw FSError(ENOENT, "\(directory): no such simulated disk")
        }
        return d
    }

    public func member(at directory: String) -> Member {
        (try? disk(directory)) ?? SimulatedMember(name: directory)
    }

    public func resolve(_ directory: String) -> String { directory }

    public func identity(of directory: String) throws -> String { try disk(directory).name }

    public func requireEmpty(_ directory: String) throws {
        let d = try disk(directory)
        guard (try? d.readSuperblock()) == nil, (try? d.list("/"))?.contains(where: { $0.name != "." && $0.name != ".." }) != true else {
            throw FSError(ENOTEMPTY, "\(directory): directory is not empty")
        }
    }

    public func wipe(_ directory: String) throws { try disk(directory).wipe() }

    public func makeDataRoot(_ directory: String) throws { _ = try disk(directory) }

    public func takesUserAttributes(_ directory: String) -> Bool { true }
}
