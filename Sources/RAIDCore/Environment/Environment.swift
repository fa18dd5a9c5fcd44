#if canImport(Glibc)
import Glibc
#endif

/// What the engine takes from outside itself: time, sleep, chance, the
/// user it runs as, where member directories come from, and how
/// background jobs run. The daemon passes a `SystemEnvironment`; the
/// simulation passes its own (a logical clock, seeded identifiers, stepped
/// jobs, simulated disks), so that one seed gives one run. Nothing in the
/// engine reads a clock, sleeps, draws a random number or asks who it is
/// but through this.
public protocol EngineEnvironment: AnyObject, Sendable {
    /// How background jobs (rebuild, scrub, fail-over) run.
    var jobs: JobRunner { get }
    /// Where member directories are opened, checked and prepared.
    var directories: MemberDirectories { get }
    /// The user and group the engine acts as: root chowns new entries to
    /// their callers, anyone else cannot.
    var effectiveUser: (uid: uid_t, gid: gid_t) { get }

    /// The wall clock, seconds since the epoch (events, superblocks,
    /// schedules, rates).
    func wallClockSeconds() -> Double
    /// The host's coarse wall clock, the tick a file's mtime moves by,
    /// nanoseconds since the epoch. Cheap enough for every write.
    func coarseWallClockNanoseconds() -> Int64
    /// A coarse monotonic clock, milliseconds. Cheap enough for every
    /// request.
    func monotonicMilliseconds() -> UInt64
    /// Waits `seconds` (a retry's backoff).
    func sleep(seconds: Double)

    /// Where a new array's file ids come from.
    func fileIdGenerator() -> any RandomNumberGenerator
    /// A new lower-case UUID string.
    func newUUID() -> String
}

extension EngineEnvironment {
    /// The engine acts as root.
    var isSuperuser: Bool { effectiveUser.uid == 0 }
}
