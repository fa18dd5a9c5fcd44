import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A scrub of a mounted array (md's `check`/`repair` sync actions, ZFS's
/// scrub): every stripe of every file is read, each chunk verified against
/// its checksum and parity against the data, one stripe at a time under the
/// file's lock so user I/O interleaves. In repair mode what redundancy can
/// restore is rewritten (checksums say which chunk is wrong, so unlike md's
/// repair it never guesses); in check mode it is only counted and reported.
public final class Scrubber: @unchecked Sendable {
    public let repair: Bool
    private unowned let array: RAIDArray
    private let rateBytesPerSecond: Double?
    private let lock = Mutex()
    private let startedAt = Date()
    private var bytesDone: UInt64 = 0
    private var bytesTotal: UInt64 = 0
    private var running = true
    private var stopRequested = false
    private var stopped = false
    private var problems = 0
    private var repaired = 0
    private var unrecoverable = 0

    init(array: RAIDArray, repair: Bool, rateBytesPerSecond: Double?) {
        self.array = array
        self.repair = repair
        self.rateBytesPerSecond = rateBytesPerSecond
    }

    /// Progress, and what was found (kept after the scrub ends, as
    /// `zpool status` shows the last scrub).
    public var status: ProgressStatus {
        lock.withLock {
            let elapsed = max(0.001, Date().timeIntervalSince(startedAt))
            let rate = Double(bytesDone) / elapsed
            let total = max(bytesTotal, bytesDone)
            return ProgressStatus(running: running,
                                  progress: total == 0 ? (running ? 0 : 1) : Double(bytesDone) / Double(total),
                                  bytesPerSecond: rate,
                                  etaSeconds: running && rate > 0 ? Double(total - bytesDone) / rate : (running ? nil : 0),
                                  repaired: repaired, unrecoverable: unrecoverable,
                                  mode: repair ? "repair" : "check", problems: problems, stopped: stopped)
        }
    }

    public var isRunning: Bool { lock.withLock { running } }

    func stop() { lock.withLock { stopRequested = true } }
    private var shouldStop: Bool { lock.withLock { stopRequested } }

    func start() {
        let t = Thread { [self] in run() }
        t.name = "raidfs-scrub"
        t.start()
    }

    private func run() {
        let mode = repair ? "repair" : "check"
        array.eventLog.record(ArrayEvent(kind: "scrub-started", message: "scrub (\(mode)) started"))
        do {
            let total = try array.fileBytes { shouldStop }
            lock.withLock { bytesTotal = total }
            try array.walk { path, type in
                if shouldStop { return false }
                if type == UInt8(DT_REG) { try scrubFile(path) }
                return true
            }
        } catch {
            array.eventLog.record(ArrayEvent(kind: "scrub-failed", message: "scrub (\(mode)) stopped: \(error)"))
        }
        let (p, r, u, b, s) = lock.withLock { () -> (Int, Int, Int, UInt64, Bool) in
            running = false
            stopped = stopRequested
            return (problems, repaired, unrecoverable, bytesDone, stopRequested)
        }
        let seconds = Date().timeIntervalSince(startedAt)
        array.eventLog.record(ArrayEvent(
            kind: s ? "scrub-stopped" : "scrub-finished",
            message: String(format: "scrub (%@) %@ after %.1f s: %llu bytes checked, %d problems, %d repaired, %d beyond redundancy",
                            mode, s ? "stopped" : "finished", seconds, b, p, r, u)))
    }

    /// Scrubs one file a stripe at a time; a file removed meanwhile is skipped.
    private func scrubFile(_ path: String) throws {
        let af: ArrayFile
        do { af = try array.open(path) } catch { return }
        defer { array.release(af) }
        let g = array.geometry
        let stripeBytes = UInt64(g.stripeDataBytes)
        var stripe: UInt64 = 0
        while stripe < af.lock.withReadLock({ af.stripeCount }) {
            if shouldStop { return }
            let result = try af.checkStripe(stripe, mode: repair ? .repair : .check)
            let start = stripe * stripeBytes
            for p in result.problems {
                let (offset, chunk) = g.locate(p, stripe: stripe)
                array.eventLog.record(ArrayEvent(
                    kind: result.repaired ? "scrub-repaired" : "scrub-mismatch", member: p.role, path: path,
                    message: "offset \(offset) (stripe \(stripe)): \(p.kind.rawValue) in \(chunk) on \(array.memberName(p.role))\(result.repaired ? ", repaired" : "")"))
            }
            if result.unrecoverable {
                array.eventLog.record(ArrayEvent(kind: "unrecoverable", path: path,
                                                 message: "offset \(start) (stripe \(stripe)): more chunks lost than redundancy covers"))
            }
            let size = af.currentSize()
            let bytes = min(size, start + stripeBytes) - min(size, start)
            lock.withLock {
                problems += result.problems.count
                if result.repaired { repaired += result.problems.count }
                if result.unrecoverable { unrecoverable += 1 }
                bytesDone += bytes
            }
            pace(bytes: lock.withLock { bytesDone }, since: startedAt, rate: rateBytesPerSecond)
            stripe += 1
        }
    }
}

extension RAIDArray {
    /// `raidctl scrub`: starts a scrub (repair or check) of the mounted array.
    public func startScrub(repair: Bool) throws -> String {
        guard !readOnly || !repair else { throw FSError(EROFS, "array is mounted read-only: use scrub --check") }
        try requireNotFailed("scrub")
        return try stateLock.withLock {
            if rebuilderSlot?.isRunning == true {
                throw FSError(EBUSY, "a rebuild is running; scrub after it finishes (it reads every stripe too)")
            }
            if scrubberSlot?.isRunning == true { throw FSError(EBUSY, "a scrub is already running; stop it first") }
            let s = Scrubber(array: self, repair: repair, rateBytesPerSecond: rebuildRateBytesPerSecond)
            scrubberSlot = s
            s.start()
            return "scrub (\(repair ? "repair" : "check")) started"
        }
    }

    /// `raidctl scrub --stop`.
    public func stopScrub() throws -> String {
        guard let s = stateLock.withLock({ scrubberSlot }), s.isRunning else {
            throw FSError.invalid("no scrub is running")
        }
        s.stop()
        while s.isRunning { usleep(10_000) }
        return "scrub stopped"
    }

    public var scrubStatus: ProgressStatus {
        stateLock.withLock { scrubberSlot }?.status
            ?? ProgressStatus(running: false, progress: 0, bytesPerSecond: 0, etaSeconds: nil, repaired: 0, unrecoverable: 0)
    }
}
