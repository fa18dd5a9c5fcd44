import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What an administrator does to a running array: fail, remove, add a spare,
/// and the rebuild that follows; and the status they read.
extension RAIDArray {
    /// A role named by index ("2") or by its member's directory.
    public func resolveRole(_ name: String) throws -> Int {
        if let i = Int(name) {
            guard i >= 0 && i < geometry.memberCount else {
                throw FSError.invalid("member \(i): no such role (array has \(geometry.memberCount): 0–\(geometry.memberCount - 1))")
            }
            return i
        }
        let wanted = absolutePath(name)
        for r in 0..<geometry.memberCount where member(r)?.name == wanted || member(r)?.name == name { return r }
        throw FSError.invalid("\(name): not a member of array \(arrayUUID)")
    }

    /// `raidctl fail`: marks a role faulty at once. Refused when that would
    /// lose data (beyond redundancy), unless forced.
    public func failByAdministrator(_ role: Int, force: Bool) throws -> String {
        let (state, lostAfter) = stateLock.withLock { (roleStates[role], roleStates.filter { $0 != .active }.count + 1) }
        guard state == .active || state == .rebuilding else {
            throw FSError.invalid("member \(role) is already \(state.rawValue)")
        }
        if lostAfter > geometry.parityChunkCount && state == .active && !force {
            throw FSError(EBUSY, "failing member \(role) would leave RAID \(geometry.level.rawValue) with \(geometry.memberCount - lostAfter) of \(geometry.memberCount) members: data would be lost (use --force)")
        }
        if state == .rebuilding, let r = stateLock.withLock({ rebuilderSlot }), r.role == role { r.stop() }
        let name = memberName(role)
        memberFailed(role: role, reason: "failed by administrator")
        // A hot spare may hold the role already.
        let spare = memberName(role) != name ? "; spare \(memberName(role)) takes its role" : ""
        return "member \(role) (\(name)) marked faulty; array is \(self.state.rawValue)\(spare)"
    }

    /// `raidctl remove`: detaches a faulty role's member, or a spare.
    public func removeMember(_ name: String, force: Bool) throws -> String {
        if let idx = stateLock.withLock({ spareMembers.firstIndex { $0.member.name == absolutePath(name) || $0.member.name == name } }) {
            let spare = stateLock.withLock { spareMembers.remove(at: idx) }
            try persistState(clean: false, reason: "spare removed")
            eventLog.record(ArrayEvent(kind: "spare-removed", message: "spare \(spare.member.name) removed"))
            return "spare \(spare.member.name) removed"
        }
        let role = try resolveRole(name)
        let state = roleState(role)
        if state == .active || state == .rebuilding {
            guard force else {
                throw FSError(EBUSY, "member \(role) (\(memberName(role))) is \(state.rawValue): fail it first (or use --force)")
            }
            _ = try failByAdministrator(role, force: true)
        }
        let name = memberName(role)
        stateLock.withLock {
            memberSlots[role] = nil
            roleStates[role] = .missing
            activeFlags[role] = 0
            roleGenerations[role] &+= 1
        }
        try persistState(clean: false, reason: "member \(role) removed")
        eventLog.record(ArrayEvent(kind: "member-removed", member: role, message: "\(name) removed from role \(role)"))
        return "member \(role) (\(name)) removed"
    }

    /// `raidctl add`: an empty directory becomes a hot spare; if the array is
    /// degraded the rebuild onto it starts at once. A former member of this
    /// array is taken as a new, empty spare — never trusted as it is.
    public func addSpare(directory: String) throws -> String {
        let dir = absolutePath(directory)
        try requireSeparateDisk(dir)
        for r in 0..<geometry.memberCount where member(r)?.name == dir && isWritable(r) {
            throw FSError.invalid("\(dir) is already member \(r) of this array")
        }
        if spares.contains(where: { $0.name == dir }) { throw FSError.invalid("\(dir) is already a spare") }
        var reused = false
        if let bytes = try? DirectoryMember(root: dir).readSuperblock(), let old = try? Superblock.decode(bytes, source: dir) {
            guard old.arrayUUID == arrayUUID else {
                throw FSError.invalid("\(dir): belongs to another array (\(old.arrayUUID))")
            }
            // A returning member: stale by its event counter. Start it over.
            try ArrayCreator.wipeMember(dir)
            reused = true
        } else {
            try ArrayCreator.checkEmptyDirectory(dir)
        }
        let data = dir + "/" + DirectoryMember.dataDirectoryName
        guard Glibc.mkdir(data, 0o755) == 0 || errno == EEXIST else { throw FSError.system("mkdir", data) }
        let started = try addSpare(member: DirectoryMember(root: dir),
                                   note: "\(dir) added as a hot spare\(reused ? " (a former member, resynced from scratch)" : "")")
        return started.map { "\(dir) added; rebuilding role \($0) onto it" } ?? "\(dir) added as a hot spare"
    }

    /// A spare or replacement must be a disk of its own: not inside the
    /// array's mount (its data would live on the array it protects), and not
    /// inside a member or spare directory.
    func requireSeparateDisk(_ dir: String) throws {
        func inside(_ root: String) -> Bool { dir == root || dir.hasPrefix(root == "/" ? "/" : root + "/") }
        if let mp = mountpoint {
            var a = stat(), b = stat()
            if inside(mp) || (lstat(dir, &a) == 0 && lstat(mp, &b) == 0 && a.st_dev == b.st_dev) {
                throw FSError.invalid("\(dir): inside the array's own mount \(mp); a spare must be a separate disk")
            }
        }
        let others = (0..<geometry.memberCount).compactMap { member($0)?.name } + spares.map { $0.name }
        if let m = others.first(where: { inside($0) && dir != $0 }) {
            throw FSError.invalid("\(dir): inside member \(m); a spare must be a separate disk")
        }
    }

    /// Takes an empty, prepared member as a hot spare; a rebuild onto it
    /// starts at once if a role is lost (returns that role).
    @discardableResult
    func addSpare(member: Member, note: String) throws -> Int? {
        let uuid = UUID().uuidString.lowercased()
        stateLock.withLock { spareMembers.append((uuid, FaultInjectingMember(member))) }
        try persistState(clean: false, reason: "spare added")
        eventLog.record(ArrayEvent(kind: "spare-added", message: note))
        return startRebuildIfPossible()
    }

    /// `raidctl replace`: rebuilds role `name`'s contents onto `directory`
    /// while the role's member keeps serving, then retires that member (as
    /// `mdadm --replace`): redundancy never drops during the copy.
    public func replace(_ name: String, directory: String) throws -> String {
        let role = try resolveRole(name)
        guard roleState(role) == .active else {
            throw FSError.invalid("member \(role) is \(roleState(role).rawValue): use add to rebuild a lost role")
        }
        if stateLock.withLock({ rebuilderSlot?.isRunning == true }) {
            throw FSError(EBUSY, "a rebuild or replacement is already running; wait for it")
        }
        let dir = absolutePath(directory)
        try requireSeparateDisk(dir)
        if let bytes = try? DirectoryMember(root: dir).readSuperblock(), let old = try? Superblock.decode(bytes, source: dir) {
            guard old.arrayUUID == arrayUUID, !(0..<geometry.memberCount).contains(where: { member($0)?.name == dir }) else {
                throw FSError.invalid("\(dir): belongs to \(old.arrayUUID == arrayUUID ? "this array already" : "another array (\(old.arrayUUID))")")
            }
            try ArrayCreator.wipeMember(dir)
        } else {
            try ArrayCreator.checkEmptyDirectory(dir)
        }
        let data = dir + "/" + DirectoryMember.dataDirectoryName
        guard Glibc.mkdir(data, 0o755) == 0 || errno == EEXIST else { throw FSError.system("mkdir", data) }
        let target = FaultInjectingMember(DirectoryMember(root: dir))
        let uuid = UUID().uuidString.lowercased()
        // Until it takes the role it is a spare no one lists: a replacement
        // cut short by an unmount is simply started again.
        var sb = currentSuperblock
        sb.role = -1
        sb.memberUUID = uuid
        try target.writeSuperblock(sb.encoded())
        stateLock.withLock {
            shadowSlots[role] = (uuid, target)
            shadowGenerations[role] &+= 1
            shadowFlags[role] = 1
        }
        let r = Rebuilder(array: self, role: role, target: target, targetUUID: uuid,
                          rateBytesPerSecond: rebuildRateBytesPerSecond, resume: nil, replacing: true)
        stateLock.withLock { rebuilderSlot = r }
        eventLog.record(ArrayEvent(kind: "replace-started", member: role, message: "copying role \(role) from \(memberName(role)) onto \(dir)"))
        r.start()
        return "replacing member \(role) (\(memberName(role))) with \(dir); \(memberName(role)) serves until the copy is done"
    }

    /// Gives up a replacement (its member failed a write, or data could not be copied).
    func abandonReplacement(role: Int, _ reason: String) {
        let r: Rebuilder? = stateLock.withLock {
            guard shadowFlags[role] != 0 else { return nil }
            shadowFlags[role] = 0
            shadowSlots[role] = nil
            shadowGenerations[role] &+= 1
            return rebuilderSlot
        }
        guard let r else { return }
        if r.replacing && r.role == role { r.stop() }
        eventLog.record(ArrayEvent(kind: "replace-failed", member: role, message: "replacement of member \(role) abandoned: \(reason)"))
    }

    /// The replacement is complete: it takes the role, the old member retires.
    func completeReplacement(_ r: Rebuilder) {
        var old = ""
        let done: Bool = namespace.lock.withLock {
            let gen: UInt32? = stateLock.withLock {
                guard shadowFlags[r.role] != 0, let slot = shadowSlots[r.role], slot.member === r.target else { return nil }
                old = memberSlots[r.role]?.name ?? "(missing)"
                roleGenerations[r.role] &+= 1
                resetCountersLocked(r.role)
                memberSlots[r.role] = r.target
                superblock.roles[r.role].memberUUID = slot.uuid
                roleStates[r.role] = .active
                activeFlags[r.role] = 1
                shadowSlots[r.role] = nil
                shadowFlags[r.role] = 0
                return roleGenerations[r.role]
            }
            guard let gen else { return false }
            for af in namespace.openFiles.values {
                af.lock.withWriteLock { af.promoteShadow(role: r.role, generation: gen) }
            }
            return true
        }
        guard done else { return }
        try? persistState(clean: false, reason: "member \(r.role) replaced")
        eventLog.record(ArrayEvent(kind: "member-replaced", member: r.role,
                                   message: "\(r.target.name) took role \(r.role); \(old) retired (now stale)"))
    }

    /// Starts a rebuild when a role is lost and a spare is free, or resumes
    /// one the superblocks say was running. Returns the role being rebuilt.
    /// Called when a member fails (every path: raidctl fail, a write error,
    /// the health monitor), when a spare is added, at mount, and by the
    /// monitor every second, so a spare takes over with no one typing.
    @discardableResult
    public func startRebuildIfPossible() -> Int? {
        guard !readOnly else { return nil }
        return rebuildStartLock.withLock { startRebuildLocked() }
    }

    private func startRebuildLocked() -> Int? {
        while true {
            enum Step { case none, resume(Int, Member, String, RebuildCheckpoint?), candidate(Int, (uuid: String, member: Member)) }
            let step: Step = stateLock.withLock {
                if rebuilderSlot?.isRunning == true { return .none }
                if let r = (0..<geometry.memberCount).first(where: { roleStates[$0] == .rebuilding }), let m = memberSlots[r] {
                    return .resume(r, m, superblock.roles[r].memberUUID, superblock.rebuild)
                }
                guard let r = (0..<geometry.memberCount).first(where: { roleStates[$0] == .faulty || roleStates[$0] == .missing }),
                      let spare = spareMembers.first,
                      roleStates.filter({ $0 == .active }).count >= geometry.dataChunkCount else { return .none }
                return .candidate(r, spare)
            }
            switch step {
            case .none:
                return nil
            case .resume(let role, let target, let uuid, let checkpoint):
                return launchRebuild(role: role, target: target, uuid: uuid, checkpoint: checkpoint)
            case .candidate(let role, let spare):
                // A spare that is gone, full or unwritable cannot take over:
                // say so and try the next one rather than keep it listed.
                if let why = unusableSpareReason(spare) {
                    stateLock.withLock { spareMembers.removeAll { $0.uuid == spare.uuid } }
                    eventLog.record(ArrayEvent(kind: "spare-unusable", member: role,
                                               message: "spare \(spare.member.name) cannot take role \(role) and was dropped: \(why)"))
                    do { try persistState(clean: false, reason: "unusable spare dropped") } catch {
                        logger.error("dropping spare \(spare.member.name): \(error)")
                    }
                    continue
                }
                let taken: Bool = stateLock.withLock {
                    guard roleStates[role] == .faulty || roleStates[role] == .missing,
                          let i = spareMembers.firstIndex(where: { $0.uuid == spare.uuid }) else { return false }
                    spareMembers.remove(at: i)
                    memberSlots[role] = spare.member
                    roleGenerations[role] &+= 1
                    resetCountersLocked(role)   // the counters are the new member's
                    roleStates[role] = .rebuilding
                    superblock.roles[role].memberUUID = spare.uuid
                    superblock.rebuild = nil
                    activeFlags[role] = 2
                    return true
                }
                guard taken else { continue }
                eventLog.record(ArrayEvent(kind: "spare-activated", member: role,
                                           message: "spare \(spare.member.name) takes role \(role)"))
                return launchRebuild(role: role, target: spare.member, uuid: spare.uuid, checkpoint: nil)
            }
        }
    }

    /// Why `spare` cannot hold a role now (nil when it can): it must be
    /// there and take a write of its superblock.
    private func unusableSpareReason(_ spare: (uuid: String, member: Member)) -> String? {
        guard spare.member.isPresent() else { return "its directory or superblock is gone" }
        var sb = currentSuperblock
        sb.role = -1
        sb.memberUUID = spare.uuid
        do { try spare.member.writeSuperblock(sb.encoded()) } catch { return "\(error)" }
        return nil
    }

    private func launchRebuild(role: Int, target: Member, uuid: String, checkpoint: RebuildCheckpoint?) -> Int? {
        do {
            try persistState(clean: false, reason: "rebuild of role \(role) started")
        } catch {
            logger.error("rebuild of role \(role): \(error)")
            return nil
        }
        let r = Rebuilder(array: self, role: role, target: target, targetUUID: uuid,
                          rateBytesPerSecond: rebuildRateBytesPerSecond, resume: checkpoint)
        stateLock.withLock { rebuilderSlot = r }
        r.start()
        return role
    }

    /// True while `r`'s target still holds its role (being rebuilt, or
    /// attached as the replacement).
    func isCurrentTarget(_ r: Rebuilder) -> Bool {
        stateLock.withLock {
            if r.replacing { return shadowSlots[r.role]?.member === r.target }
            return roleStates[r.role] == .rebuilding && memberSlots[r.role] === r.target
        }
    }

    func checkpointRebuild(_ c: RebuildCheckpoint) {
        try? persistState(clean: false, reason: "rebuild checkpoint", checkpoint: .some(c))
    }

    func finishRebuild(_ r: Rebuilder) {
        let ok: Bool = stateLock.withLock {
            guard roleStates[r.role] == .rebuilding, memberSlots[r.role] === r.target else { return false }
            roleStates[r.role] = .active
            activeFlags[r.role] = 1
            return true
        }
        guard ok else { return }
        try? persistState(clean: false, reason: "rebuild of role \(r.role) finished", checkpoint: .some(nil))
        let st = r.status
        eventLog.record(ArrayEvent(kind: "rebuild-finished", member: r.role,
                                   message: "role \(r.role) rebuilt onto \(r.target.name) (\(String(format: "%.1f", st.bytesPerSecond / 1e6)) MB/s); array is \(state.rawValue)"))
        startRebuildIfPossible()
    }

    func rebuildMissed() {
        stateLock.withLock { rebuilderSlot }?.missed()
    }

    public var rebuildStatus: ProgressStatus {
        stateLock.withLock { rebuilderSlot }?.status
            ?? ProgressStatus(running: false, progress: 0, bytesPerSecond: 0, etaSeconds: nil)
    }

    /// What `raidctl status` shows.
    public func status() -> ArrayStatus {
        let (states, names, sb) = stateLock.withLock { (roleStates, memberSlots.map { $0?.name ?? "" }, superblock) }
        let rebuild = rebuildStatus
        return ArrayStatus(
            arrayUUID: arrayUUID, level: geometry.level.rawValue, chunkSizeBytes: geometry.chunkSizeBytes,
            state: state.rawValue, events: sb.events,
            members: (0..<geometry.memberCount).map { r in
                let c = counters(r)
                let faults = injectedFaults(r)
                return MemberStatus(index: r, path: names[r], state: states[r].rawValue,
                                    readErrors: c.readErrors, writeErrors: c.writeErrors, checksumErrors: c.checksumErrors,
                                    faults: faults.isEmpty ? nil : faults)
            },
            spares: spares.map { $0.name },
            rebuild: rebuild,
            scrub: scrubStatus)
    }
}
