import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs the array's background jobs: rebuilds, replacements, scrubs and
/// the fail-over that hands a lost role to a spare.
///
/// - `.threads` (the daemon): each job runs on a thread of its own.
/// - `.stepped` (the simulation): each job still has a thread, but it runs
///   only while its caller steps it, and gives control back at each yield
///   point (between a rebuild's batches, between a scrub's files). Exactly
///   one thread runs at any moment, in an order the caller decides, so a
///   seeded run of operations and maintenance steps replays exactly.
// @unchecked Sendable: its job list changes only under `lock`; stepped jobs hand the one running turn over through semaphores.
public final class JobRunner: @unchecked Sendable {
    public enum Mode: Sendable { case threads, stepped }
    public let mode: Mode

    /// One job under `.stepped`: a thread and the baton it is handed.
    // @unchecked Sendable: `finished` is written by the job's thread before it signals `paused`, and read after a `paused.wait()`, which orders the two.
    final class Job: @unchecked Sendable {
        let name: String
        let resume = DispatchSemaphore(value: 0)
        let paused = DispatchSemaphore(value: 0)
        /// Read and written only by whoever holds the baton.
        var finished = false
        init(name: String) { self.name = name }
    }

    private let lock = Mutex()
    /// Stepped jobs not yet finished, oldest first.
    private var jobs: [Job] = []
    private static let currentKey = "raidfs.job"

    public init(mode: Mode) { self.mode = mode }

    /// Starts `body` as a job named `name`: the job is returned under
    /// `.stepped`, for `wait(for:until:)`.
    @discardableResult
    func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) -> Job? {
        switch mode {
        case .threads:
            let t = Thread(block: body)
            t.name = name
            t.start()
            return nil
        case .stepped:
            let job = Job(name: name)
            lock.withLock { jobs.append(job) }
            let t = Thread {
                Thread.current.threadDictionary[JobRunner.currentKey] = job
                job.resume.wait()
                body()
                job.finished = true
                job.paused.signal()
            }
            t.name = name
            t.start()
            return job
        }
    }

    /// Called by a job between units of work: under `.stepped` it hands
    /// control back to whoever stepped it and waits to be stepped again.
    func yieldPoint() {
        guard mode == .stepped, let job = Thread.current.threadDictionary[JobRunner.currentKey] as? Job else { return }
        job.paused.signal()
        job.resume.wait()
    }

    /// The job names still to finish (`.stepped`), oldest first.
    public var pending: [String] { lock.withLock { jobs.map { $0.name } } }

    /// `.stepped`: runs the oldest unfinished job (other than the caller's
    /// own) up to its next yield point or its end. False when there is none.
    @discardableResult
    public func step() -> Bool {
        precondition(mode == .stepped, "step() drives stepped jobs only")
        let me = Thread.current.threadDictionary[JobRunner.currentKey] as? Job
        guard let job = lock.withLock({ jobs.first { $0 !== me } }) else { return false }
        step(job)
        return true
    }

    private func step(_ job: Job) {
        job.resume.signal()
        job.paused.wait()
        if job.finished { lock.withLock { jobs.removeAll { $0 === job } } }
    }

    /// Steps jobs until none is left (`.stepped`).
    public func runUntilIdle() { while step() {} }

    /// Waits until `done()` holds, which `job` (spawned here) makes true:
    /// by polling under `.threads`; under `.stepped` by stepping that job
    /// alone, since the caller may hold a lock another job is waiting for.
    func wait(for job: Job?, until done: () -> Bool) {
        while !done() {
            switch mode {
            case .threads:
                usleep(5_000)
            case .stepped:
                guard let job, !job.finished else {
                    preconditionFailure("waiting for a condition no background job can make true")
                }
                step(job)
            }
        }
    }
}

/// What the engine takes from outside itself: the time, new identifiers,
/// and how background jobs run. The daemon uses the system's; the
/// simulation passes a logical clock, seeded identifiers and stepped jobs,
/// so that one seed gives one run.
// @unchecked Sendable: the simulated clock and identifier source change only under `lock`.
public final class EngineEnvironment: @unchecked Sendable {
    public let jobs: JobRunner
    private let lock = Mutex()
    /// nil: the wall clock.
    private var logicalNow: Double?
    private var ids: SeededGenerator?

    public static func system() -> EngineEnvironment { EngineEnvironment(jobs: JobRunner(mode: .threads)) }

    /// A clock that starts at `start` and moves only by `advance`, UUIDs
    /// drawn from `seed`, and jobs that run only when stepped.
    public static func simulated(seed: UInt64, start: Double = 1_800_000_000) -> EngineEnvironment {
        let e = EngineEnvironment(jobs: JobRunner(mode: .stepped))
        e.logicalNow = start
        // Independent of the stream `seed` came from: a plain seed would
        // repeat it (xorshift's state is its last output), and the
        // simulation seeds from its own stream, which also seeds each
        // mount's file ids — an assembly's repair then gave a create cut
        // short by a crash the id of a file made after an earlier mount
        // (RAID 6 seed 36 beyond redundancy: two files, one id).
        e.ids = SeededGenerator.independent(of: seed)
        return e
    }

    init(jobs: JobRunner) { self.jobs = jobs }

    public var isSimulated: Bool { jobs.mode == .stepped }

    /// Seconds since the epoch.
    public func now() -> Double { lock.withLock { logicalNow } ?? Date().timeIntervalSince1970 }

    /// The host's timestamp tick: the coarse real-time clock (what a
    /// write's mtime is taken from), or the logical clock's millisecond.
    @inline(__always)
    public func coarseTick() -> Int64 {
        if isSimulated { return Int64((now() * 1000).rounded(.down)) }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    /// Waits `seconds` (a retry's backoff): the system's sleep, or the
    /// logical clock moved on by as much.
    public func pause(seconds: Double) {
        if isSimulated { advance(by: seconds) } else { usleep(UInt32(seconds * 1_000_000)) }
    }

    /// Moves a logical clock on (the simulation's passing of time).
    public func advance(by seconds: Double) {
        lock.withLock {
            precondition(logicalNow != nil, "only a logical clock can be moved")
            logicalNow! += seconds
        }
    }

    /// Where new file ids come from: the system's random source, or a
    /// seeded one (the simulation), independent of the identifiers' own
    /// stream, from which the simulation seeds generators too (two files
    /// were given one id while they were the same stream).
    func fileIdGenerator() -> any RandomNumberGenerator {
        lock.withLock { () -> any RandomNumberGenerator in
            guard ids != nil else { return SystemRandomNumberGenerator() }
            return SeededGenerator.independent(of: ids!.next())
        }
    }

    /// A new lower-case UUID string.
    public func newUUID() -> String {
        lock.withLock { () -> String in
            guard ids != nil else { return UUID().uuidString.lowercased() }
            let a = ids!.next(), b = ids!.next()
            let h = String(format: "%016llx%016llx", a, b)
            let c = Array(h)
            return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
        }
    }
}
