import Foundation
import Logging
import CLinux
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

public enum ArrayState: String, Sendable {
    case clean, degraded, rebuilding, failed
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

/// A running array: geometry, codec, the membership and the superblock.
/// Every membership change, a member's failure among them, is decided and
/// made in one place: MembershipChanges.swift.
// @unchecked Sendable: membership, superblock and maintenance slots change only under `stateLock` (the lock order is below); the data path reads the published membership snapshot.
public final class RAIDArray: @unchecked Sendable {
    public let geometry: Geometry
    public let codec: Codec
    public let layout: MemberFileLayout
    public let arrayUUID: String
    public let readOnly: Bool
    public let logger: Logger

    /// Every role's state, member and generation, the replacements and the
    /// spares: changed only through `commitMembership` and
    /// `forceMembership` (MembershipChanges.swift); read as `membership`.
    let roles: RoleTable
    /// The membership snapshot in force (no lock): a caller that asks more
    /// than one question reads it once and asks them all of it.
    public var membership: Membership { roles.current }
    /// Lock order, outermost first; a thread holding one never waits for an
    /// earlier one:
    ///   1. `namespace.lock` — namespace changes, open and release;
    ///   2. an `ArrayFile.lock` — one file (taken under 1 by open); held
    ///      shared, then its `ranges` — the stripes a read or write touches
    ///      (see StripeRangeLock; one range per thread, never two);
    ///   3. `rebuildStartLock` — starting or restarting a rebuild (never with
    ///      a file's lock held: a member failure starts it on its own thread);
    ///   4. the intent log's `persistLock`, then its `lock`;
    ///   5. `superblockWriteLock` — every membership change and superblock
    ///      write (MembershipChanges.swift), one at a time;
    ///   6. `stateLock` — innermost. Record no event and call no Member while
    ///      holding it: recording writes to the members, which asks for it.
    /// The rebuilder's, scrubber's and event log's own locks guard only
    /// their fields and call nothing while held.
    let stateLock = Lock()
    var superblock: Superblock
    /// The rebuild in progress, if any (guarded by `stateLock`).
    var rebuilderSlot: Rebuilder?
    /// The running or last scrub (guarded by `stateLock`).
    var scrubberSlot: Scrubber?
    /// `-o rebuild_rate=`: bytes per second, nil for unthrottled.
    public var rebuildRateBytesPerSecond: Double?
    /// Where the array is mounted (set by the daemon): a spare must not live there.
    public var mountpoint: String?
    /// `-o scrub_interval=`: a scrub starts by itself once the last complete
    /// one is older than this (seconds; 0 never). 7 days by default.
    public var scrubIntervalSeconds: Double = 7 * 86_400
    /// `-o scrub_rate=`: bytes per second, nil for unthrottled.
    public var scrubRateBytesPerSecond: Double?
    /// When a user last read or wrote (monotonic milliseconds): a scrub
    /// yields while this is recent. Written on every request, relaxed.
    let userIOStamp: UnsafeMutablePointer<UInt64>
    var counters: [MemberCounters]
    /// `-o max_read_errors=N`: read and checksum errors one member may have
    /// within an hour before it is failed and a spare takes over (md's
    /// default is 20); 0 never fails a member for them.
    public var maxReadErrorsPerHour = 20
    /// When each role's read and checksum errors of the last hour happened
    /// (guarded by `stateLock`).
    var recentErrorTimes: [[Double]]
    /// Held by every membership change and superblock write (MembershipChanges.swift).
    let superblockWriteLock = Lock()
    /// Serialises starting rebuilds: a failure, the monitor and `add` may race.
    let rebuildStartLock = Lock()

    /// CRC32C of an all-zero 4 KiB sector: what a never-written sector must hash to.
    let zeroSectorCRC: UInt32
    /// A read-only all-zero buffer of one stripe's data.
    let zeroStripe: AlignedBuffer
    /// What the open files' checksum table caches may hold (EntryCache).
    let entryCacheBudget: EntryCacheBudget
    let workspaces: Pool<StripeWorkspace>
    let namespace: NamespaceState
    /// Set once in init (they need `self`).
    public private(set) var intentLog: IntentLog!
    public private(set) var eventLog: EventLog!
    /// Regions the members' intent logs named at assembly: resynced by
    /// `markInUse` before anything is served.
    public internal(set) var pendingResync: [(IntentLog.Region, String)] = []
    public internal(set) var pendingResyncAll = false
    /// The crash resync is running (under `stateLock`).
    var crashResyncRunning = false
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
    let wasCleanAtAssembly: Bool
    /// The member a replacement in progress was copying onto, if assembly
    /// was given it.
    let assembledReplacement: Member?
    /// The clock, identifiers and job runner (the system's, or the
    /// simulation's).
    public let environment: EngineEnvironment
    private let stopFlusher = Lock()
    private var flusherStopped = false
    /// Set when the unmount begins: no rebuild or scrub starts after it
    /// (a member failing during the unmount would otherwise start one,
    /// which would write "unclean" over the clean shutdown).
    var isShuttingDown: Bool { stopFlusher.withLock { flusherStopped } }

    init(plan: Assembler.Plan, readOnly: Bool, intentLogEnabled: Bool, logger: Logger, environment: EngineEnvironment) {
        let sb = plan.superblock
        self.environment = environment
        geometry = sb.geometry
        codec = Codec(level: sb.level, dataCount: geometry.dataChunkCount, parityCount: geometry.parityChunkCount)
        layout = MemberFileLayout(chunkSizeBytes: sb.chunkSizeBytes, metadataInFile: sb.metadata == .file)
        arrayUUID = sb.arrayUUID
        self.readOnly = readOnly
        self.logger = logger
        // Every member behind a fault-injection layer (`raidctl inject`);
        // with no fault set it only forwards.
        wasCleanAtAssembly = sb.clean
        assembledReplacement = plan.replacement
        forcedRoles = plan.forced
        superblock = sb
        roles = RoleTable(MembershipDraft(
            recorded: sb.roles.map { $0.state },
            seats: plan.membersByRole.enumerated().map { r, m in m.map { Seat(uuid: sb.roles[r].memberUUID, member: FaultInjectingMember($0)) } },
            spares: plan.spares.map { Seat(uuid: $0.superblock.memberUUID, member: FaultInjectingMember($0.member)) }))
        // The counters persist across remounts, as ZFS's do until `zpool clear`.
        counters = sb.counters?.count == geometry.memberCount ? sb.counters! : Array(repeating: MemberCounters(), count: geometry.memberCount)
        recentErrorTimes = Array(repeating: [], count: geometry.memberCount)
        userIOStamp = .allocate(capacity: 1)
        userIOStamp.initialize(to: 0)
        zeroStripe = AlignedBuffer(count: geometry.stripeDataBytes)
        entryCacheBudget = EntryCacheBudget(bytes: 32 << 20, tableBytes: Int(layout.tableBytes))
        zeroSectorCRC = crc32c(zeroStripe.pointer, count: MemberFileLayout.sectorBytes)
        let g = geometry
        workspaces = Pool(keepMax: 16) { StripeWorkspace(geometry: g) }
        namespace = NamespaceState()
        // Seeded from the start under the simulation: the repair an
        // assembly makes (a create cut short, finished with a new id) comes
        // before anyone could seed it, and a file's id places its stripes.
        namespace.fileIds = environment.fileIdGenerator()
        intentLog = IntentLog(array: self, enabled: intentLogEnabled && !readOnly)
        let history = activeRoles.first.flatMap { try? member($0)?.readEvents() }.map(EventLog.parse) ?? []
        eventLog = EventLog(logger: logger, history: history, clock: environment.wallClockSeconds) { [unowned self] bytes in
            guard !self.readOnly else { return }
            for role in self.activeRoles { try? self.member(role)?.appendEvents(bytes) }
        }
        readIntentLogs()
        if !forcedRoles.isEmpty { pendingResyncAll = true }
    }

    /// Unions the dirty regions of every active member's newest log slot.
    private func readIntentLogs() {
        var seen = Set<IntentLog.Region>()
        for role in activeRoles {
            guard let bytes = try? member(role)?.readIntentLog(), !bytes.isEmpty else { continue }
            guard let log = IntentLog.decode(bytes) else {
                logger.warning("member \(role) (\(memberName(role))): write-intent log unreadable; resyncing everything")
                pendingResyncAll = true
                continue
            }
            intentLog.adopt(sequence: log.sequence)
            if log.overflow { pendingResyncAll = true }
            for (r, path) in log.regions where !seen.contains(r) {
                if r.fileId == 0 {
                    pendingNamespace.insert(path)   // a directory's entry
                    if r.index != 0 { pendingNamespaceSubtrees[path] = min(pendingNamespaceSubtrees[path] ?? .max, r.index) }
                    continue
                }
                seen.insert(r)
                pendingResync.append((r, path))
            }
        }
    }

    deinit {
        userIOStamp.deallocate()
    }

    /// Assembles the array from `directories`. Nothing is written: call
    /// `markInUse()` once the array is really going to be served.
    public static func assemble(directories: [String], readOnly: Bool = false, intentLog: Bool = true, force: Bool = false,
                                logger: Logger = Logger(label: "raidfs")) throws -> (RAIDArray, AssemblyReport) {
        let environment = SystemEnvironment()
        let plan = try Assembler.plan(directories: directories, in: environment.directories, force: force && !readOnly)
        return (RAIDArray(plan: plan, readOnly: readOnly, intentLogEnabled: intentLog, logger: logger, environment: environment), plan.report)
    }

    /// Assembles from member objects (simulated members in tests).
    public static func assemble(members: [Member], readOnly: Bool = false, intentLog: Bool = true, force: Bool = false,
                                logger: Logger = Logger(label: "raidfs"),
                                environment: EngineEnvironment = SystemEnvironment()) throws -> (RAIDArray, AssemblyReport) {
        let plan = try Assembler.plan(members: members, force: force && !readOnly)
        return (RAIDArray(plan: plan, readOnly: readOnly, intentLogEnabled: intentLog, logger: logger, environment: environment), plan.report)
    }

    /// True when the last run did not finish its writes (crash) and regions
    /// await resync.
    public var needsResync: Bool { pendingResyncAll || !pendingResync.isEmpty || !pendingNamespace.isEmpty }

    /// Records the new membership in every usable member (event counter
    /// moves on, so members left out are stale from now on) and marks the
    /// array in use (not clean).
    public func markInUse() throws {
        guard !readOnly else { return }
        try persistState(clean: false, reason: forcedRoles.isEmpty ? "assembled" : "assembled by force")
        let crashed = needsResync
        // The files the intent log named, for the scrub that follows a crash.
        let touched: [String]? = pendingResyncAll ? nil : pendingResync.map { $0.1 }.filter { !$0.isEmpty }
        let compared = try repairNamespaceAfterCrash()
        try resyncAfterCrash(skipping: reclaimOrphans(), directories: compared)
        collectTrash()
        if crashed {
            // Everything the log named is repaired: write it anew (empty of
            // them) on every member, or the next mount would find them again.
            try intentLog.persist()
            scheduleScrub(paths: touched)
        }
    }


    /// Makes everything written so far durable on every active member.
    public func syncAllMembers() {
        for role in activeRoles {
            guard let m = member(role) else { continue }
            do { try m.syncAll() } catch { noteWriteError(role: role, error) }
        }
    }

    /// Starts the background work of a mounted array: a pending rebuild,
    /// and one thread that every half second clears idle intent-log regions
    /// (after a syncfs of the members) and once a second checks that every
    /// member is still there — a member directory removed or unmounted while
    /// files are open would otherwise go unnoticed until the next open.
    public func startBackgroundWork() {
        resumeMaintenance()
        let t = Thread { [weak self] in
            var tick = 0
            while let self, !self.stopFlusher.withLock({ self.flusherStopped }) {
                usleep(500_000)
                tick += 1
                self.monitorTick(tick)
            }
        }
        t.name = "raidfs-monitor"
        t.start()
    }

    /// Resumes what the last mount left running: a replacement, a rebuild
    /// (or starts one, if a spare can take a lost role). The daemon calls
    /// it through `startBackgroundWork`; the simulation after each mount.
    public func resumeMaintenance() {
        guard !readOnly else { return }
        resumeReplacement()
        startRebuildIfPossible()
    }

    /// One half-second tick of the monitor (`tick` counts them): the
    /// daemon's monitor thread calls it, the simulation calls it itself.
    public func monitorTick(_ tick: Int) {
        if tick % 2 == 0 {
            probeMembers()
            if !readOnly { startRebuildIfPossible() }
        }
        if tick % 20 == 0 && !readOnly { persistCountersIfChanged() }
        if tick % 2 == 0 { startScheduledScrubIfDue() }
        guard !readOnly, intentLog.enabled else { return }
        do { try intentLog.flushIdle(idleSeconds: 2) } catch { logger.error("intent log flush: \(error)") }
    }

    /// The health monitor's check: an active (or rebuilding) member whose
    /// directory or superblock is gone is failed.
    func probeMembers() {
        for role in 0..<geometry.memberCount where isWritable(role) {
            guard let m = member(role), !m.isPresent() else { continue }
            memberFailed(role: role, reason: "member vanished (its directory or superblock is gone)")
        }
    }

    // MARK: state

    @inline(__always)
    public func isActive(_ role: Int) -> Bool { membership.isActive(role) }

    /// Active, or being rebuilt: takes writes.
    @inline(__always)
    public func isWritable(_ role: Int) -> Bool { membership.isWritable(role) }

    public var activeRoles: [Int] { membership.activeRoles }
    public var rebuildingRoles: [Int] { membership.rebuildingRoles }

    public func member(_ role: Int) -> Member? { membership.seats[role]?.member }

    /// Roles with a replacement member attached, and that member.
    var shadowRoles: [Int] { membership.shadowRoles }
    public func shadowMember(_ role: Int) -> Member? { membership.shadows[role]?.member }

    public var spares: [Member] { membership.spares.map { $0.member } }

    /// The superblock as it stands (for status and the rebuilder).
    public var currentSuperblock: Superblock { stateLock.withLock { superblock } }

    public var state: ArrayState {
        let m = membership
        let lost = m.unreadableCount
        if lost == 0 { return .clean }
        if lost > geometry.parityChunkCount { return .failed }
        return m.states.contains(.rebuilding) ? .rebuilding : .degraded
    }

    public var events: UInt64 { stateLock.withLock { superblock.events } }

    public func roleState(_ role: Int) -> RoleState { membership.states[role] }

    public func counters(_ role: Int) -> MemberCounters { stateLock.withLock { counters[role] } }

    func noteReadError(role: Int, _ error: Error) {
        stateLock.withLock { counters[role].readErrors += 1 }
        eventLog.record(ArrayEvent(kind: "read-error", member: role, message: "\(error)"))
        if let m = member(role), !m.isPresent() {
            memberFailed(role: role, reason: "member vanished (\(error))")
        } else {
            spendErrorBudget(role: role)
        }
    }

    /// One more read or checksum error on `role`: past `maxReadErrorsPerHour`
    /// within the last hour the member is *degraded*, as ZFS marks a device
    /// with too many checksum errors: it keeps serving (a member that
    /// returns some bad sectors is still worth its good ones), and a spare,
    /// if one is attached, replaces it by hot replace (md's
    /// want_replacement), so no redundancy is spent on the way.
    private func spendErrorBudget(role: Int) {
        let budget = maxReadErrorsPerHour
        guard budget > 0, !readOnly else { return }
        // The engine's clock (the simulation's own), and no more stamps
        // than the budget needs: an error storm must not grow the list.
        let now = environment.wallClockSeconds()
        let count: Int = stateLock.withLock {
            recentErrorTimes[role].append(now)
            recentErrorTimes[role].removeAll { now - $0 > 3600 }
            if recentErrorTimes[role].count > budget + 1 { recentErrorTimes[role].removeFirst(recentErrorTimes[role].count - budget - 1) }
            return recentErrorTimes[role].count
        }
        guard count > budget, roleState(role) == .active else { return }
        markDegraded(role: role, reason: "\(count) read and checksum errors within an hour, over the budget of \(budget) (max_read_errors)")
    }

    /// Marks active role `role` degraded (once, until cleared): an event,
    /// the superblocks, and a hot replace onto a spare if one is attached.
    func markDegraded(role: Int, reason: String) {
        let newly: Bool = stateLock.withLock {
            guard counters[role].degraded == nil else { return false }
            counters[role].degraded = reason
            return true
        }
        guard newly else { return }
        let spare = !membership.spares.isEmpty
        eventLog.record(ArrayEvent(kind: "member-degraded", member: role, message:
            "\(memberName(role)) degraded: \(reason); it keeps serving verified reads and taking writes; "
            + (spare ? "a spare replaces it by hot replace"
                     : "no spare is attached, so it stays in until one is added (raidctl add) or its counters are cleared (raidctl clear)")))
        guard !readOnly else { return }
        // On a thread of its own, as a failover: the caller holds a file's
        // lock, and the replacement walks every file.
        environment.jobs.spawn("raidfs-degraded") { [weak self] in
            self?.persistStateLoggingFailure("member \(role) degraded")
            self?.startRebuildIfPossible()
        }
    }

    /// Error counts changed since the superblocks last recorded them: record
    /// them (every ten seconds at most, and with every other update).
    func persistCountersIfChanged() {
        guard stateLock.withLock({ superblock.counters != counters }) else { return }
        persistStateLoggingFailure("error counters")
    }

    /// `raidctl clear`: the READ, WRITE and CKSUM counters (and the error
    /// budget) of one role, or of every role, start over.
    public func clearCounters(_ name: String?) throws -> String {
        let roles = try name.map { [try resolveRole($0)] } ?? Array(0..<geometry.memberCount)
        stateLock.withLock { for r in roles { resetCountersLocked(r) } }
        try persistState(clean: false, reason: "counters cleared")
        let which = name == nil ? "every member" : "member \(roles[0]) (\(memberName(roles[0])))"
        eventLog.record(ArrayEvent(kind: "counters-cleared", member: name == nil ? nil : roles[0], message: "error counters of \(which) cleared"))
        return "error counters of \(which) cleared"
    }

    /// The counters and the error budget start over: a new member took the
    /// role, or `raidctl clear`. Caller holds `stateLock`.
    func resetCountersLocked(_ role: Int) {
        counters[role] = MemberCounters()
        recentErrorTimes[role] = []
    }

    /// A write failed on `role`. A full member (ENOSPC, EDQUOT) or a file
    /// too large for it (EFBIG) is the caller's error, not the member's
    /// fault: returns that errno and leaves the member in. Anything else
    /// fails the member (as md does on a write error) and returns nil.
    @discardableResult
    func noteWriteError(role: Int, _ error: Error) -> Int32? {
        if let e = error as? FSError, [ENOSPC, EDQUOT, EFBIG].contains(e.errno) {
            return e.errno
        }
        memberWriteFailed(role: role, reason: "write error: \(error)")
        return nil
    }

    /// A write the member could not take: counted, and the member failed.
    func memberWriteFailed(role: Int, reason: String) {
        stateLock.withLock { counters[role].writeErrors += 1 }
        memberFailed(role: role, reason: reason)
    }

    func noteChecksumError(role: Int, path: String, stripe: UInt64) {
        let resyncing: Bool = stateLock.withLock {
            counters[role].checksumErrors += 1
            return crashResyncRunning
        }
        eventLog.record(ArrayEvent(kind: "checksum-error", member: role, path: path,
                                   message: "checksum mismatch in stripe \(stripe) on \(memberName(role))"
                                       + (resyncing ? " (a write the crash interrupted)" : "")))
        // A crash resync visits only stripes the intent log named, where
        // writes torn by the crash are expected on every member: not the
        // media's fault, and a torn tree of files could otherwise fail
        // healthy members on the error budget, one after another.
        if !resyncing { spendErrorBudget(role: role) }
    }

    func noteRepaired(role: Int, path: String, stripe: UInt64) {
        stateLock.withLock { counters[role].repairedChunks += 1 }
        eventLog.record(ArrayEvent(kind: "repaired", member: role, path: path,
                                   message: "rewrote stripe \(stripe) on \(memberName(role)) from redundancy"))
    }

    public func memberName(_ role: Int) -> String { member(role)?.name ?? "(missing)" }

    /// Marks the array clean in every active member (unmount).
    public func shutdown() {
        guard !readOnly else { return }
        stopFlusher.withLock { flusherStopped = true }
        if let r = stateLock.withLock({ rebuilderSlot }) {
            r.stop()
            // Until its thread is done with the array, not only stopped:
            // it records events and finishes the rebuild after that, and
            // the array may be freed once the unmount returns.
            environment.jobs.wait(for: r.job) { !r.isRunning && r.hasExited }
        }
        if let s = stateLock.withLock({ scrubberSlot }) {
            s.stop(resumable: true)   // the next mount resumes it
            environment.jobs.wait(for: s.job) { !s.isRunning && s.hasExited }
        }
        finishTrashJob()
        do {
            try intentLog.flushIdle(idleSeconds: 0)
        } catch {
            logger.error("clean shutdown: intent log: \(error)")
        }
        do {
            try persistState(clean: true, reason: "clean shutdown")
        } catch {
            logger.error("clean shutdown: \(error)")
        }
    }

    /// A user read or wrote: a running scrub yields for a moment.
    @inline(__always)
    func noteUserIO() { raidfs_store_relaxed_u64(userIOStamp, environment.monotonicMilliseconds()) }

    /// Throws EIO when more roles are lost than the level tolerates.
    func requireNotFailed(_ what: @autoclosure () -> String) throws {
        if state == .failed {
            throw FSError.io("\(what()): array \(arrayUUID) has failed (more members lost than RAID \(geometry.level.rawValue) tolerates)")
        }
    }
}

/// Buffers for one stripe operation, allocated once per pool slot: one chunk
/// per member, plus scratch for read-modify-write.
final class StripeWorkspace {
    let chunkBytes: Int
    let chunks: [AlignedBuffer]
    let old: AlignedBuffer
    let delta: AlignedBuffer
    /// Pointer arrays handed to ISA-L.
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>
    let scratchPointers: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>
    /// Where a reconstruction writes (never more chunks than members).
    let outputPointers: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>
    /// A write of the operation using this workspace hit a full member
    /// (ENOSPC, EDQUOT, EFBIG): per operation, since writers of different
    /// stripes of one file run at once. Set by writeChunk, taken by commit.
    var spaceErrno: Int32? = nil

    init(geometry: Geometry) {
        chunkBytes = geometry.chunkSizeBytes
        chunks = (0..<geometry.memberCount).map { _ in AlignedBuffer(count: geometry.chunkSizeBytes) }
        old = AlignedBuffer(count: geometry.chunkSizeBytes)
        delta = AlignedBuffer(count: geometry.chunkSizeBytes)
        pointers = .allocate(capacity: geometry.memberCount)
        scratchPointers = .allocate(capacity: geometry.memberCount)
        outputPointers = .allocate(capacity: geometry.memberCount)
        for i in 0..<geometry.memberCount { pointers[i] = chunks[i].bytes }
    }

    deinit {
        pointers.deallocate()
        scratchPointers.deallocate()
        outputPointers.deallocate()
    }
}
