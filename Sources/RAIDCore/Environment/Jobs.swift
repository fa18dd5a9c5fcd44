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

    private let lock = Lock()
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

    /// Between a background job's units of work, while users are busy
    /// (`usersBusy`, asked every 10 ms, at most a second): under
    /// `.threads` the job waits for them, as ZFS's scrub yields to I/O;
    /// under `.stepped` no user can be busy while a job runs, so it hands
    /// control back instead.
    func yieldToUsers(_ usersBusy: () -> Bool) {
        switch mode {
        case .threads:
            var waited = 0
            while waited < 100 && usersBusy() {
                usleep(10_000)
                waited += 1
            }
        case .stepped:
            yieldPoint()
        }
    }

    /// Holds a background job back for `seconds` (its rate limit): under
    /// `.stepped` a job runs only when stepped, and the logical clock
    /// moves only with the simulation, so there is nothing to wait for.
    func throttle(seconds: Double) {
        guard mode == .threads, seconds > 0 else { return }
        usleep(useconds_t(min(seconds, 1.0) * 1_000_000))
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
