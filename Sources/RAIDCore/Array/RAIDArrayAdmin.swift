import Foundation
import RAIDControl
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
        let m = membership
        let (state, lostAfter) = (m.states[role], m.unreadableCount + 1)
        guard state == .active || state == .rebuilding else {
            throw FSError.invalid("member \(role) is already \(state.rawValue)")
        }
        if lostAfter > geometry.parityChunkCount && state == .active && !force {
            throw FSError(EBUSY, "failing member \(role) would leave RAID \(geometry.level.rawValue) with \(geometry.memberCount - lostAfter) of \(geometry.memberCount) members: data would be lost (use --force)")
        }
        // A rebuild onto this role's member drops it and goes on with the others.
        let name = memberName(role)
        memberFailed(role: role, reason: "failed by administrator")
        // memberFailed starts a spare on a thread of its own (its callers
        // may hold a file's lock); this caller holds none, so start it here
        // and answer with the spare already holding the role, as `status`
        // right after will show.
        if !readOnly { startRebuildIfPossible() }
        let spare = memberName(role) != name ? "; spare \(memberName(role)) takes its role" : ""
        return "member \(role) (\(name)) marked faulty; array is \(self.state.rawValue)\(spare)"
    }

    /// `raidctl remove`: detaches a faulty role's member, or a spare.
    public func removeMember(_ name: String, force: Bool) throws -> String {
        if let spare = membership.spares.first(where: { $0.member.name == absolutePath(name) || $0.member.name == name }) {
            try commitMembership("spare removed", events: { _ in [ArrayEvent(kind: "spare-removed", message: "spare \(spare.member.name) removed")] }) { d in
                guard d.removeSpare(spare.uuid) else { throw FSError.invalid("\(spare.member.name): no longer a spare (it took a role)") }
            }
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
        try commitMembership("member \(role) removed",
                             events: { _ in [ArrayEvent(kind: "member-removed", member: role, message: "\(name) removed from role \(role)")] }) { d in
            guard d.states[role] == .faulty || d.states[role] == .missing else {
                throw FSError(EBUSY, "member \(role) (\(name)) is \(d.states[role].rawValue) again (a spare took its role): nothing removed")
            }
            d.vacate(role)
        }
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
        let reused = try prepareNewMemberDirectory(dir)
        let started = try addSpare(member: DirectoryMember(root: dir),
                                   note: "\(dir) added as a hot spare\(reused ? " (a former member, resynced from scratch)" : "")")
        return started.map { "\(dir) added; rebuilding role \($0) onto it" } ?? "\(dir) added as a hot spare"
    }

    /// Makes `dir` ready to join as a new member: empty (but for an ext4
    /// lost+found), or a former member of this array, which is stale by its
    /// event counter and started over; then its data root. True for a
    /// former member.
    private func prepareNewMemberDirectory(_ dir: String) throws -> Bool {
        var reused = false
        if let bytes = try? DirectoryMember(root: dir).readSuperblock(), let old = try? Superblock.decode(bytes, source: dir) {
            guard old.arrayUUID == arrayUUID else {
                throw FSError.invalid("\(dir): belongs to another array (\(old.arrayUUID))")
            }
            try ArrayCreator.wipeMember(dir)
            reused = true
        } else {
            try ArrayCreator.checkEmptyDirectory(dir)
        }
        let data = dir + "/" + DirectoryMember.dataDirectoryName
        guard Glibc.mkdir(data, 0o755) == 0 || errno == EEXIST else { throw FSError.system("mkdir", data) }
        return reused
    }

    /// A spare or replacement must be a disk of its own: not inside the
    /// array's mount (its data would live on the array it protects), and not
    /// inside a member or spare directory. `dir` is resolved (realpath), so
    /// the path says it; the daemon does not stat its own mount, which would
    /// wait on itself.
    func requireSeparateDisk(_ dir: String) throws {
        func inside(_ root: String) -> Bool { dir == root || dir.hasPrefix(root == "/" ? "/" : root + "/") }
        if let mp = mountpoint, inside(mp) {
            throw FSError.invalid("\(dir): inside the array's own mount \(mp); a spare must be a separate disk")
        }
        let others = (0..<geometry.memberCount).compactMap { member($0)?.name } + spares.map { $0.name }
        if let m = others.first(where: { inside($0) && dir != $0 }) {
            throw FSError.invalid("\(dir): inside member \(m); a spare must be a separate disk")
        }
    }

    /// Takes an empty, prepared member as a hot spare; a rebuild onto it
    /// starts at once if a role is lost (returns that role).
    @discardableResult
    public func addSpare(member: Member, note: String) throws -> Int? {
        let uuid = environment.newUUID()
        let spare = FaultInjectingMember(member)
        // Its superblock first: once listed, a failover on another thread
        // may probe it at once, and would drop a spare with none.
        try writeSpareSuperblock(spare, uuid: uuid)
        try commitMembership("spare added", events: { _ in [ArrayEvent(kind: "spare-added", message: note)] }) { d in
            d.addSpare(Seat(uuid: uuid, member: spare))
        }
        startRebuildIfPossible()
        // The role it took, whichever thread started the rebuild: a member
        // failure's own thread may have got there first.
        return membership.seats.firstIndex { $0?.uuid == uuid }
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
        if (0..<geometry.memberCount).contains(where: { member($0)?.name == dir }) {
            throw FSError.invalid("\(dir): belongs to this array already")
        }
        _ = try prepareNewMemberDirectory(dir)
        try replace(role: role, with: DirectoryMember(root: dir))
        return "replacing member \(role) (\(memberName(role))) with \(dir); \(memberName(role)) serves until the copy is done"
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
                             events: { _ in [ArrayEvent(kind: "replace-started", member: role, message: "copying role \(role) from \(self.memberName(role)) onto \(member.name)")] }) { d in
            guard d.states[role] == .active, d.shadows[role] == nil, superblock.replacement == nil else {
                throw FSError(EBUSY, "member \(role) is \(d.states[role].rawValue) or already being replaced")
            }
            d.attachShadow(role, Seat(uuid: uuid, member: target))
        }
        startReplacement(role: role, target: target, uuid: uuid, resume: [])
    }

    /// Starts the copy onto the replacement `commitMembership` attached.
    private func startReplacement(role: Int, target: Member, uuid: String, resume: [RebuildCheckpoint]) {
        let r = Rebuilder(array: self, targets: [.init(role: role, member: target, uuid: uuid)],
                          rateBytesPerSecond: rebuildRateBytesPerSecond, resume: resume, replacing: true)
        stateLock.withLock { rebuilderSlot = r }
        r.start()
    }

    /// At mount: a `raidctl replace` an unmount or crash cut short goes on.
    /// After a clean unmount it resumes at its checkpoint; after a crash it
    /// starts over (writes in flight may have missed the replacement, and
    /// the crash resync does not know it).
    func resumeReplacement() {
        guard let rec = stateLock.withLock({ superblock.replacement }) else { return }
        let target = FaultInjectingMember(assembledReplacement ?? DirectoryMember(root: rec.directory))
        let resume = wasCleanAtAssembly && !rec.lastPath.isEmpty
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
            stateLock.withLock { superblock.replacement = nil }
            eventLog.record(ArrayEvent(kind: "replace-failed", member: rec.role, message: "replacement of member \(rec.role) not resumed: \(why)"))
            persistStateLoggingFailure("replacement dropped")
            return
        }
        do {
            try commitMembership("replacement of member \(rec.role) resumed", events: { _ in [ArrayEvent(
                kind: "replace-resumed", member: rec.role,
                message: "copying role \(rec.role) onto \(rec.directory) again, " + (resume.isEmpty ? "from the start" : "after \(rec.lastPath)"))] }) { d in
                d.attachShadow(rec.role, Seat(uuid: rec.memberUUID, member: target))
            }
        } catch {
            logger.error("replacement of member \(rec.role) not resumed: \(error)")
            return
        }
        startReplacement(role: rec.role, target: target, uuid: rec.memberUUID, resume: resume)
    }

    /// Removes every entry of `m`'s namespace under `dir`, through the
    /// Member seam (the orphan directory stays, emptied).
    static func emptyNamespace(_ m: Member, _ dir: String = "/") throws {
        for e in try m.list(dir) where e.name != "." && e.name != ".." {
            let p = dir == "/" ? "/" + e.name : dir + "/" + e.name
            if e.type == UInt8(DT_DIR) {
                try emptyNamespace(m, p)
                if p != RAIDArray.orphanDirectory { try m.rmdir(p) }
            } else {
                try m.unlink(p)
            }
        }
    }

    /// Where a replacement's copy stands (every two seconds, and at unmount).
    func checkpointReplacement(lastPath: String, bytesDone: UInt64) {
        stateLock.withLock {
            superblock.replacement?.lastPath = lastPath
            superblock.replacement?.bytesDone = bytesDone
        }
        persistStateLoggingFailure("replacement checkpoint")
    }

    /// Gives up a replacement (its member failed a write, or data could not be copied).
    func abandonReplacement(role: Int, _ reason: String) {
        var r: Rebuilder?
        let changed = forceMembership("replacement abandoned") { d in
            guard d.shadows[role] != nil else { return false }
            d.detachShadow(role)
            superblock.replacement = nil
            r = rebuilderSlot
            return true
        }
        guard changed else { return }
        if let r, r.replacing && r.role == role { r.stop() }
        eventLog.record(ArrayEvent(kind: "replace-failed", member: role, message: "replacement of member \(role) abandoned: \(reason)"))
    }

    /// The replacement is complete: it takes the role, the old member retires.
    func completeReplacement(_ r: Rebuilder) {
        let role = r.role
        do {
            // Under the namespace lock: no file opens between the new
            // membership and its open files taking the member.
            try namespace.lock.withLock {
                let old: String? = try commitMembership("member \(role) replaced", records: { $0.replacement = nil }, events: { old in
                    old.map { [ArrayEvent(kind: "member-replaced", member: role, message: "\(r.target.name) took role \(role); \($0) retired (now stale)")] } ?? []
                }) { d in
                    guard let s = d.shadows[role], s.member === r.target else { return nil }
                    let old = d.seats[role]?.member.name ?? "(missing)"
                    d.promoteShadow(role)
                    return old
                }
                guard old != nil else { return }
                stateLock.withLock { resetCountersLocked(role) }   // the counters are the new member's
                let gen = membership.generations[role]
                for af in namespace.openFiles.values {
                    af.lock.withWriteLock { af.promoteShadow(role: role, generation: gen) }
                }
            }
        } catch {
            eventLog.record(ArrayEvent(kind: "replace-failed", member: role,
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
        return rebuildStartLock.withLock { startRebuildLocked() }
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
            }
            // What to do is decided on the membership in force, and a spare
            // takes its role in the same change the superblocks record.
            var resume: [RebuildCheckpoint] = []
            let step: Step
            do {
                step = try commitMembership("rebuild started", records: { $0.rebuilds = resume.isEmpty ? nil : resume }) { d in
                    let lost = (0..<geometry.memberCount).filter { d.states[$0] == .faulty || d.states[$0] == .missing }
                    let canTake = !lost.isEmpty && !d.spares.isEmpty
                        && d.states.filter({ $0 == .active }).count >= geometry.dataChunkCount
                    if let r = rebuilderSlot, r.isRunning {
                        return canTake && !r.replacing ? .restart(r) : .none
                    }
                    var targets: [Rebuilder.Target] = (0..<geometry.memberCount).compactMap { r in
                        guard d.states[r] == .rebuilding, let s = d.seats[r] else { return nil }
                        return Rebuilder.Target(role: r, member: s.member, uuid: s.uuid)
                    }
                    resume = superblock.rebuilds ?? []
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
                    guard !targets.isEmpty else { return .none }
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
                    eventLog.record(ArrayEvent(kind: "spare-unusable", member: role,
                                               message: "spare \(spare.member.name) cannot take role \(role) and was dropped: \(why)"))
                } else {
                    probed.insert(spare.uuid)
                }
                continue
            case .launch(let targets, let resume, let activated):
                for t in activated {
                    stateLock.withLock { resetCountersLocked(t.role) }   // the counters are the new member's
                    eventLog.record(ArrayEvent(kind: "spare-activated", member: t.role, message: "spare \(t.member.name) takes role \(t.role)"))
                }
                let r = Rebuilder(array: self, targets: targets, rateBytesPerSecond: rebuildRateBytesPerSecond, resume: resume)
                stateLock.withLock { rebuilderSlot = r }
                r.start()
                return targets[0].role
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

    /// True while `t`'s member still holds its role for `r` (being rebuilt,
    /// or attached as the replacement).
    func isCurrentTarget(_ r: Rebuilder, _ t: Rebuilder.Target) -> Bool {
        let m = membership
        if r.replacing { return m.shadows[t.role]?.member === t.member }
        return m.states[t.role] == .rebuilding && m.seats[t.role]?.member === t.member
    }

    func checkpointRebuild(_ c: [RebuildCheckpoint]) {
        persistStateLoggingFailure("rebuild checkpoint", rebuilds: .some(c))
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
            eventLog.record(ArrayEvent(kind: "rebuild-finished", member: t.role,
                                       message: "role \(t.role) rebuilt onto \(t.member.name) (\(String(format: "%.1f", st.bytesPerSecond / 1e6)) MB/s); array is \(state.rawValue)"))
        }
        startRebuildIfPossible()
    }

    /// A member being rebuilt (or the replacement) missed a namespace
    /// change: the running rebuild walks again.
    func rebuildMissed() { toRebuild { $0.missed() } }

    /// Tells the running rebuild about a namespace change or an open it
    /// must account for. With none running — a mount has not resumed it
    /// yet, though its members already take the writes — its checkpoints
    /// could skip what changed: they are dropped, and it starts from the top.
    func toRebuild(_ tell: (Rebuilder) -> Void) {
        if let r = stateLock.withLock({ rebuilderSlot }), r.isRunning {
            tell(r)
            return
        }
        let dropped: Bool = stateLock.withLock {
            var any = false
            if superblock.rebuilds != nil { superblock.rebuilds = nil; any = true }
            if superblock.replacement != nil && superblock.replacement!.lastPath != "" {
                superblock.replacement!.lastPath = ""
                superblock.replacement!.bytesDone = 0
                any = true
            }
            return any
        }
        if dropped { persistStateLoggingFailure("a member being rebuilt may have missed a change before its rebuild resumed; it starts over") }
    }

    public var rebuildStatus: ProgressStatus {
        stateLock.withLock { rebuilderSlot }?.status
            ?? ProgressStatus(running: false, progress: 0, bytesPerSecond: 0, etaSeconds: nil)
    }

    /// What `raidctl status` shows.
    public func status() -> ArrayStatus {
        let m = membership
        let (states, names, sb) = (m.states, m.seats.map { $0?.member.name ?? "" }, currentSuperblock)
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
