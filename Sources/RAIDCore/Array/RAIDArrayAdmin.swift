import Foundation
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// What an administrator asks of a running array (fail, remove, add a
/// spare, replace) and the status they read: names resolved, arguments
/// and directories checked. The membership changes they lead to are made
/// in MembershipChanges.swift.
extension RAIDArray {
    /// A role named by index ("2") or by its member's directory.
    public func resolveRole(_ name: String) throws -> Int {
        if let i = Int(name) {
            guard i >= 0 && i < geometry.memberCount else {
                throw FSError.invalid("member \(i): no such role (array has \(geometry.memberCount): 0–\(geometry.memberCount - 1))")
            }
            return i
        }
        let wanted = environment.directories.resolve(name)
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
        if let spare = membership.spares.first(where: { $0.member.name == environment.directories.resolve(name) || $0.member.name == name }) {
            try removeSpare(spare)
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
        try vacate(role)
        return "member \(role) (\(name)) removed"
    }

    /// `raidctl add`: an empty directory becomes a hot spare; if the array is
    /// degraded the rebuild onto it starts at once. A former member of this
    /// array is taken as a new, empty spare — never trusted as it is.
    public func addSpare(directory: String) throws -> String {
        let dir = environment.directories.resolve(directory)
        try requireSeparateDisk(dir)
        for r in 0..<geometry.memberCount where member(r)?.name == dir && isWritable(r) {
            throw FSError.invalid("\(dir) is already member \(r) of this array")
        }
        if spares.contains(where: { $0.name == dir }) { throw FSError.invalid("\(dir) is already a spare") }
        let reused = try prepareNewMemberDirectory(dir)
        let started = try addSpare(member: environment.directories.member(at: dir),
                                   note: "\(dir) added as a hot spare\(reused ? " (a former member, resynced from scratch)" : "")")
        guard let role = started else { return "\(dir) added as a hot spare" }
        return shadowMember(role) == nil ? "\(dir) added; rebuilding role \(role) onto it"
            : "\(dir) added; replacing degraded member \(role) with it (the member serves until the copy is done)"
    }

    /// Makes `dir` ready to join as a new member: empty (but for an ext4
    /// lost+found), or a former member of this array, which is stale by its
    /// event counter and started over; then its data root. True for a
    /// former member.
    private func prepareNewMemberDirectory(_ dir: String) throws -> Bool {
        let provider = environment.directories
        var reused = false
        if let bytes = try? provider.member(at: dir).readSuperblock(), let old = try? Superblock.decode(bytes, source: dir) {
            guard old.arrayUUID == arrayUUID else {
                throw FSError.invalid("\(dir): belongs to another array (\(old.arrayUUID))")
            }
            try provider.wipe(dir)
            reused = true
        } else {
            try ArrayCreator.checkEmptyDirectory(dir, provider)
        }
        if !layout.metadataInFile && !provider.takesUserAttributes(dir) {
            throw FSError(ENOTSUP, "\(dir): its filesystem takes no user extended attributes, where this array's member files keep their headers (arrays created with such a member keep them in the files)")
        }
        try provider.makeDataRoot(dir)
        return reused
    }

    /// A spare or replacement must be a disk of its own: not inside the
    /// array's mount (its data would live on the array it protects), and not
    /// inside a member or spare directory. `dir` is resolved (realpath), so
    /// the path says it; the daemon does not stat its own mount, which would
    /// wait on itself.
    func requireSeparateDisk(_ dir: String) throws {
        func inside(_ root: String) -> Bool { dir == root || dir.hasPrefix(root == "/" ? "/" : root + "/") }
        if let mp = configuration.mountpoint, inside(mp) {
            throw FSError.invalid("\(dir): inside the array's own mount \(mp); a spare must be a separate disk")
        }
        let others = (0..<geometry.memberCount).compactMap { member($0)?.name } + spares.map { $0.name }
        if let m = others.first(where: { inside($0) && dir != $0 }) {
            throw FSError.invalid("\(dir): inside member \(m); a spare must be a separate disk")
        }
    }

    /// `raidctl replace`: rebuilds role `name`'s contents onto `directory`
    /// while the role's member keeps serving, then retires that member (as
    /// `mdadm --replace`): redundancy never drops during the copy.
    public func replace(_ name: String, directory: String) throws -> String {
        let role = try resolveRole(name)
        guard roleState(role) == .active else {
            throw FSError.invalid("member \(role) is \(roleState(role).rawValue): use add to rebuild a lost role")
        }
        if maintenance.rebuilder?.isRunning == true {
            throw FSError(EBUSY, "a rebuild or replacement is already running; wait for it")
        }
        let dir = environment.directories.resolve(directory)
        try requireSeparateDisk(dir)
        if (0..<geometry.memberCount).contains(where: { member($0)?.name == dir }) {
            throw FSError.invalid("\(dir): belongs to this array already")
        }
        _ = try prepareNewMemberDirectory(dir)
        try replace(role: role, with: environment.directories.member(at: dir))
        return "replacing member \(role) (\(memberName(role))) with \(dir); \(memberName(role)) serves until the copy is done"
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
        store.lock.withLock {
            store.superblock.replacement?.lastPath = lastPath
            store.superblock.replacement?.bytesDone = bytesDone
        }
        persistStateLoggingFailure("replacement checkpoint")
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

    /// A member being rebuilt (or the replacement) missed a namespace
    /// change: the running rebuild walks again.
    func rebuildMissed() { toRebuild { $0.missed() } }

    /// Tells the running rebuild about a namespace change or an open it
    /// must account for. With none running — a mount has not resumed it
    /// yet, though its members already take the writes — its checkpoints
    /// could skip what changed: they are dropped, and it starts from the top.
    func toRebuild(_ tell: (Rebuilder) -> Void) {
        if let r = maintenance.rebuilder, r.isRunning {
            tell(r)
            return
        }
        let dropped: Bool = store.lock.withLock {
            var any = false
            if store.superblock.rebuilds != nil { store.superblock.rebuilds = nil; any = true }
            if store.superblock.replacement != nil && store.superblock.replacement!.lastPath != "" {
                store.superblock.replacement!.lastPath = ""
                store.superblock.replacement!.bytesDone = 0
                any = true
            }
            return any
        }
        if dropped { persistStateLoggingFailure("a member being rebuilt may have missed a change before its rebuild resumed; it starts over") }
    }

    public var rebuildStatus: ProgressStatus {
        maintenance.rebuilder?.status
            ?? ProgressStatus(running: false, progress: 0, bytesPerSecond: 0, etaSeconds: nil)
    }

    /// What `raidctl status` shows.
    public func status() -> ArrayStatus {
        let m = membership
        let (states, names, sb) = (m.states, m.seats.map { $0?.member.name ?? "" }, currentSuperblock)
        let rebuild = rebuildStatus
        let health = (0..<geometry.memberCount).map { self.counters($0) }
        // A degraded member still serves, but its errors are past the
        // budget: the array says degraded, as a ZFS pool with a DEGRADED
        // device does, so that `status`'s exit code tells a monitor.
        let arrayState = state == .clean && health.contains { $0.degraded != nil } ? "degraded" : state.rawValue
        return ArrayStatus(
            arrayUUID: arrayUUID, level: geometry.level.rawValue, chunkSizeBytes: geometry.chunkSizeBytes,
            state: arrayState, events: sb.events,
            members: (0..<geometry.memberCount).map { r in
                let c = health[r]
                let faults = injectedFaults(r)
                let degraded = states[r] == .active && c.degraded != nil
                return MemberStatus(index: r, path: names[r], state: degraded ? "degraded" : states[r].rawValue,
                                    readErrors: c.readErrors, writeErrors: c.writeErrors, checksumErrors: c.checksumErrors,
                                    faults: faults.isEmpty ? nil : faults,
                                    reason: states[r] == .active ? c.degraded : (states[r] == .faulty ? c.faulted : nil),
                                    io: m.seats[r]?.member.ioCounters?.snapshot())
            },
            spares: spares.map { $0.name },
            rebuild: rebuild,
            scrub: scrubStatus)
    }
}
