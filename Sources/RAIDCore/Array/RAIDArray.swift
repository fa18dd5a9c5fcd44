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

/// A running array: a composition of owners, each with its own state and
/// lock, and the services every part uses (environment, logger, event log,
/// intent log). Every membership change, a member's failure among them, is
/// decided and made in one place: MembershipChanges.swift.
///
/// The locks of the whole process, outermost first; a thread holding one
/// never waits for an earlier one:
///   1. the adapter's `treeLock` (RAIDFS) — held shared by every request
///      that works by path, exclusive by a rename, across the engine call;
///   2. `namespace.lock` — namespace changes, open and release;
///   3. an `ArrayFile.lock` — one file (taken under 2 by open); held
///      shared, then its `ranges` — the stripes a read or write touches
///      (see StripeRangeLock; one range per thread, never two);
///   4. `maintenance.startLock` — starting or restarting a rebuild (never
///      with a file's lock held: a member failure starts it on its own thread);
///   5. the intent log's `persistLock`, then its `lock`;
///   6. `store.writeLock` — every membership change and superblock write
///      (MembershipChanges.swift), one at a time;
///   7. `MemberAttribute`'s 64 attribute locks (by file id) — one member
///      file attribute's read-modify-write, across its member I/O;
///   8. `store.lock` — the superblock and the publishing of a membership;
///   9. `health`'s lock — counters and the error budget (taken under 8);
///  10. leaf locks that guard only their fields and call nothing while
///      held: `maintenance`'s slots, the rebuilder's and scrubber's, the
///      event log's, an `ArrayFile`'s access and cache locks, the pools',
///      the entry cache budget's, `DirectoryMember`'s data-fd, superblock
///      and size-probe locks, the fault plan's, `MemberIO`'s counters, and
///      the adapter's `InodeTable` and `PageCacheCoherence` locks.
/// Record no event and call no Member while holding 8 or 9: recording
/// writes to the members.
// @unchecked Sendable: every part locks itself; `recovery` is written only before the array serves (init and markInUse).
public final class RAIDArray: @unchecked Sendable {
    public let configuration: ArrayConfiguration
    /// The clock, sleep, identifiers, user, member directories and job
    /// runner (the system's, or the simulation's).
    public let environment: EngineEnvironment
    public let logger: Logger
    let resources: StripeResources
    let store: MembershipStore
    let health: MemberHealth
    let maintenance: MaintenanceSlots
    let namespace: NamespaceState
    /// What assembly found to repair before serving.
    public internal(set) var recovery: RecoveryPlan
    /// Set once in init (they need `self`).
    public private(set) var intentLog: IntentLog!
    public private(set) var eventLog: EventLog!

    public var geometry: Geometry { resources.geometry }
    public var codec: Codec { resources.codec }
    public var layout: MemberFileLayout { resources.layout }
    public var arrayUUID: String { store.arrayUUID }
    public var readOnly: Bool { configuration.readOnly }
    /// The membership snapshot in force (no lock): a caller that asks more
    /// than one question reads it once and asks them all of it.
    public var membership: Membership { store.roles.current }
    /// The unmount has begun: no rebuild or scrub starts from here on.
    var isShuttingDown: Bool { maintenance.isStopped }

    init(plan: Assembler.Plan, configuration: ArrayConfiguration, logger: Logger, environment: EngineEnvironment) {
        let sb = plan.superblock
        self.configuration = configuration
        self.environment = environment
        self.logger = logger
        resources = StripeResources(sb)
        // Every member behind a fault-injection layer (`raidctl inject`);
        // with no fault set it only forwards.
        store = MembershipStore(sb, roles: RoleTable(MembershipDraft(
            recorded: sb.roles.map { $0.state },
            seats: plan.membersByRole.enumerated().map { r, m in m.map { Seat(uuid: sb.roles[r].memberUUID, member: FaultInjectingMember($0)) } },
            spares: plan.spares.map { Seat(uuid: $0.superblock.memberUUID, member: FaultInjectingMember($0.member)) })))
        health = MemberHealth(recorded: sb.counters, memberCount: sb.geometry.memberCount)
        maintenance = MaintenanceSlots()
        recovery = RecoveryPlan(forcedRoles: plan.forced, wasClean: sb.clean, replacement: plan.replacement)
        // Seeded from the start under the simulation: the repair an
        // assembly makes (a create cut short, finished with a new id) comes
        // before anyone could seed it, and a file's id places its stripes.
        namespace = NamespaceState(fileIds: environment.fileIdGenerator())
        intentLog = IntentLog(array: self, enabled: configuration.intentLog && !configuration.readOnly)
        let history = activeRoles.first.flatMap { try? member($0)?.readEvents() }.map(EventLog.parse) ?? []
        eventLog = EventLog(logger: logger, history: history, clock: environment.wallClockSeconds) { [unowned self] bytes in
            guard !self.readOnly else { return }
            for role in self.activeRoles { try? self.member(role)?.appendEvents(bytes) }
        }
        readIntentLogs()
        if !recovery.forcedRoles.isEmpty { recovery.pendingResyncAll = true }
    }

    /// Unions the dirty regions of every active member's newest log slot.
    private func readIntentLogs() {
        var seen = Set<IntentLog.Region>()
        for role in activeRoles {
            guard let bytes = try? member(role)?.readIntentLog(), !bytes.isEmpty else { continue }
            guard let log = IntentLog.decode(bytes) else {
                logger.warning("member \(role) (\(memberName(role))): write-intent log unreadable; resyncing everything")
                recovery.pendingResyncAll = true
                continue
            }
            intentLog.adopt(sequence: log.sequence)
            if log.overflow { recovery.pendingResyncAll = true }
            for (r, path) in log.regions where !seen.contains(r) {
                if r.fileId == 0 {
                    recovery.pendingNamespace.insert(path)   // a directory's entry
                    if r.index != 0 { recovery.pendingNamespaceSubtrees[path] = min(recovery.pendingNamespaceSubtrees[path] ?? .max, r.index) }
                    continue
                }
                seen.insert(r)
                recovery.pendingResync.append((r, path))
            }
        }
    }

    /// Assembles the array from `directories`. Nothing is written: call
    /// `markInUse()` once the array is really going to be served.
    public static func assemble(directories: [String], configuration: ArrayConfiguration = ArrayConfiguration(),
                                logger: Logger = Logger(label: "raidfs")) throws -> (RAIDArray, AssemblyReport) {
        let environment = SystemEnvironment()
        let plan = try Assembler.plan(directories: directories, in: environment.directories,
                                      force: configuration.force && !configuration.readOnly)
        return (RAIDArray(plan: plan, configuration: configuration, logger: logger, environment: environment), plan.report)
    }

    /// Assembles from member objects (simulated members in tests).
    public static func assemble(members: [Member], configuration: ArrayConfiguration = ArrayConfiguration(),
                                logger: Logger = Logger(label: "raidfs"),
                                environment: EngineEnvironment = SystemEnvironment()) throws -> (RAIDArray, AssemblyReport) {
        let plan = try Assembler.plan(members: members, force: configuration.force && !configuration.readOnly)
        return (RAIDArray(plan: plan, configuration: configuration, logger: logger, environment: environment), plan.report)
    }

    /// True when the last run did not finish its writes (crash) and regions
    /// await resync.
    public var needsResync: Bool { recovery.needsResync }

    /// Records the new membership in every usable member (event counter
    /// moves on, so members left out are stale from now on) and marks the
    /// array in use (not clean).
    public func markInUse() throws {
        guard !readOnly else { return }
        try persistState(clean: false, reason: recovery.forcedRoles.isEmpty ? "assembled" : "assembled by force")
        let crashed = needsResync
        // The files the intent log named, for the scrub that follows a crash.
        let touched: [String]? = recovery.pendingResyncAll ? nil : recovery.pendingResync.map { $0.1 }.filter { !$0.isEmpty }
        let compared = try namespaceRepair.repairAfterCrash()
        try crashResync.run(skipping: reclaimOrphans(), directories: compared)
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
            while let self, !self.maintenance.isStopped {
                self.environment.sleep(seconds: 0.5)
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
    public var currentSuperblock: Superblock { store.lock.withLock { store.superblock } }

    public var state: ArrayState {
        let m = membership
        let lost = m.unreadableCount
        if lost == 0 { return .clean }
        if lost > geometry.parityChunkCount { return .failed }
        return m.states.contains(.rebuilding) ? .rebuilding : .degraded
    }

    public var events: UInt64 { store.lock.withLock { store.superblock.events } }

    public func roleState(_ role: Int) -> RoleState { membership.states[role] }

    public func counters(_ role: Int) -> MemberCounters { health.counters(role) }

    func noteReadError(role: Int, _ error: Error) {
        health.update(role) { $0.readErrors += 1 }
        eventLog.record(ArrayEvent(kind: .readError, member: role, message: "\(error)"))
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
        let budget = configuration.maxReadErrorsPerHour
        guard budget > 0, !readOnly else { return }
        let count = health.spend(role, now: environment.wallClockSeconds(), budget: budget)
        guard count > budget, roleState(role) == .active else { return }
        markDegraded(role: role, reason: "\(count) read and checksum errors within an hour, over the budget of \(budget) (max_read_errors)")
    }

    /// Marks active role `role` degraded (once, until cleared): an event,
    /// the superblocks, and a hot replace onto a spare if one is attached.
    func markDegraded(role: Int, reason: String) {
        guard health.markDegraded(role, reason: reason) else { return }
        let spare = !membership.spares.isEmpty
        eventLog.record(ArrayEvent(kind: .memberDegraded, member: role, message:
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
        let counters = health.all
        guard store.lock.withLock({ store.superblock.counters != counters }) else { return }
        persistStateLoggingFailure("error counters")
    }

    /// `raidctl clear`: the READ, WRITE and CKSUM counters (and the error
    /// budget) of one role, or of every role, start over.
    public func clearCounters(_ name: String?) throws -> String {
        let roles = try name.map { [try resolveRole($0)] } ?? Array(0..<geometry.memberCount)
        for r in roles { health.reset(r) }
        try persistState(clean: false, reason: "counters cleared")
        let which = name == nil ? "every member" : "member \(roles[0]) (\(memberName(roles[0])))"
        eventLog.record(ArrayEvent(kind: .countersCleared, member: name == nil ? nil : roles[0], message: "error counters of \(which) cleared"))
        return "error counters of \(which) cleared"
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
        health.update(role) { $0.writeErrors += 1 }
        memberFailed(role: role, reason: reason)
    }

    func noteChecksumError(role: Int, path: String, stripe: UInt64) {
        let resyncing = health.countChecksumError(role)
        eventLog.record(ArrayEvent(kind: .checksumError, member: role, path: path,
                                   message: "checksum mismatch in stripe \(stripe) on \(memberName(role))"
                                       + (resyncing ? " (a write the crash interrupted)" : "")))
        // A crash resync visits only stripes the intent log named, where
        // writes torn by the crash are expected on every member: not the
        // media's fault, and a torn tree of files could otherwise fail
        // healthy members on the error budget, one after another.
        if !resyncing { spendErrorBudget(role: role) }
    }

    func noteRepaired(role: Int, path: String, stripe: UInt64) {
        health.update(role) { $0.repairedChunks += 1 }
        eventLog.record(ArrayEvent(kind: .repaired, member: role, path: path,
                                   message: "rewrote stripe \(stripe) on \(memberName(role)) from redundancy"))
    }

    public func memberName(_ role: Int) -> String { member(role)?.name ?? "(missing)" }

    /// Marks the array clean in every active member (unmount).
    public func shutdown() {
        guard !readOnly else { return }
        maintenance.stop()
        if let r = maintenance.rebuilder {
            r.stop()
            // Until its thread is done with the array, not only stopped:
            // it records events and finishes the rebuild after that, and
            // the array may be freed once the unmount returns.
            environment.jobs.wait(for: r.job) { !r.isRunning && r.hasExited }
        }
        if let s = maintenance.scrubber {
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
    func noteUserIO() { maintenance.noteUserIO(environment.monotonicMilliseconds()) }

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
