import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Rebuilds one role onto a new member while the array keeps serving: the
/// tree is walked in sorted depth-first order, each file's chunks for that
/// role are reconstructed from the others a few stripes at a time under the
/// file's lock (user I/O interleaves between batches), and progress is
/// checkpointed in the superblocks so a remount resumes where it stopped.
/// Only data that exists is rebuilt. New writes reach the member as soon as
/// it is attached, so what the walk has done stays current.
public final class Rebuilder: @unchecked Sendable {
    public let role: Int
    public let target: Member
    public let targetUUID: String
    /// raidctl replace: the role's member keeps serving; chunks are copied
    /// from it (rebuilt from the others where it fails) to the replacement.
    public let replacing: Bool
    private unowned let array: RAIDArray
    private let rateBytesPerSecond: Double?
    private let lock = Mutex()
    private var bytesDoneValue: UInt64
    private var bytesTotalValue: UInt64 = 0
    private let bytesAtStart: UInt64
    private let startedAt = Date()
    private var runningValue = true
    private var stopRequested = false
    private var missedDuringWalk = false
    private var completed = Set<UInt64>()
    private var resumeAfter: [String]?
    private var lastPath = ""
    /// bytesDone when `lastPath` was finished: what a checkpoint records.
    private var lastPathBytes: UInt64 = 0
    private var lastCheckpoint = Date()
    static let stripesPerBatch: UInt64 = 16

    init(array: RAIDArray, role: Int, target: Member, targetUUID: String, rateBytesPerSecond: Double?,
         resume: RebuildCheckpoint?, replacing: Bool = false) {
        self.array = array
        self.replacing = replacing
        self.role = role
        self.target = target
        self.targetUUID = targetUUID
        self.rateBytesPerSecond = rateBytesPerSecond
        if let r = resume, r.role == role, r.memberUUID == targetUUID {
            resumeAfter = Rebuilder.components(r.lastPath)
            lastPath = r.lastPath
            bytesDoneValue = r.bytesDone
            lastPathBytes = r.bytesDone
        } else {
            bytesDoneValue = 0
        }
        bytesAtStart = bytesDoneValue
    }

    public var status: ProgressStatus {
        lock.withLock {
            let elapsed = max(0.001, Date().timeIntervalSince(startedAt))
            let rate = Double(bytesDoneValue - bytesAtStart) / elapsed
            let total = max(bytesTotalValue, bytesDoneValue)
            let remaining = Double(total - bytesDoneValue)
            return ProgressStatus(running: runningValue,
                                  progress: total == 0 ? (runningValue ? 0 : 1) : Double(bytesDoneValue) / Double(total),
                                  bytesPerSecond: rate, etaSeconds: rate > 0 ? remaining / rate : nil,
                                  role: role, target: target.name)
        }
    }

    public var isRunning: Bool { lock.withLock { runningValue } }

    func stop() { lock.withLock { stopRequested = true } }
    /// Asked to stop (unmount), or the target no longer holds the role
    /// (it failed in turn): a later rebuild takes the next spare.
    private var shouldStop: Bool { lock.withLock { stopRequested } || !array.isCurrentTarget(self) }

    /// A namespace change could not be applied to the member being rebuilt
    /// (its parent was not there yet): walk again at the end.
    func missed() { lock.withLock { missedDuringWalk = true } }

    static func components(_ path: String) -> [String] { path.split(separator: "/").map(String.init) }

    func start() {
        let t = Thread { [self] in run() }
        t.name = "raidfs-rebuild-\(role)"
        t.start()
    }

    private func run() {
        array.eventLog.record(ArrayEvent(kind: "rebuild-started", member: role,
                                         message: "rebuilding role \(role) onto \(target.name)\(resumeAfter != nil ? " (resuming after \(lastPath))" : "")"))
        do {
            let total = try array.fileBytes { shouldStop }
            lock.withLock { bytesTotalValue = total }
            var pass = 0
            repeat {
                lock.withLock { missedDuringWalk = false }
                try walk()
                resumeAfter = nil
                pass += 1
            } while lock.withLock({ missedDuringWalk }) && pass < 8 && !shouldStop
            if shouldStop {
                // Unmounting: leave a checkpoint so the next mount resumes here.
                if !lastPath.isEmpty && !replacing && lock.withLock({ stopRequested }) {
                    array.checkpointRebuild(RebuildCheckpoint(role: role, memberUUID: targetUUID, lastPath: lastPath, bytesDone: lastPathBytes))
                }
                lock.withLock { runningValue = false }
                return
            }
            lock.withLock { runningValue = false; bytesDoneValue = max(bytesDoneValue, bytesTotalValue) }
            if replacing { array.completeReplacement(self) } else { array.finishRebuild(self) }
        } catch {
            lock.withLock { runningValue = false }
            array.eventLog.record(ArrayEvent(kind: "rebuild-failed", member: role, message: "rebuild onto \(target.name) stopped: \(error)"))
        }
    }


    /// One pass over the namespace, in the walk's order: a checkpoint's
    /// lastPath covers every file that sorts before it.
    private func walk() throws {
        try array.walk { path, type in
            if shouldStop { return false }
            // Resuming: files up to and including the checkpoint are done.
            let done = resumeAfter.map { !$0.lexicographicallyPrecedes(Rebuilder.components(path)) } ?? false
            guard let st = try? array.getattr(path) else { return true }
            switch type {
            case UInt8(DT_DIR):
                ignoreExists { try target.mkdir(path, mode: st.st_mode & 0o7777) }
                copyAttributes(path, st)
            case UInt8(DT_LNK):
                if let t = try? array.readlink(path) { ignoreExists { try target.symlink(target: t, at: path) } }
                try? target.chown(path, uid: st.st_uid, gid: st.st_gid)
            case UInt8(DT_REG):
                if done { return true }
                guard try rebuildFile(path, st) else { return false }
            default:
                ignoreExists { try target.mknod(path, mode: st.st_mode, device: st.st_rdev) }
                copyAttributes(path, st)
            }
            lastPath = path
            lastPathBytes = lock.withLock { bytesDoneValue }
            checkpointIfDue()
            return true
        }
    }

    private func ignoreExists(_ body: () throws -> Void) {
        do { try body() } catch let e as FSError where e.errno == EEXIST {} catch {
            missed()
        }
    }

    private func copyAttributes(_ path: String, _ st: stat) {
        try? target.chmod(path, mode: st.st_mode & 0o7777)
        try? target.chown(path, uid: st.st_uid, gid: st.st_gid)
        try? target.utimens(path, (st.st_atim, st.st_mtim))
    }

    /// False when stopped before the file was finished.
    private func rebuildFile(_ path: String, _ st: stat) throws -> Bool {
        guard let af = try? array.open(path) else { return true }   // deleted meanwhile
        defer { array.release(af) }
        let attached = { self.replacing ? af.isShadowAttached(role: self.role) : af.isAttached(role: self.role) }
        if lock.withLock({ completed.contains(af.fileId) }) && af.lock.withReadLock(attached) { return true }
        try af.lock.withWriteLock {
            if !attached() {
                let f = try target.open(path, flags: O_CREAT | O_RDWR, mode: st.st_mode & 0o7777)
                if replacing { af.attachShadow(role: role, f) } else { af.attach(role: role, f) }
                try? target.chown(path, uid: st.st_uid, gid: st.st_gid)
            }
            try af.writeHeadersLocked()
        }
        var stripe: UInt64 = 0
        while !shouldStop {
            let (finished, bytes): (Bool, UInt64) = try array.workspaces.withItem { ws in
                try af.lock.withWriteLock {
                    let count = af.stripeCount
                    if stripe >= count {
                        try (replacing ? af.shadow(role) : af.writable(role))?.truncate(to: array.layout.fileBytes(stripeCount: count))
                        return (true, 0)
                    }
                    let end = min(count, stripe + Rebuilder.stripesPerBatch)
                    for s in stripe..<end {
                        if replacing { af.copyChunkToReplacement(role: role, stripe: s, ws: ws) }
                        else { af.rebuildChunk(role: role, stripe: s, ws: ws) }
                    }
                    let sb = UInt64(array.geometry.stripeDataBytes)
                    let bytes = min(end * sb, af.size) - min(stripe * sb, af.size)
                    stripe = end
                    return (false, bytes)
                }
            }
            if finished { break }
            lock.withLock { bytesDoneValue += bytes }
            throttle()
        }
        if shouldStop { return false }
        try? target.utimens(path, (st.st_atim, st.st_mtim))
        lock.withLock { _ = completed.insert(af.fileId) }
        return true
    }

    private func throttle() {
        pace(bytes: lock.withLock { bytesDoneValue - bytesAtStart }, since: startedAt, rate: rateBytesPerSecond)
    }

    private func checkpointIfDue() {
        guard Date().timeIntervalSince(lastCheckpoint) >= 2 else { return }
        lastCheckpoint = Date()
        array.checkpointRebuild(RebuildCheckpoint(role: role, memberUUID: targetUUID, lastPath: lastPath, bytesDone: lastPathBytes))
    }
}

extension ArrayFile {
    /// Copies the chunk `role` holds in `stripe` to its replacement, verified;
    /// rebuilt from the other members where the role's own copy fails.
    func copyChunkToReplacement(role: Int, stripe: UInt64, ws: StripeWorkspace) {
        let i = array.geometry.chunkIndex(stripe: stripe, member: role)
        if !readChunk(role: role, stripe: stripe, into: ws.chunks[i].bytes) {
            var have = Set<Int>()
            do {
                try recover(stripe: stripe, lost: [i], have: &have, ws: ws, heal: false)
            } catch {
                array.abandonReplacement(role: role, "stripe \(stripe) of \(displayPath) cannot be copied: \(error)")
                return
            }
        }
        writeShadowChunk(role: role, stripe: stripe, from: ws.chunks[i].bytes)
    }

    /// Reconstructs the chunk `role` holds in `stripe` from the others and
    /// writes it there. Beyond redundancy the entry is poisoned, so the chunk
    /// reads as damaged (EIO) rather than as zeros.
    func rebuildChunk(role: Int, stripe: UInt64, ws: StripeWorkspace) {
        let i = array.geometry.chunkIndex(stripe: stripe, member: role)
        var have = Set<Int>()
        do {
            try recover(stripe: stripe, lost: [i], have: &have, ws: ws, heal: false)
            writeChunk(role: role, stripe: stripe, from: ws.chunks[i].bytes)
        } catch {
            array.eventLog.record(ArrayEvent(kind: "unrecoverable", member: role, path: displayPath,
                                             message: "stripe \(stripe) cannot be rebuilt: \(error)"))
            guard let f = writable(role) else { return }
            var poison = UInt64(1).littleEndian
            _ = try? withUnsafeBytes(of: &poison) {
                try f.write(from: $0.baseAddress!, count: 8, at: array.layout.entryOffset(stripe: stripe))
            }
        }
    }
}

/// Keeps background work (rebuild, scrub) at `rate` bytes per second:
/// sleeps while `bytes` done since `start` are ahead of it (at most a second
/// at a time). Unthrottled when `rate` is nil.
func pace(bytes: UInt64, since start: Date, rate: Double?) {
    guard let rate, rate > 0 else { return }
    let ahead = Double(bytes) / rate - Date().timeIntervalSince(start)
    if ahead > 0 { usleep(useconds_t(min(ahead, 1.0) * 1_000_000)) }
}

extension RAIDArray {
    /// The bytes of every regular file: the total a rebuild or scrub
    /// measures its progress against.
    func fileBytes(shouldStop: () -> Bool) throws -> UInt64 {
        var total: UInt64 = 0
        try walk { path, type in
            if type == UInt8(DT_REG), let st = try? getattr(path) { total += UInt64(st.st_size) }
            return !shouldStop()
        }
        return total
    }
}
