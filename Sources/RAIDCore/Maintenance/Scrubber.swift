import Foundation
import CLinux
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// A scrub of a mounted array (md's `check`/`repair` sync actions, ZFS's
/// scrub): every stripe of every file is read, each chunk verified against
/// its checksum and parity against the data, one stripe at a time under the
/// file's lock so user I/O interleaves. In repair mode what redundancy can
/// restore is rewritten (checksums say which chunk is wrong, so unlike md's
/// repair it never guesses); in check mode it is only counted and reported.
// @unchecked Sendable: its progress, findings and stop flag change only under `lock`; the rest is set in init.
public final class Scrubber: @unchecked Sendable {
    public let repair: Bool
    private unowned let array: RAIDArray
    private let rateBytesPerSecond: Double?
    /// After an unclean shutdown, or a read beyond redundancy: only these files.
    let only: Set<String>?
    /// Why only those (nil: an unclean shutdown).
    private let because: String?
    private let lock = Lock()
    private let startedAt: Double
    /// When this scrub first started (before any remount that resumed it).
    private let firstStartedAt: Double
    private var bytesTotal: UInt64 = 0
    private var running = true
    private var stopRequested = false
    /// Stopped by an unmount: the checkpoint stays and the next mount resumes.
    private var resumable = false
    private var stopped = false
    /// What was found, including before a resume.
    private var found: ScrubResult
    private let bytesAtStart: UInt64
    private var resumeAfter: [String]?
    /// Resumed from a checkpoint (an unmount or crash cut it short).
    private let resumed: Bool
    private var lastPath = ""
    /// What was found when `lastPath` was finished: what a checkpoint keeps,
    /// so a resumed scrub counts the file it redoes once.
    private var foundAtLastPath: ScrubResult
    private var lastCheckpoint: Double

    init(array: RAIDArray, repair: Bool, rateBytesPerSecond: Double?, resume: ScrubCheckpoint? = nil, only: [String]? = nil) {
        self.array = array
        self.repair = repair
        self.rateBytesPerSecond = rateBytesPerSecond
        startedAt = array.environment.wallClockSeconds()
        lastCheckpoint = startedAt
        let mode = repair ? "repair" : "check"
        if let r = resume {
            found = r.found
            resumeAfter = r.lastPath.isEmpty ? nil : Rebuilder.components(r.lastPath)
            lastPath = r.lastPath
            firstStartedAt = r.startedAt
            self.only = r.only.map(Set.init)
            because = r.because
        } else {
            because = nil
            found = ScrubResult(mode: mode, bytes: 0, problems: 0, repaired: 0, unrecoverable: 0)
            firstStartedAt = startedAt
            self.only = only.map(Set.init)
        }
        bytesAtStart = found.bytes
        foundAtLastPath = found
        resumed = resume != nil
    }

    /// Progress, and what was found (kept after the scrub ends, as
    /// `zpool status` shows the last scrub).
    public var status: ProgressStatus {
        lock.withLock {
            let elapsed = max(0.001, array.environment.wallClockSeconds() - startedAt)
            let rate = Double(found.bytes - bytesAtStart) / elapsed
            let total = max(bytesTotal, found.bytes)
            return ProgressStatus(running: running,
                                  progress: total == 0 ? (running ? 0 : 1) : Double(found.bytes) / Double(total),
                                  bytesPerSecond: rate,
                                  etaSeconds: running && rate > 0 ? Double(total - found.bytes) / rate : (running ? nil : 0),
                                  repaired: found.repaired, unrecoverable: found.unrecoverable,
                                  mode: found.mode, problems: found.problems, stopped: stopped)
        }
    }

    public var isRunning: Bool { lock.withLock { running } }
    /// The job's thread is done with the array (see Rebuilder.hasExited).
    var hasExited: Bool { lock.withLock { exited } }
    private var exited = false

    /// `resumable`: an unmount, which the next mount resumes from; else
    /// `raidctl scrub --stop`, which ends this scrub for good.
    func stop(resumable: Bool) { lock.withLock { stopRequested = true; self.resumable = resumable } }
    private var shouldStop: Bool { lock.withLock { stopRequested } }

    /// The stepped job running this scrub (the simulation's).
    private(set) var job: JobRunner.Job?

    func start() {
        job = array.environment.jobs.spawn("raidfs-scrub") { [self] in run() }
    }

    /// Names renames gave files behind the walk (where it had been, or in
    /// a directory it had listed): the walk would not meet them, so they
    /// are scrubbed after it. Under `lock`.
    private var behind: [String] = []
    private var walkDone = false

    /// A name was renamed to `path` while this scrub runs.
    func renamed(to path: String) {
        lock.withLock {
            let here = Rebuilder.components(path), at = Rebuilder.components(lastPath)
            if walkDone || at.starts(with: here.dropLast()) || here.lexicographicallyPrecedes(at) { behind.append(path) }
        }
    }

    /// Where a resumed scrub goes on: after the last path done, or, with
    /// renamed names behind the walk still to do, after the directory of
    /// the first of them (the whole tree from the start when it is the root).
    private var checkpoint: ScrubCheckpoint {
        lock.withLock {
            var at = lastPath
            if let first = behind.min(by: { Rebuilder.components($0).lexicographicallyPrecedes(Rebuilder.components($1)) }) {
                at = Scrubber.resumePoint(before: first)
            }
            return ScrubCheckpoint(lastPath: at, startedAt: firstStartedAt, found: foundAtLastPath, only: only.map { $0.sorted() },
                                   because: because)
        }
    }

    /// The checkpoint's last path that has a resumed scrub do `path` again:
    /// its directory (the whole tree, "", for a name in the root).
    static func resumePoint(before path: String) -> String {
        String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
    }

    /// After the walk: what renames moved behind it, file by file or the
    /// whole tree of a directory, until none is left (eight rounds at most:
    /// a scrub does not chase a tree renamed for ever).
    private func scrubRenamedBehind() throws {
        for _ in 0..<8 {
            let todo: [String] = lock.withLock {
                walkDone = true
                defer { behind = [] }
                return behind
            }
            if todo.isEmpty || shouldStop { return }
            for path in Set(todo).sorted() where !shouldStop {
                guard let st = try? array.getattr(path) else { continue }   // gone meanwhile
                if (st.st_mode & S_IFMT) == S_IFREG {
                    if only?.contains(path) ?? true { try scrubFile(path) }
                } else if (st.st_mode & S_IFMT) == S_IFDIR {
                    try array.walk(from: path) { p, type in
                        if type == UInt8(DT_REG) && (only?.contains(p) ?? true) { try scrubFile(p) }
                        return !shouldStop
                    }
                }
            }
        }
    }

    private func run() {
        defer { lock.withLock { exited = true } }
        let mode = found.mode
        let what = only.map { "of the \($0.count) files " + (because ?? "written when the array last stopped uncleanly") } ?? "of every file"
        let how = !resumed ? "started" : lastPath.isEmpty ? "resumed from the start" : "resumed after \(lastPath)"
        array.eventLog.record(ArrayEvent(kind: resumed ? .scrubResumed : .scrubStarted, message: "scrub (\(mode)) \(what) \(how)"))
        array.recordScrub { $0.checkpoint = checkpoint }
        do {
            let total = try array.fileBytes { shouldStop }
            lock.withLock { bytesTotal = total }
            try array.walk { path, type in
                if shouldStop { return false }
                let done = resumeAfter.map { !$0.lexicographicallyPrecedes(Rebuilder.components(path)) } ?? false
                if type == UInt8(DT_REG) && !done && (only?.contains(path) ?? true) { try scrubFile(path) }
                if shouldStop { return false }
                lock.withLock { lastPath = path; foundAtLastPath = found }
                let now = array.environment.wallClockSeconds()
                if now - lastCheckpoint >= 2 {
                    lastCheckpoint = now
                    array.recordScrub { $0.checkpoint = checkpoint }
                }
                return true
            }
            try scrubRenamedBehind()
        } catch {
            array.eventLog.record(ArrayEvent(kind: .scrubFailed, message: "scrub (\(mode)) stopped: \(error)"))
        }
        let (result, wasStopped, keep) = lock.withLock { () -> (ScrubResult, Bool, Bool) in
            stopped = stopRequested
            return (found, stopRequested, resumable)
        }
        let now = array.environment.wallClockSeconds()
        array.recordScrub { record in
            if wasStopped {
                record.checkpoint = keep ? checkpoint : nil
            } else {
                record.checkpoint = nil
                if only == nil {   // a whole scrub: the schedule counts from here
                    record.lastFinishedAt = now
                    record.lastResult = result
                }
            }
        }
        lock.withLock { running = false }
        let seconds = array.environment.wallClockSeconds() - startedAt
        array.eventLog.record(ArrayEvent(
            kind: wasStopped ? .scrubStopped : .scrubFinished,
            message: String(format: "scrub (%@) %@ %@ after %.1f s: %llu bytes checked, %d problems, %d repaired, %d beyond redundancy%@",
                            mode, what, wasStopped ? "stopped" : "finished", seconds, result.bytes, result.problems, result.repaired,
                            result.unrecoverable, wasStopped && keep ? "; the next mount resumes it" : "")))
    }

    /// Scrubs one file a stripe at a time; a file removed meanwhile is
    /// skipped, one whose header no active member can read is reported lost.
    private func scrubFile(_ path: String) throws {
        let af: ArrayFile
        do {
            af = try array.open(path)
        } catch let e as FSError where e.errno == EIO {
            array.eventLog.record(ArrayEvent(kind: .unrecoverable, path: path, message: "file header: \(e.message)"))
            lock.withLock { found.unrecoverable += 1 }
            return
        } catch {
            return
        }
        defer { array.release(af) }
        let g = array.geometry
        var stripe: UInt64 = 0
        while stripe < af.lock.withReadLock({ af.stripeCount }) {
            if shouldStop { return }
            array.yieldToUserIO()
            let result = try af.checkStripe(stripe, mode: repair ? .repair : .check)
            let start = g.stripeStart(stripe)
            for p in result.problems {
                let (offset, chunk) = g.locate(p, stripe: stripe)
                array.eventLog.record(ArrayEvent(
                    kind: result.repaired ? .scrubRepaired : .scrubMismatch, member: p.role, path: path,
                    message: "offset \(offset) (stripe \(stripe)): \(p.kind.rawValue) in \(chunk) on \(array.memberName(p.role))\(result.repaired ? ", repaired" : "")"))
            }
            if result.unrecoverable {
                array.eventLog.record(ArrayEvent(kind: .unrecoverable, path: path,
                                                 message: "offset \(start) (stripe \(stripe)): more chunks lost than redundancy covers"))
            }
            let size = af.currentSize()
            let bytes = min(size, start + UInt64(g.stripeBytes(stripe))) - min(size, start)
            lock.withLock {
                found.problems += result.problems.count
                if result.repaired { found.repaired += result.problems.count }
                if result.unrecoverable { found.unrecoverable += 1 }
                found.bytes += bytes
            }
            array.pace(bytes: lock.withLock { found.bytes - bytesAtStart }, since: startedAt, rate: rateBytesPerSecond)
            stripe += 1
        }
    }
}

extension RAIDArray {
    /// `raidctl scrub`: starts a scrub (repair or check) of the mounted array.
    public func startScrub(repair: Bool) throws -> String {
        guard !readOnly || !repair else { throw FSError(EROFS, "array is mounted read-only: use scrub --check") }
        try requireNotFailed("scrub")
        try launchScrub(Scrubber(array: self, repair: repair, rateBytesPerSecond: configuration.scrubRateBytesPerSecond))
        return "scrub (\(repair ? "repair" : "check")) started"
    }

    private func launchScrub(_ s: Scrubber) throws {
        guard !isShuttingDown else { throw FSError(ESHUTDOWN, "the array is being unmounted") }
        try maintenance.takeScrub(s)
        s.start()
    }

    /// `raidctl scrub --stop`: ends the scrub for good (an unmount instead
    /// leaves it to be resumed).
    public func stopScrub() throws -> String {
        guard let s = maintenance.scrubber, s.isRunning else {
            throw FSError.invalid("no scrub is running")
        }
        s.stop(resumable: false)
        environment.jobs.wait(for: s.job) { !s.isRunning }
        return "scrub stopped"
    }

    /// Changes the scrub history in the superblocks and records it.
    func recordScrub(_ change: (inout ScrubRecord) -> Void) {
        guard !readOnly else { return }
        store.lock.withLock {
            var record = store.superblock.scrub ?? ScrubRecord()
            change(&record)
            store.superblock.scrub = record
        }
        persistStateLoggingFailure("scrub")
    }

    /// The monitor's check, every second: resume a scrub an unmount or crash
    /// cut short, scrub the files a crash left in the intent log, or start
    /// the scheduled scrub once the last complete one is older than
    /// `scrubIntervalSeconds` — only on a clean array with no rebuild.
    func startScheduledScrubIfDue(now: Double? = nil) {
        let now = now ?? environment.wallClockSeconds()
        guard !readOnly, state == .clean else { return }
        guard !maintenance.busy else { return }
        let (record, created) = store.lock.withLock { (store.superblock.scrub ?? ScrubRecord(), store.superblock.createdAt) }
        if let cp = record.checkpoint {
            try? launchScrub(Scrubber(array: self, repair: cp.found.mode == "repair", rateBytesPerSecond: configuration.scrubRateBytesPerSecond, resume: cp))
        } else if configuration.scrubIntervalSeconds > 0, now - (record.lastFinishedAt ?? created) >= configuration.scrubIntervalSeconds {
            eventLog.record(ArrayEvent(kind: .scrubScheduled, message: "the last complete scrub is older than the scrub interval (\(Int(configuration.scrubIntervalSeconds)) s)"))
            try? launchScrub(Scrubber(array: self, repair: true, rateBytesPerSecond: configuration.scrubRateBytesPerSecond))
        }
    }

    /// After an unclean shutdown: a scrub of the files the intent log
    /// named (`because` nil), recorded as a checkpoint so that it survives
    /// another crash; it starts once the array is clean and idle.
    func scheduleScrub(paths: [String]?, because: String? = nil) {
        let only = paths.map { Array(Set($0)).sorted() }
        if only?.isEmpty == true { return }
        recordScrub { record in
            guard record.checkpoint == nil else { return }   // a scrub already in progress covers them
            record.checkpoint = ScrubCheckpoint(lastPath: "", startedAt: environment.wallClockSeconds(),
                                                found: ScrubResult(mode: "repair", bytes: 0, problems: 0, repaired: 0, unrecoverable: 0),
                                                only: only, because: because)
        }
    }

    /// A name was renamed to `path`: a scrub under way must not miss the
    /// file if the name is behind its walk. A running one scrubs it after
    /// the walk; one paused at a checkpoint (an unmount or crash cut it
    /// short and it has not resumed yet) moves the checkpoint back before it.
    func scrubRenamed(to path: String) {
        if let s = maintenance.scrubber, s.isRunning { return s.renamed(to: path) }
        let moved: Bool = store.lock.withLock {
            guard var cp = store.superblock.scrub?.checkpoint, !cp.lastPath.isEmpty,
                  Rebuilder.components(path).lexicographicallyPrecedes(Rebuilder.components(cp.lastPath)) else { return false }
            cp.lastPath = Scrubber.resumePoint(before: path)
            store.superblock.scrub!.checkpoint = cp
            return true
        }
        if moved { persistStateLoggingFailure("scrub checkpoint moved back before a renamed name") }
    }

    /// A read found sectors of `path` that no member gives right now
    /// (beyond redundancy, or errors that may pass): they are left as they
    /// are, reading EIO, and a repair scrub of the file comes soon — within
    /// seconds once the array is clean — to try them again, rather than at
    /// the next scheduled scrub.
    func lostSectorsFound(path: String) {
        guard !readOnly else { return }
        let pending = maintenance.scrubber?.isRunning == true || store.lock.withLock { store.superblock.scrub?.checkpoint != nil }
        if pending { return }
        // Not on the reader's thread: it holds the file's lock.
        environment.jobs.spawn("raidfs-scrub-lost") { [weak self] in
            self?.scheduleScrub(paths: [path], because: "a read found sectors of beyond redundancy in")
        }
    }

    /// Pauses a scrub while users are reading or writing (at most a second
    /// per stripe, so it always moves on), as ZFS's scrub yields to I/O.
    func yieldToUserIO() {
        environment.jobs.yieldToUsers { [environment, maintenance] in
            environment.monotonicMilliseconds() &- maintenance.lastUserIOMilliseconds < 50
        }
    }

    public var scrubStatus: ProgressStatus {
        let live = maintenance.scrubber
        let record = store.lock.withLock { store.superblock.scrub }
        var st = live?.status
            ?? ProgressStatus(running: false, progress: 0, bytesPerSecond: 0, etaSeconds: nil,
                              repaired: record?.lastResult?.repaired ?? 0, unrecoverable: record?.lastResult?.unrecoverable ?? 0,
                              mode: record?.lastResult?.mode, problems: record?.lastResult?.problems)
        st.lastFinishedAt = record?.lastFinishedAt
        st.lastResult = record?.lastResult
        st.resumesAfter = st.running ? nil : record?.checkpoint?.lastPath
        if configuration.scrubIntervalSeconds > 0 {
            st.nextDueAt = (record?.lastFinishedAt ?? currentSuperblock.createdAt) + configuration.scrubIntervalSeconds
        }
        return st
    }
}
