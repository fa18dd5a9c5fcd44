import Foundation
import RAIDControl

/// Every change of membership goes through here: a member failing, a spare
/// coming, going or taking a role, a rebuild ending, a replacement
/// attaching, taking over or being given up. Each runs under
/// `store.writeLock`, so changes happen one at a time, in the order the
/// superblocks record them, and each is published whole.
///
/// Two kinds:
/// - `commitMembership`: a change asked for (an administrator, a spare
///   taking a lost role, a rebuild ending). The superblocks take it first
///   and only then is it published, so no request ever acts on a
///   membership the disks do not record. If no member takes its
///   superblock, the error is thrown and nothing changes.
/// - `forceMembership`: a fact the array must act on at once (a member
///   failed, a replacement's member failed). Published first, so no request
///   uses the member any longer, then persisted; a persist failure is
///   logged (the superblocks of the members that took it say so, and those
///   that did not are failed in turn).
///
/// A member whose superblock write fails during either is failed on the
/// spot, with an event, and the survivors are written again.
///
/// The decisions are here too — a member failing, a spare taking a lost
/// role, a rebuild ending, a replacement attached, resumed, given up or
/// taking over, a spare or role removed — so this file is the only one
/// that changes membership: `grep -rn "d\.\(fail\|activate\|vacate\|
/// addSpare\|removeSpare\|seatSpare\|attachShadow\|detachShadow\|
/// promoteShadow\)(" Sources` finds them here alone.
extension RAIDArray {
    /// A change asked for: `change` edits a draft of the membership in
    /// force (under `store.lock`: it may read the array's fields; it throws
    /// to refuse); `records` edits the superblock records that go with it
    /// (a replacement, rebuild checkpoints), applied only with it. Persisted,
    /// then published, then `events` recorded. A draft `change` did not
    /// touch, with `always` false, writes nothing.
    @discardableResult
    func commitMembership<T>(_ reason: String, clean: Bool = false, always: Bool = false,
                             records: (inout Superblock) -> Void = { _ in },
                             events: (T) -> [ArrayEvent] = { _ in [] },
                             _ change: (inout MembershipDraft) throws -> T) throws -> T {
        var failedHere: [(role: Int, name: String, error: Error)] = []
        defer { recordSuperblockFailures(failedHere) }
        let result: T = try store.writeLock.withLock {
            var draft = MembershipDraft(store.roles.current)
            let result = try store.lock.withLock { try change(&draft) }
            guard always || draft.needsPersist else { return result }
            try persistLocked(&draft, clean: clean, reason: reason, records: records, failedHere: &failedHere)
            if draft.needsPersist { store.lock.withLock { store.roles.publish(draft) } }
            return result
        }
        for e in events(result) { eventLog.record(e) }
        return result
    }

    /// A fact the array must act on: `change` edits a draft of the
    /// membership in force (under `store.lock`) and returns false when there
    /// is nothing to do. Published at once, then persisted (a failure is
    /// logged). Returns whether it changed anything.
    @discardableResult
    func forceMembership(_ reason: String, _ change: (inout MembershipDraft) -> Bool) -> Bool {
        var failedHere: [(role: Int, name: String, error: Error)] = []
        defer { recordSuperblockFailures(failedHere) }
        return store.writeLock.withLock {
            var draft = MembershipDraft(store.roles.current)
            let changed: Bool = store.lock.withLock {
                guard change(&draft) else { return false }
                store.roles.publish(draft)
                return true
            }
            guard changed, !readOnly else { return changed }
            do {
                try persistLocked(&draft, clean: false, reason: reason, records: { _ in }, failedHere: &failedHere)
            } catch {
                logger.error("\(reason): no superblock took the change: \(error)")
            }
            return true
        }
    }

    /// Writes the membership in force to every active member's superblock,
    /// moving the event counter on, with `clean` and the rebuild
    /// checkpoints (`.some(nil)` clears them).
    func persistState(clean: Bool, reason: String, rebuilds: [RebuildCheckpoint]?? = nil) throws {
        try commitMembership(reason, clean: clean, always: true, records: { sb in
            if let c = rebuilds { sb.rebuilds = c }
        }) { _ in }
    }

    /// `persistState` for background bookkeeping (checkpoints, counters,
    /// records) whose caller has no one to hand the error to: logged.
    func persistStateLoggingFailure(_ reason: String, rebuilds: [RebuildCheckpoint]?? = nil) {
        do { try persistState(clean: false, reason: reason, rebuilds: rebuilds) } catch {
            logger.error("\(reason): no superblock took the change: \(error)")
        }
    }

    /// Writes `draft` to the superblocks of its serving members (and to
    /// spares and replacements, which stay as fresh), and on success keeps
    /// what was written as the array's superblock. A member that cannot
    /// take its superblock is failed at once — published, whatever becomes
    /// of the change — and in `draft`, and the rest are written again.
    /// Throws when no serving member takes it. Caller holds
    /// `store.writeLock`.
    private func persistLocked(_ draft: inout MembershipDraft, clean: Bool, reason: String,
                               records: (inout Superblock) -> Void, failedHere: inout [(role: Int, name: String, error: Error)]) throws {
        while true {
            let now = environment.wallClockSeconds()
            let (sb, recordedUUIDs): (Superblock, [String]) = store.lock.withLock {
                // Every round moves the counter on: a member that took an
                // earlier round is never mistaken for one of this.
                store.superblock.events += 1
                var sb = store.superblock
                let recordedUUIDs = store.superblock.roles.map { $0.memberUUID }
                records(&sb)
                sb.clean = clean
                sb.updatedAt = now
                sb.counters = health.all
                for r in 0..<geometry.memberCount {
                    sb.roles[r].state = draft.states[r]
                    if let s = draft.seats[r] { sb.roles[r].memberUUID = s.uuid }
                }
                sb.spares = draft.spares.map { $0.uuid }
                return (sb, recordedUUIDs)
            }
            // A member taking a role (a spare, a replacement) is written
            // first: a crash after any of the others took the change then
            // finds it holding the role they give it, not a spare's
            // superblock the assembly would leave out.
            let serving = (0..<geometry.memberCount).filter { draft.states[$0] == .active || draft.states[$0] == .rebuilding }
            let targets = serving.filter { draft.seats[$0]?.uuid != recordedUUIDs[$0] }
                + serving.filter { draft.seats[$0]?.uuid == recordedUUIDs[$0] }
            var failed: [(Int, Error)] = []
            for r in targets {
                var mine = sb
                mine.role = r
                mine.memberUUID = sb.roles[r].memberUUID
                do {
                    guard let m = draft.seats[r]?.member else { throw FSError.io("role \(r) has no member") }
                    try m.writeSuperblock(mine.encoded())
                } catch {
                    failed.append((r, error))
                }
            }
            // Spares and a replacement in progress stay as fresh as the
            // members. One that cannot take it is not failed here (it holds
            // no role): the log says so, and a spare is probed again before
            // it takes a role.
            for s in draft.spares + draft.shadows.compactMap({ $0 }) {
                do { try s.member.writeSuperblock(RAIDArray.spareSuperblock(sb, uuid: s.uuid)) } catch {
                    logger.warning("\(s.member.name): spare or replacement missed superblock event \(sb.events): \(error)")
                }
            }
            if failed.count == targets.count && !targets.isEmpty && targets.contains(where: { draft.states[$0] == .active }) {
                throw FSError.io("no member accepted its superblock (\(failed.map { "\($0.1)" }.joined(separator: "; ")))")
            }
            if failed.isEmpty {
                // What the members now say is what the array holds (the
                // records a concurrent checkpoint moved on stay as they are).
                store.lock.withLock {
                    records(&store.superblock)
                    store.superblock.clean = sb.clean
                    store.superblock.updatedAt = sb.updatedAt
                    store.superblock.counters = sb.counters
                    store.superblock.roles = sb.roles
                    store.superblock.spares = sb.spares
                }
                logger.info("superblocks at event \(sb.events) written to \(targets.count) members (\(reason))")
                return
            }
            store.lock.withLock {
                var inForce = MembershipDraft(store.roles.current)
                for (r, _) in failed {
                    health.update(r) {
                        $0.writeErrors += 1
                        $0.faulted = "its superblock write failed"
                    }
                    if inForce.states[r] == draft.states[r], inForce.seats[r]?.member === draft.seats[r]?.member { inForce.fail(r) }
                    draft.fail(r)
                }
                store.roles.publish(inForce)
            }
            for (r, e) in failed {
                let name = draft.seats[r]?.member.name ?? "(missing)"
                logger.critical("member \(r) (\(name)) marked faulty: superblock write failed: \(e)")
                failedHere.append((r, name, e))
            }
        }
    }

    private func recordSuperblockFailures(_ failed: [(role: Int, name: String, error: Error)]) {
        for (r, name, e) in failed {
            eventLog.record(ArrayEvent(kind: .memberFailed, member: r,
                                       message: "\(name) marked faulty: its superblock write failed (\(e)); array is \(state.rawValue)"))
        }
    }

    /// Marks a role faulty at once (no request uses its member from here
    /// on), moves the event counter on and records it in the superblocks of
    /// the members still serving, so the failed member, if it comes back,
    /// is recognised as stale. A hot spare then takes the role.
    public func memberFailed(role: Int, reason: String) {
        let changed = forceMembership("member \(role) faulty") { d in
            guard d.states[role] == .active || d.states[role] == .rebuilding else { return false }
            d.fail(role)
            health.update(role) { $0.faulted = reason }
            return true
        }
        guard changed else { return }
        eventLog.record(ArrayEvent(kind: .memberFailed, member: role,
                                   message: "\(memberName(role)) marked faulty: \(reason); array is \(state.rawValue)"))
        if !readOnly {
            // A hot spare takes over at once, as md starts recovery the
            // moment a member is marked faulty (the monitor retries every
            // second). On a thread of its own: the caller may hold a file's
            // lock (a write error) or be the rebuild itself, and starting may
            // have to wait for a running rebuild to stop, which needs both.
            environment.jobs.spawn("raidfs-failover") { [weak self] in self?.startRebuildIfPossible() }
        }
    }

    /// Fails `role` for an I/O error unless that would take the array past
    /// its redundancy (then an event says why it stays). True when failed.
    func failWithinRedundancy(role: Int, reason: String) -> Bool {
        let lost = membership.unreadableCount
        health.update(role) { $0.writeErrors += 1 }
        if lost + 1 > geometry.parityChunkCount && roleState(role) == .active {
            eventLog.record(ArrayEvent(kind: .writeError, member: role,
                                       message: "\(reason); member kept: failing it would exceed RAID \(geometry.level.rawValue)'s redundancy"))
            return false
        }
        memberFailed(role: role, reason: reason)
        return true
    }

    /// Writes the membership in force to a spare's superblock (role -1),
    /// under the lock every persist holds: a probe and a persist of the same
    /// spare never overlap, and the spare is never left an event behind.
    func writeSpareSuperblock(_ spare: Member, uuid: String) throws {
        try store.writeLock.withLock {
            try spare.writeSuperblock(RAIDArray.spareSuperblock(currentSuperblock, uuid: uuid))
        }
    }

    private static func spareSuperblock(_ sb: Superblock, uuid: String) -> [UInt8] {
        var mine = sb
        mine.role = -1
        mine.memberUUID = uuid
        return mine.encoded()
    }

    // MARK: spares, removal

    /// `raidctl remove` of a spare.
    func removeSpare(_ spare: Seat) throws {
        try commitMembership("spare removed", events: { _ in [ArrayEvent(kind: .spareRemoved, message: "spare \(spare.member.name) removed")] }) { d in
            guard d.removeSpare(spare.uuid) else { throw FSError.invalid("\(spare.member.name): no longer a spare (it took a role)") }
        }
    }

    /// `raidctl remove` of a faulty or missing role: it gives up its member.
    func vacate(_ role: Int) throws {
        let name = memberName(role)
        try commitMembership("member \(role) removed",
                             events: { _ in [ArrayEvent(kind: .memberRemoved, member: role, message: "\(name) removed from role \(role)")] }) { d in
            guard d.states[role] == .faulty || d.states[role] == .missing else {
                throw FSError(EBUSY, "member \(role) (\(name)) is \(d.states[role].rawValue) again (a spare took its role): nothing removed")
            }
            d.vacate(role)
        }
    }

    /// Takes an empty, prepared member as a hot spare; a rebuild onto it
    /// starts at once if a role is lost, or a hot replace if a member is
    /// degraded (returns that role).
    @discardableResult
    public func addSpare(member: Member, note: String) throws -> Int? {
        let uuid = environment.newUUID()
        let spare = FaultInjectingMember(member)
        // Its superblock first: once listed, a failover on another thread
        // may probe it at once, and would drop a spare with none.
        try writeSpareSuperblock(spare, uuid: uuid)
        try commitMembership("spare added", events: { _ in [ArrayEvent(kind: .spareAdded, message: note)] }) { d in
            d.addSpare(Seat(uuid: uuid, member: spare))
        }
        startRebuildIfPossible()
        // The role it took, or is replacing, whichever thread started the
        // rebuild: a member failure's own thread may have got there first.
        let m = membership
        return m.seats.firstIndex { $0?.uuid == uuid } ?? m.shadows.firstIndex { $0?.uuid == uuid }
    }

    /// Starts copying active role `role` onto `member` (empty and prepared),
    /// through the Member seam alone: the directory checks are the caller's,
    /// so the simulation replaces simulated members the same way. The
    /// replacement record names the member by `member.name`, which a later
    /// mount resumes from as a directory.
    public func replace(role: Int, with member: Member) throws {
        guard roleState(role) == .active else {
            throw FSError.invalid("member \(role) is \(roleState(role).rawValue): use add to rebuild a lost role")
        }
        let target = FaultInjectingMember(member)
        let uuid = environment.newUUID()
        // Until it takes the role it is a spare only the replacement record
        // names: an unmount or crash leaves it to the next mount to resume.
        try writeSpareSuperblock(target, uuid: uuid)
        let record = ReplacementRecord(role: role, memberUUID: uuid, directory: member.name, lastPath: "", bytesDone: 0)
        try commitMembership("replacement of member \(role) started", records: { $0.replacement = record },
                             events: { _ in [ArrayEvent(kind: .replaceStarted, member: role, message: "copying role \(role) from \(self.memberName(role)) onto \(member.name)")] }) { d in
            guard d.states[role] == .active, d.shadows[role] == nil, store.superblock.replacement == nil else {
                throw FSError(EBUSY, "member \(role) is \(d.states[role].rawValue) or already being replaced")
            }
            d.attachShadow(role, Seat(uuid: uuid, member: target))
        }
        startReplacement(role: role, target: target, uuid: uuid, resume: [])
    }

    /// Starts the copy onto the replacement `commitMembership` attached.
    private func startReplacement(role: Int, target: Member, uuid: String, resume: [RebuildCheckpoint]) {
        let r = Rebuilder(array: self, targets: [.init(role: role, member: target, uuid: uuid)],
                          rateBytesPerSecond: configuration.rebuildRateBytesPerSecond, resume: resume, replacing: true)
        maintenance.rebuilder = r
        r.start()
    }

    /// At mount: a `raidctl replace` an unmount or crash cut short goes on.
    /// After a clean unmount it resumes at its checkpoint; after a crash it
    /// starts over (writes in flight may have missed the replacement, and
    /// the crash resync does not know it).
    func resumeReplacement() {
        guard let rec = store.lock.withLock({ store.superblock.replacement }) else { return }
        let target = FaultInjectingMember(recovery.replacement ?? environment.directories.member(at: rec.directory))
        let resume = recovery.wasClean && !rec.lastPath.isEmpty
            ? [RebuildCheckpoint(role: rec.role, memberUUID: rec.memberUUID, lastPath: rec.lastPath, bytesDone: rec.bytesDone)] : []
        let why: String? = {
            guard roleState(rec.role) == .active else { return "member \(rec.role) is \(roleState(rec.role).rawValue)" }
            guard let bytes = try? target.readSuperblock(), let sb = try? Superblock.decode(bytes, source: rec.directory) else {
                return "\(rec.directory) has no readable superblock"
            }
            guard sb.arrayUUID == arrayUUID && sb.memberUUID == rec.memberUUID else { return "\(rec.directory) now holds another member" }
            // Starting over, it starts empty, as a new member would: a crash
            // may have cut a namespace change short on it (a rename done on
            // the role's member only), and the copy adds but never removes.
            if resume.isEmpty {
                do { try RAIDArray.emptyNamespace(target) } catch { return "\(rec.directory) could not be emptied to start over: \(error)" }
            }
            return nil
        }()
        if let why {
            store.lock.withLock { store.superblock.replacement = nil }
            eventLog.record(ArrayEvent(kind: .replaceFailed, member: rec.role, message: "replacement of member \(rec.role) not resumed: \(why)"))
            persistStateLoggingFailure("replacement dropped")
            return
        }
        do {
            try commitMembership("replacement of member \(rec.role) resumed", events: { _ in [ArrayEvent(
                kind: .replaceResumed, member: rec.role,
                message: "copying role \(rec.role) onto \(rec.directory) again, " + (resume.isEmpty ? "from the start" : "after \(rec.lastPath)"))] }) { d in
                d.attachShadow(rec.role, Seat(uuid: rec.memberUUID, member: target))
            }
        } catch {
            logger.error("replacement of member \(rec.role) not resumed: \(error)")
            return
        }
        startReplacement(role: rec.role, target: target, uuid: rec.memberUUID, resume: resume)
    }

    /// Gives up a replacement (its member failed a write, or data could not be copied).
    func abandonReplacement(role: Int, _ reason: String) {
        var r: Rebuilder?
        let changed = forceMembership("replacement abandoned") { d in
            guard d.shadows[role] != nil else { return false }
            d.detachShadow(role)
            store.superblock.replacement = nil
            r = maintenance.rebuilder
            return true
        }
        guard changed else { return }
        if let r, r.replacing && r.role == role { r.stop() }
        eventLog.record(ArrayEvent(kind: .replaceFailed, member: role, message: "replacement of member \(role) abandoned: \(reason)"))
    }

    /// The replacement is complete: it takes the role, the old member retires.
    func completeReplacement(_ r: Rebuilder) {
        let role = r.role
        do {
            // Under the namespace lock: no file opens between the new
            // membership and its open files taking the member.
            try namespace.lock.withLock {
                let old: String? = try commitMembership("member \(role) replaced", records: { $0.replacement = nil }, events: { old in
                    old.map { [ArrayEvent(kind: .memberReplaced, member: role, message: "\(r.target.name) took role \(role); \($0) retired (now stale)")] } ?? []
                }) { d in
                    guard let s = d.shadows[role], s.member === r.target else { return nil }
                    let old = d.seats[role]?.member.name ?? "(missing)"
                    d.promoteShadow(role)
                    return old
                }
                guard old != nil else { return }
                health.reset(role)   // the counters are the new member's
                let gen = membership.generations[role]
                for af in namespace.openFiles.values {
                    af.lock.withWriteLock { af.promoteShadow(role: role, generation: gen) }
                }
            }
        } catch {
            eventLog.record(ArrayEvent(kind: .replaceFailed, member: role,
                                       message: "replacement of member \(role) copied but not recorded: \(error); it stays attached"))
        }
    }

    /// Starts a rebuild when a role is lost and a spare is free, or resumes
    /// one the superblocks say was running. Returns the role being rebuilt.
    /// Called when a member fails (every path: raidctl fail, a write error,
    /// the health monitor), when a spare is added, at mount, and by the
    /// monitor every second, so a spare takes over with no one typing.
    @discardableResult
    public func startRebuildIfPossible() -> Int? {
        guard !readOnly, !isShuttingDown else { return nil }
        return maintenance.startLock.withLock { startRebuildLocked() }
    }

    private func startRebuildLocked() -> Int? {
        // Spares found usable in this call, by uuid.
        var probed = Set<String>()
        while true {
            enum Step {
                case none
                /// A role was lost while a rebuild runs: stop it (it leaves
                /// checkpoints) and start one pass for every lost role.
                case restart(Rebuilder)
                case probe(Int, Seat)
                /// The roles to rebuild, their checkpoints, and which of them
                /// spares just took.
                case launch([Rebuilder.Target], [RebuildCheckpoint], [Rebuilder.Target])
                /// A spare starts replacing a degraded role (hot replace).
                case replace(Int, Seat)
            }
            // What to do is decided on the membership in force, and a spare
            // takes its role in the same change the superblocks record.
            var resume: [RebuildCheckpoint] = []
            var replacement: ReplacementRecord? = nil
            let step: Step
            do {
                step = try commitMembership("rebuild started", records: { sb in
                    sb.rebuilds = resume.isEmpty ? nil : resume
                    if let replacement { sb.replacement = replacement }
                }) { d in
                    let lost = (0..<geometry.memberCount).filter { d.states[$0] == .faulty || d.states[$0] == .missing }
                    let canTake = !lost.isEmpty && !d.spares.isEmpty
                        && d.states.filter({ $0 == .active }).count >= geometry.dataChunkCount
                    if let r = maintenance.rebuilder, r.isRunning {
                        return canTake && !r.replacing ? .restart(r) : .none
                    }
                    var targets: [Rebuilder.Target] = (0..<geometry.memberCount).compactMap { r in
                        guard d.states[r] == .rebuilding, let s = d.seats[r] else { return nil }
                        return Rebuilder.Target(role: r, member: s.member, uuid: s.uuid)
                    }
                    resume = store.superblock.rebuilds ?? []
                    var activated: [Rebuilder.Target] = []
                    if canTake {
                        for (role, spare) in zip(lost, d.spares) where !probed.contains(spare.uuid) {
                            return .probe(role, spare)   // probed outside the lock first
                        }
                        for (role, spare) in zip(lost, d.spares) {
                            d.seatSpare(spare.uuid, in: role)
                            resume.removeAll { $0.role == role }
                            activated.append(Rebuilder.Target(role: role, member: spare.member, uuid: spare.uuid))
                        }
                    }
                    targets += activated
                    if targets.isEmpty {
                        // Nothing lost that a spare can take: a spare left
                        // over replaces a degraded member while it serves.
                        guard store.superblock.replacement == nil, let spare = d.spares.first,
                              let role = (0..<geometry.memberCount).first(where: {
                                  d.states[$0] == .active && d.shadows[$0] == nil && health.counters($0).degraded != nil }) else { return .none }
                        if !probed.contains(spare.uuid) { return .probe(role, spare) }
                        d.removeSpare(spare.uuid)
                        d.attachShadow(role, spare)
                        replacement = ReplacementRecord(role: role, memberUUID: spare.uuid, directory: spare.member.name, lastPath: "", bytesDone: 0)
                        return .replace(role, spare)
                    }
                    d.recordOnly()
                    return .launch(targets, resume, activated)
                }
            } catch {
                logger.error("rebuild not started: \(error)")
                return nil
            }
            switch step {
            case .none:
                return nil
            case .restart(let r):
                r.stop()
                environment.jobs.wait(for: r.job) { !r.isRunning }
            case .probe(let role, let spare):
                // A spare that is gone, full or unwritable cannot take over:
                // say so and try the next one rather than keep it listed.
                if let why = unusableSpareReason(spare) {
                    forceMembership("unusable spare dropped") { $0.removeSpare(spare.uuid) }
                    eventLog.record(ArrayEvent(kind: .spareUnusable, member: role,
                                               message: "spare \(spare.member.name) cannot take role \(role) and was dropped: \(why)"))
                } else {
                    probed.insert(spare.uuid)
                }
                continue
            case .launch(let targets, let resume, let activated):
                for t in activated {
                    health.reset(t.role)   // the counters are the new member's
                    eventLog.record(ArrayEvent(kind: .spareActivated, member: t.role, message: "spare \(t.member.name) takes role \(t.role)"))
                }
                let r = Rebuilder(array: self, targets: targets, rateBytesPerSecond: configuration.rebuildRateBytesPerSecond, resume: resume)
                maintenance.rebuilder = r
                r.start()
                return targets[0].role
            case .replace(let role, let spare):
                let why = counters(role).degraded ?? "degraded"
                eventLog.record(ArrayEvent(kind: .replaceStarted, member: role,
                                           message: "copying degraded role \(role) from \(memberName(role)) onto spare \(spare.member.name) (\(why)); it serves until the copy is done"))
                startReplacement(role: role, target: spare.member, uuid: spare.uuid, resume: [])
                return role
            }
        }
    }

    /// Why `spare` cannot hold a role now (nil when it can): it must be
    /// there and take a write of its superblock.
    private func unusableSpareReason(_ spare: Seat) -> String? {
        guard spare.member.isPresent() else { return "its directory or superblock is gone" }
        do { try writeSpareSuperblock(spare.member, uuid: spare.uuid) } catch { return "\(error)" }
        return nil
    }

    func finishRebuild(_ r: Rebuilder) {
        let done: [Rebuilder.Target]
        do {
            done = try commitMembership("rebuild finished", records: { $0.rebuilds = nil }) { d in
                r.targets.filter { t in
                    guard d.states[t.role] == .rebuilding, d.seats[t.role]?.member === t.member else { return false }
                    d.activate(t.role)
                    return true
                }
            }
        } catch {
            // The roles stay rebuilding, as the superblocks say: the next
            // start (the monitor's, within a second) goes over them again.
            logger.error("rebuild finished but not recorded: \(error)")
            return
        }
        guard !done.isEmpty else { return }
        // The intent log goes to active members only: the ones just made
        // active get it now, so a crash that leaves them alone still finds
        // the regions to resync.
        if intentLog.enabled {
            do { try intentLog.persist() } catch { logger.error("intent log after the rebuild: \(error)") }
        }
        let st = r.status
        for t in done {
            eventLog.record(ArrayEvent(kind: .rebuildFinished, member: t.role,
                                       message: "role \(t.role) rebuilt onto \(t.member.name) (\(String(format: "%.1f", st.bytesPerSecond / 1e6)) MB/s); array is \(state.rawValue)"))
        }
        startRebuildIfPossible()
    }
}
