import Foundation
import RAIDControl

/// Every change of membership goes through here: a member failing, a spare
/// coming, going or taking a role, a rebuild ending, a replacement
/// attaching, taking over or being given up. Each runs under
/// `superblockWriteLock`, so changes happen one at a time, in the order the
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
extension RAIDArray {
    /// A change asked for: `change` edits a draft of the membership in
    /// force (under `stateLock`: it may read the array's fields; it throws
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
        let result: T = try superblockWriteLock.withLock {
            var draft = MembershipDraft(roles.current)
            let result = try stateLock.withLock { try change(&draft) }
            guard always || draft.needsPersist else { return result }
            try persistLocked(&draft, clean: clean, reason: reason, records: records, failedHere: &failedHere)
            if draft.needsPersist { stateLock.withLock { roles.publish(draft) } }
            return result
        }
        for e in events(result) { eventLog.record(e) }
        return result
    }

    /// A fact the array must act on: `change` edits a draft of the
    /// membership in force (under `stateLock`) and returns false when there
    /// is nothing to do. Published at once, then persisted (a failure is
    /// logged). Returns whether it changed anything.
    @discardableResult
    func forceMembership(_ reason: String, _ change: (inout MembershipDraft) -> Bool) -> Bool {
        var failedHere: [(role: Int, name: String, error: Error)] = []
        defer { recordSuperblockFailures(failedHere) }
        return superblockWriteLock.withLock {
            var draft = MembershipDraft(roles.current)
            let changed: Bool = stateLock.withLock {
                guard change(&draft) else { return false }
                roles.publish(draft)
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
    /// `superblockWriteLock`.
    private func persistLocked(_ draft: inout MembershipDraft, clean: Bool, reason: String,
                               records: (inout Superblock) -> Void, failedHere: inout [(role: Int, name: String, error: Error)]) throws {
        while true {
            let now = environment.now()
            let (sb, recordedUUIDs): (Superblock, [String]) = stateLock.withLock {
                // Every round moves the counter on: a member that took an
                // earlier round is never mistaken for one of this.
                superblock.events += 1
                var sb = superblock
                let recordedUUIDs = superblock.roles.map { $0.memberUUID }
                records(&sb)
                sb.clean = clean
                sb.updatedAt = now
                sb.counters = counters
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
                stateLock.withLock {
                    records(&superblock)
                    superblock.clean = sb.clean
                    superblock.updatedAt = sb.updatedAt
                    superblock.counters = sb.counters
                    superblock.roles = sb.roles
                    superblock.spares = sb.spares
                }
                logger.info("superblocks at event \(sb.events) written to \(targets.count) members (\(reason))")
                return
            }
            stateLock.withLock {
                var inForce = MembershipDraft(roles.current)
                for (r, _) in failed {
                    counters[r].writeErrors += 1
                    if inForce.states[r] == draft.states[r], inForce.seats[r]?.member === draft.seats[r]?.member { inForce.fail(r) }
                    draft.fail(r)
                }
                roles.publish(inForce)
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
            eventLog.record(ArrayEvent(kind: "member-failed", member: r,
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
            return true
        }
        guard changed else { return }
        eventLog.record(ArrayEvent(kind: "member-failed", member: role,
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
    func failWithinRedundancy(role: Int, reason: String, countsAsWriteError: Bool = true) -> Bool {
        let lost = membership.unreadableCount
        if countsAsWriteError { stateLock.withLock { counters[role].writeErrors += 1 } }
        if lost + 1 > geometry.parityChunkCount && roleState(role) == .active {
            eventLog.record(ArrayEvent(kind: countsAsWriteError ? "write-error" : "member-kept", member: role,
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
        try superblockWriteLock.withLock {
            try spare.writeSuperblock(RAIDArray.spareSuperblock(currentSuperblock, uuid: uuid))
        }
    }

    private static func spareSuperblock(_ sb: Superblock, uuid: String) -> [UInt8] {
        var mine = sb
        mine.role = -1
        mine.memberUUID = uuid
        return mine.encoded()
    }
}
