import RAIDBase
import Foundation

// The status and event types the control protocol carries, with the JSON
// field names DESIGN.md gives them. The engine reports in these types, keeps
// its event log and scrub history in them, and raidctl renders them.

/// What a scrub found.
public struct ScrubResult: Codable, Equatable, Sendable {
    public var mode: String
    public var bytes: UInt64
    public var problems: Int
    public var repaired: Int
    public var unrecoverable: Int

    public init(mode: String, bytes: UInt64, problems: Int, repaired: Int, unrecoverable: Int) {
        self.mode = mode
        self.bytes = bytes
        self.problems = problems
        self.repaired = repaired
        self.unrecoverable = unrecoverable
    }
}

/// One thing that happened to the array, as `raidctl events` shows it.
/// What an event is about, with its wire name (DESIGN.md lists them):
/// the one place they are spelled.
public enum EventKind: String, CaseIterable, Sendable {
    case checksumError = "checksum-error"
    case countersCleared = "counters-cleared"
    case faultInjected = "fault-injected"
    case faultsCleared = "faults-cleared"
    case memberDegraded = "member-degraded"
    case memberFailed = "member-failed"
    case memberRemoved = "member-removed"
    case memberReplaced = "member-replaced"
    case namespaceRepaired = "namespace-repaired"
    case orphansReclaimed = "orphans-reclaimed"
    case readError = "read-error"
    case rebuildFailed = "rebuild-failed"
    case rebuildFinished = "rebuild-finished"
    case rebuildStarted = "rebuild-started"
    case repaired
    case replaceFailed = "replace-failed"
    case replaceResumed = "replace-resumed"
    case replaceStarted = "replace-started"
    case scrubFailed = "scrub-failed"
    case scrubFinished = "scrub-finished"
    case scrubMismatch = "scrub-mismatch"
    case scrubRepaired = "scrub-repaired"
    case scrubResumed = "scrub-resumed"
    case scrubScheduled = "scrub-scheduled"
    case scrubStarted = "scrub-started"
    case scrubStopped = "scrub-stopped"
    case spareActivated = "spare-activated"
    case spareAdded = "spare-added"
    case spareRemoved = "spare-removed"
    case spareUnusable = "spare-unusable"
    case unrecoverable
    case writeError = "write-error"
}

public struct ArrayEvent: Codable, Sendable, Equatable {
    public var time: Double
    /// An `EventKind`'s wire name: kept a string, so that a newer
    /// daemon's kinds still reach an older raidctl.
    public var kind: String
    public var member: Int?
    public var path: String?
    public var message: String

    public init(time: Double = 0, kind: EventKind, member: Int? = nil, path: String? = nil, message: String) {
        self.time = time
        self.kind = kind.rawValue
        self.member = member
        self.path = path
        self.message = message
    }

    /// The kind, if this build knows it.
    public var eventKind: EventKind? { EventKind(rawValue: kind) }

    public var line: String {
        let ts = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: time))
        return "\(ts) \(kind)\(member.map { " member \($0)" } ?? "")\(path.map { " \($0)" } ?? ""): \(message)"
    }
}

public struct ProgressStatus: Codable, Sendable, Equatable {
    public var running: Bool
    public var progress: Double
    public var bytesPerSecond: Double
    public var etaSeconds: Double?
    public var repaired: Int?
    public var unrecoverable: Int?
    public var role: Int?
    public var target: String?
    /// Scrub only: "repair" or "check", the problems found (repaired or
    /// not), and whether it was stopped before the end.
    public var mode: String?
    public var problems: Int?
    public var stopped: Bool?
    /// Scrub only: when the last complete scrub ended (seconds since the
    /// epoch) and what it found; when the next scheduled one is due; and,
    /// when one was cut short, the path it resumes after.
    public var lastFinishedAt: Double?
    public var lastResult: ScrubResult?
    public var nextDueAt: Double?
    public var resumesAfter: String?

    public init(running: Bool, progress: Double, bytesPerSecond: Double, etaSeconds: Double?,
                repaired: Int? = nil, unrecoverable: Int? = nil, role: Int? = nil, target: String? = nil,
                mode: String? = nil, problems: Int? = nil, stopped: Bool? = nil) {
        self.running = running
        self.progress = progress
        self.bytesPerSecond = bytesPerSecond
        self.etaSeconds = etaSeconds
        self.repaired = repaired
        self.unrecoverable = unrecoverable
        self.role = role
        self.target = target
        self.mode = mode
        self.problems = problems
        self.stopped = stopped
    }

    enum CodingKeys: String, CodingKey {
        case running, progress, bytesPerSecond, etaSeconds, repaired, unrecoverable, role, target, mode, problems, stopped
        case lastFinishedAt, lastResult, nextDueAt, resumesAfter
    }

    /// etaSeconds is always present (null when unknown), as DESIGN.md lists it.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(running, forKey: .running)
        try c.encode(progress, forKey: .progress)
        try c.encode(bytesPerSecond, forKey: .bytesPerSecond)
        if let eta = etaSeconds { try c.encode(eta, forKey: .etaSeconds) } else { try c.encodeNil(forKey: .etaSeconds) }
        try c.encodeIfPresent(repaired, forKey: .repaired)
        try c.encodeIfPresent(unrecoverable, forKey: .unrecoverable)
        try c.encodeIfPresent(role, forKey: .role)
        try c.encodeIfPresent(target, forKey: .target)
        try c.encodeIfPresent(mode, forKey: .mode)
        try c.encodeIfPresent(problems, forKey: .problems)
        try c.encodeIfPresent(stopped, forKey: .stopped)
        try c.encodeIfPresent(lastFinishedAt, forKey: .lastFinishedAt)
        try c.encodeIfPresent(lastResult, forKey: .lastResult)
        try c.encodeIfPresent(nextDueAt, forKey: .nextDueAt)
        try c.encodeIfPresent(resumesAfter, forKey: .resumesAfter)
    }
}

/// What the daemon asked of one member since it started, system call by
/// system call (as `strace -c` would count them on its threads), by kind;
/// `raidctl iostat` shows the rates. A directory listing counts as one
/// read of the directory whatever its length.
public struct MemberIOStatus: Codable, Sendable, Equatable {
    /// open and openat.
    public var opens: UInt64 = 0
    /// pread and read, and the bytes they returned.
    public var reads: UInt64 = 0
    public var readBytes: UInt64 = 0
    /// pwrite and write, and the bytes they wrote.
    public var writes: UInt64 = 0
    public var writeBytes: UInt64 = 0
    /// fsync, fdatasync and syncfs.
    public var flushes: UInt64 = 0
    /// The xattr calls: the engine's own attribute and the user's.
    public var xattrs: UInt64 = 0
    /// rename and renameat2.
    public var renames: UInt64 = 0
    /// Every other call: stat, close, mkdir, unlink, link, truncate,
    /// fallocate, utimensat, chmod, chown, directory reads...
    public var other: UInt64 = 0
    /// The time spent in them all, in microseconds.
    public var latencyMicroseconds: UInt64 = 0
    /// The calls by time taken: entry i counts those that took under 2^i
    /// microseconds (the last entry, all slower ones).
    public var latencyHistogram: [UInt64] = []

    public init() {}

    public var operations: UInt64 { opens + reads + writes + flushes + xattrs + renames + other }

    /// The counts of `self` less those of `earlier` (a sample taken before).
    public func since(_ earlier: MemberIOStatus) -> MemberIOStatus { combined(with: earlier, &-) }

    /// The sum of `self` and `other`'s counts.
    public func adding(_ other: MemberIOStatus) -> MemberIOStatus { combined(with: other, &+) }

    /// Every count of `self` and of `o`, field by field (histogram entry by
    /// entry, a missing entry being 0), through `op`.
    private func combined(with o: MemberIOStatus, _ op: (UInt64, UInt64) -> UInt64) -> MemberIOStatus {
        var d = MemberIOStatus()
        for k in [\MemberIOStatus.opens, \.reads, \.readBytes, \.writes, \.writeBytes, \.flushes, \.xattrs, \.renames,
                  \.other, \.latencyMicroseconds] {
            d[keyPath: k] = op(self[keyPath: k], o[keyPath: k])
        }
        func entry(_ h: [UInt64], _ i: Int) -> UInt64 { i < h.count ? h[i] : 0 }
        d.latencyHistogram = (0..<max(latencyHistogram.count, o.latencyHistogram.count)).map {
            op(entry(latencyHistogram, $0), entry(o.latencyHistogram, $0))
        }
        return d
    }

    /// The upper bound, in microseconds, of the slowest calls' bucket: nil
    /// when there were none (the last bucket has none: it is reported as
    /// its lower bound).
    public var highLatencyMicroseconds: UInt64? {
        guard let top = latencyHistogram.lastIndex(where: { $0 > 0 }) else { return nil }
        return top == latencyHistogram.count - 1 ? UInt64(1) << UInt64(top - 1) : UInt64(1) << UInt64(top)
    }
}

public struct MemberStatus: Codable, Sendable, Equatable {
    public var index: Int
    public var path: String
    public var state: String
    public var readErrors: UInt64
    public var writeErrors: UInt64
    public var checksumErrors: UInt64
    /// Faults injected with `raidctl inject` (absent when none).
    public var faults: [String]?
    /// Why the member is degraded or faulty (absent when active and healthy,
    /// or when nothing recorded why).
    public var reason: String?
    /// What the daemon asked of the member since it started (absent for a
    /// member not present, or one that counts nothing).
    public var io: MemberIOStatus?

    public init(index: Int, path: String, state: String, readErrors: UInt64, writeErrors: UInt64,
                checksumErrors: UInt64, faults: [String]?, reason: String? = nil, io: MemberIOStatus? = nil) {
        self.index = index
        self.io = io
        self.path = path
        self.state = state
        self.reason = reason
        self.readErrors = readErrors
        self.writeErrors = writeErrors
        self.checksumErrors = checksumErrors
        self.faults = faults
    }
}

public struct ArrayStatus: Codable, Sendable, Equatable {
    /// The JSON's version (docs/operations.md): a field's meaning never
    /// changes within one; fields may be added.
    public static let formatVersion = 1
    public var version = ArrayStatus.formatVersion
    public var arrayUUID: String
    public var level: Int
    public var chunkSizeBytes: Int
    public var state: String
    public var events: UInt64
    public var members: [MemberStatus]
    public var spares: [String]
    public var rebuild: ProgressStatus
    public var scrub: ProgressStatus

    public init(arrayUUID: String, level: Int, chunkSizeBytes: Int, state: String, events: UInt64,
                members: [MemberStatus], spares: [String], rebuild: ProgressStatus, scrub: ProgressStatus) {
        self.arrayUUID = arrayUUID
        self.level = level
        self.chunkSizeBytes = chunkSizeBytes
        self.state = state
        self.events = events
        self.members = members
        self.spares = spares
        self.rebuild = rebuild
        self.scrub = scrub
    }

    /// `raidctl status` exit code, as `mdadm --detail --test`.
    public var exitCode: Int32 {
        switch state {
        case "clean": return 0
        case "failed": return 2
        default: return 1
        }
    }
}
