import Foundation
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// How an array is run, fixed when it is assembled: the mount options
/// that concern the engine.
public struct ArrayConfiguration: Sendable {
    /// `-o ro`: nothing is written to any member.
    public var readOnly = false
    /// The write-intent log (off only in tests that measure without it).
    public var intentLog = true
    /// `-o force`: a degraded assembly takes back the freshest stale members.
    public var force = false
    /// `-o rebuild_rate=`: bytes per second, nil for unthrottled.
    public var rebuildRateBytesPerSecond: Double? = nil
    /// `-o scrub_interval=`: a scrub starts by itself once the last complete
    /// one is older than this (seconds; 0 never). 7 days by default.
    public var scrubIntervalSeconds: Double = 7 * 86_400
    /// `-o scrub_rate=`: bytes per second, nil for unthrottled.
    public var scrubRateBytesPerSecond: Double? = nil
    /// `-o max_read_errors=N`: read and checksum errors one member may have
    /// within an hour before it is degraded and a spare, if any, replaces
    /// it (md's default is 20); 0 never.
    public var maxReadErrorsPerHour = 20
    /// Where the array is mounted (the daemon's): a spare must not live there.
    public var mountpoint: String? = nil

    public init(readOnly: Bool = false, intentLog: Bool = true, force: Bool = false) {
        self.readOnly = readOnly
        self.intentLog = intentLog
        self.force = force
    }
}

/// What every stripe operation shares, made once from the geometry: the
/// codec, the member-file layout, an all-zero stripe and its sector CRC,
/// the pool of stripe workspaces, and the budget of the open files'
/// checksum caches. Immutable; the pool and the budget lock themselves.
final class StripeResources: Sendable {
    let geometry: Geometry
    let codec: Codec
    let layout: MemberFileLayout
    /// CRC32C of an all-zero 4 KiB sector: what a never-written sector must hash to.
    let zeroSectorCRC: UInt32
    /// A read-only all-zero buffer of one stripe's data.
    let zeroStripe: AlignedBuffer
    let workspaces: Pool<StripeWorkspace>
    /// What the open files' checksum table caches may hold (EntryCache).
    let entryCacheBudget: EntryCacheBudget

    init(_ sb: Superblock) {
        let g = sb.geometry
        geometry = g
        codec = Codec(level: sb.level, dataCount: g.dataChunkCount, parityCount: g.parityChunkCount)
        layout = MemberFileLayout(chunkSizeBytes: sb.chunkSizeBytes, metadataInFile: sb.metadata == .file)
        zeroStripe = AlignedBuffer(count: g.stripeDataBytes)
        zeroSectorCRC = crc32c(zeroStripe.pointer, count: MemberFileLayout.sectorBytes)
        workspaces = Pool(keepMax: 16) { StripeWorkspace(geometry: g) }
        entryCacheBudget = EntryCacheBudget(bytes: 32 << 20, tableBytes: Int(layout.tableBytes))
    }
}

/// The membership in force and the superblock that records it, and the
/// two locks that keep them: `writeLock` held by every membership change
/// and superblock write (MembershipChanges.swift), one at a time; `lock`
/// (innermost but for `MemberHealth.lock`) over the superblock and the
/// publishing of a membership snapshot.
// @unchecked Sendable: `superblock` changes only under `lock`; `roles` publishes under it.
final class MembershipStore: @unchecked Sendable {
    let arrayUUID: String
    let lock = Lock()
    let writeLock = Lock()
    /// Every role's state, member and generation, the replacements and the
    /// spares: changed only through `commitMembership` and
    /// `forceMembership` (MembershipChanges.swift).
    let roles: RoleTable
    /// The superblock as last written (under `lock`).
    var superblock: Superblock

    init(_ sb: Superblock, roles: RoleTable) {
        arrayUUID = sb.arrayUUID
        superblock = sb
        self.roles = roles
    }
}

/// Error counters and health of one role, as `status` reports them; kept
/// in the superblocks until `raidctl clear` or a new member takes the role.
public struct MemberCounters: Codable, Sendable, Equatable {
    public var readErrors: UInt64 = 0
    public var writeErrors: UInt64 = 0
    public var checksumErrors: UInt64 = 0
    public var repairedChunks: UInt64 = 0
    /// Why the member is degraded (its read and checksum errors passed the
    /// budget), nil while it is healthy. A degraded member keeps serving:
    /// every read is verified, and it takes every write.
    public var degraded: String? = nil
    /// Why the role's member was marked faulty (while it is).
    public var faulted: String? = nil
}

/// Every role's error counters and error budget, under a lock of its own,
/// the innermost of the array's: taken under `MembershipStore.lock` (a
/// change that fails a member says why in its counters), never the
/// other way round, and nothing is called while it is held.
// @unchecked Sendable: every field changes only under `lock`.
final class MemberHealth: @unchecked Sendable {
    private let lock = Lock()
    private var counters: [MemberCounters]
    /// When each role's read and checksum errors of the last hour happened.
    private var recentErrorTimes: [[Double]]
    /// The crash resync is running: the checksum errors it finds are
    /// writes the crash tore, not the media's fault.
    private var resyncing = false

    init(recorded: [MemberCounters]?, memberCount: Int) {
        // The counters persist across remounts, as ZFS's do until `zpool clear`.
        counters = recorded?.count == memberCount ? recorded! : Array(repeating: MemberCounters(), count: memberCount)
        recentErrorTimes = Array(repeating: [], count: memberCount)
    }

    func counters(_ role: Int) -> MemberCounters { lock.withLock { counters[role] } }
    var all: [MemberCounters] { lock.withLock { counters } }

    /// Changes one role's counters.
    func update(_ role: Int, _ change: (inout MemberCounters) -> Void) { lock.withLock { change(&counters[role]) } }

    /// A checksum error counted; whether the crash resync is running.
    func countChecksumError(_ role: Int) -> Bool {
        lock.withLock {
            counters[role].checksumErrors += 1
            return resyncing
        }
    }

    func setResyncing(_ on: Bool) { lock.withLock { resyncing = on } }

    /// One more read or checksum error on `role` at `now`: how many it has
    /// had within the hour, keeping no more stamps than `budget` needs (an
    /// error storm must not grow the list).
    func spend(_ role: Int, now: Double, budget: Int) -> Int {
        lock.withLock {
            recentErrorTimes[role].append(now)
            recentErrorTimes[role].removeAll { now - $0 > 3600 }
            if recentErrorTimes[role].count > budget + 1 { recentErrorTimes[role].removeFirst(recentErrorTimes[role].count - budget - 1) }
            return recentErrorTimes[role].count
        }
    }

    /// Marks `role` degraded for `reason`; false if it was already.
    func markDegraded(_ role: Int, reason: String) -> Bool {
        lock.withLock {
            guard counters[role].degraded == nil else { return false }
            counters[role].degraded = reason
            return true
        }
    }

    /// The counters and the error budget start over: a new member took the
    /// role, or `raidctl clear`.
    func reset(_ role: Int) {
        lock.withLock {
            counters[role] = MemberCounters()
            recentErrorTimes[role] = []
        }
    }
}

/// The background work's slots: the rebuild (or replacement) in progress,
/// the running or last scrub, the lock that serialises starting a rebuild,
/// the monitor's stop flag, and when a user last read or wrote (a scrub
/// yields while that is recent). `lock` guards the slots and the flag and
/// calls nothing while held.
// @unchecked Sendable: the slots and the flag change only under `lock`; the stamp is an atomic.
final class MaintenanceSlots: @unchecked Sendable {
    private let lock = Lock()
    private var rebuilderSlot: Rebuilder?
    private var scrubberSlot: Scrubber?
    private var stopped = false
    /// Serialises starting rebuilds: a failure, the monitor and `add` may race.
    let startLock = Lock()
    /// Monotonic milliseconds of the last user read or write, relaxed.
    let userIOStamp: UnsafeMutablePointer<UInt64>

    init() {
        userIOStamp = .allocate(capacity: 1)
        userIOStamp.initialize(to: 0)
    }

    deinit { userIOStamp.deallocate() }

    var rebuilder: Rebuilder? {
        get { lock.withLock { rebuilderSlot } }
        set { lock.withLock { rebuilderSlot = newValue } }
    }
    var scrubber: Scrubber? { lock.withLock { scrubberSlot } }
    /// Either is running.
    var busy: Bool { lock.withLock { rebuilderSlot?.isRunning == true || scrubberSlot?.isRunning == true } }

    /// Makes `s` the scrub, unless a rebuild or another scrub is running.
    func takeScrub(_ s: Scrubber) throws {
        try lock.withLock {
            if rebuilderSlot?.isRunning == true {
                throw FSError(EBUSY, "a rebuild is running; scrub after it finishes (it reads every stripe too)")
            }
            if scrubberSlot?.isRunning == true { throw FSError(EBUSY, "a scrub is already running; stop it first") }
            scrubberSlot = s
        }
    }

    /// Set when the unmount begins: no rebuild or scrub starts after it
    /// (a member failing during the unmount would otherwise start one,
    /// which would write "unclean" over the clean shutdown).
    var isStopped: Bool { lock.withLock { stopped } }
    func stop() { lock.withLock { stopped = true } }

    @inline(__always)
    func noteUserIO(_ milliseconds: UInt64) { raidfs_store_relaxed_u64(userIOStamp, milliseconds) }
    var lastUserIOMilliseconds: UInt64 { raidfs_load_relaxed_u64(userIOStamp) }
}

/// What the members' superblocks and intent logs said at assembly must be
/// repaired before anything is served: set by the array's init, consumed
/// by `markInUse` (one thread, before the mount serves).
public struct RecoveryPlan: Sendable {
    /// Regions the members' intent logs named: resynced by `markInUse`.
    public internal(set) var pendingResync: [(IntentLog.Region, String)] = []
    public internal(set) var pendingResyncAll = false
    /// Directories the intent log named: every member's copy is brought in
    /// line with the first active member's before anything is served.
    public internal(set) var pendingNamespace = Set<String>()
    /// Those of `pendingNamespace` whose whole subtree is dirty, with the
    /// time (seconds since the epoch) since when (IntentLog.beginNamespace).
    public internal(set) var pendingNamespaceSubtrees: [String: UInt64] = [:]
    /// Roles taken back by a forced assembly (`-o force`), with the event
    /// counter each was at: resynced whole before anything is served.
    public let forcedRoles: [(role: Int, events: UInt64)]
    /// The superblocks said the last mount ended cleanly.
    let wasClean: Bool
    /// The member a replacement in progress was copying onto, if assembly
    /// was given it.
    let replacement: Member?

    /// True when the last run did not finish its writes (crash) and regions
    /// await resync.
    public var needsResync: Bool { pendingResyncAll || !pendingResync.isEmpty || !pendingNamespace.isEmpty }
}
