#if canImport(Glibc)
import Glibc
#endif

/// What assembly decided about each directory it was given.
public struct AssemblyReport: Sendable {
    public struct LeftOut: Sendable {
        public let directory: String
        public let reason: String
    }
    public var leftOut: [LeftOut] = []
    public init() {}
    public var missingRoles: [Int] = []
    /// Members a forced assembly took back, described for people.
    public var forcedBack: [String] = []

    public var lines: [String] {
        leftOut.map { "left out \($0.directory): \($0.reason)" }
            + missingRoles.map { "role \($0) missing" }
            + forcedBack.map { "forced back \($0): resyncing it before serving" }
    }
}

/// Reads the superblocks of the named directories and decides which members
/// form the array, as md's assemble does: members of another array refuse the
/// whole assembly, stale or unreadable members are left out and reported, and
/// too few usable members refuse it.
public enum Assembler {
    public struct Candidate {
        public let member: Member
        public let superblock: Superblock
    }

    public struct Plan {
        public let superblock: Superblock          // the freshest, authoritative
        public let membersByRole: [Member?]
        public let spares: [Candidate]
        /// The member a `raidctl replace` was copying onto, when it was
        /// among those given (else the array opens the directory the
        /// replacement record names).
        public var replacement: Member? = nil
        public let report: AssemblyReport
        /// Roles a forced assembly took back, with their event counters.
        public var forced: [(role: Int, events: UInt64)] = []
    }

    public static func plan(directories: [String], in provider: MemberDirectories = HostDirectories(),
                            force: Bool = false) throws -> Plan {
        guard !directories.isEmpty else { throw FSError.invalid("no member directories given") }
        var report = AssemblyReport()
        var members: [Member] = []
        var seen: [String: String] = [:]
        for given in directories {
            // The daemon changes directory to / once mounted: keep absolute paths.
            let dir = provider.resolve(given)
            let id: String
            do {
                id = try provider.identity(of: dir)
            } catch let e as FSError {
                report.leftOut.append(.init(directory: dir, reason: "cannot open: \(String(cString: strerror(e.errno)))"))
                continue
            }
            if let other = seen[id] {
                throw FSError.invalid("\(dir): named twice (same directory as \(other))")
            }
            seen[id] = dir
            members.append(provider.member(at: dir))
        }
        return try plan(members: members, report: report, force: force)
    }

    /// Decides the array from members of any kind (directories, simulated).
    /// With `force`, as `mdadm --assemble --force`: when too few members
    /// are usable, the freshest of those left out as stale or marked faulty
    /// (whose role the array still gives them) are taken back until the
    /// level's minimum is reached. The caller resyncs them whole.
    public static func plan(members: [Member], report initial: AssemblyReport = AssemblyReport(),
                            force: Bool = false) throws -> Plan {
        var report = initial
        var candidates: [Candidate] = []
        for member in members {
            do {
                let sb = try Superblock.decode(try member.readSuperblock(), source: member.name)
                candidates.append(Candidate(member: member, superblock: sb))
            } catch let e as FSError {
                report.leftOut.append(.init(directory: member.name, reason: e.message))
            }
        }
        let arrays = Dictionary(grouping: candidates, by: { $0.superblock.arrayUUID })
        if arrays.count > 1 {
            let names = candidates.map { "\($0.member.name) (array \($0.superblock.arrayUUID))" }.joined(separator: ", ")
            throw FSError.invalid("members of different arrays named together: \(names)")
        }
        guard let maxEvents = candidates.map({ $0.superblock.events }).max(),
              let freshest = candidates.first(where: { $0.superblock.events == maxEvents })?.superblock else {
            let reasons = report.leftOut.map { "\($0.directory): \($0.reason)" }.joined(separator: "; ")
            throw FSError.invalid("no usable member: \(reasons)")
        }
        let geometry = freshest.geometry
        var byRole = [Member?](repeating: nil, count: geometry.memberCount)
        var spares: [Candidate] = []
        var replacement: Member? = nil
        /// Left out only for being behind: what a forced assembly may take back.
        var takeable: [Candidate] = []
        for c in candidates {
            let sb = c.superblock
            if sb.level != freshest.level || sb.memberCount != freshest.memberCount || sb.chunkSizeBytes != freshest.chunkSizeBytes {
                throw FSError.invalid("\(c.member.name): geometry disagrees with the other members of array \(sb.arrayUUID)")
            }
            // As mdadm, one event behind is fresh enough: a crash while the
            // superblocks were being written leaves some members one behind,
            // and the freshest one still says what became of their role.
            if sb.role < 0 && freshest.replacement?.memberUUID == sb.memberUUID {
                replacement = c.member   // taking over a role (raidctl replace): resumed by the array
                continue
            }
            if sb.events + 1 < maxEvents {
                report.leftOut.append(.init(directory: c.member.name,
                                            reason: "stale (event counter \(sb.events), array at \(maxEvents)); kicked as non-fresh"))
                if sb.role >= 0 && freshest.roles[sb.role].memberUUID == sb.memberUUID { takeable.append(c) }
                continue
            }
            if sb.role < 0 {
                if freshest.spares.contains(sb.memberUUID) { spares.append(c) }
                else { report.leftOut.append(.init(directory: c.member.name, reason: "spare no longer listed by the array")) }
                continue
            }
            let record = freshest.roles[sb.role]
            if record.memberUUID != sb.memberUUID {
                report.leftOut.append(.init(directory: c.member.name, reason: "role \(sb.role) now belongs to another member"))
                continue
            }
            if record.state == .faulty || record.state == .missing {
                report.leftOut.append(.init(directory: c.member.name, reason: "marked \(record.state.rawValue) by the array"))
                takeable.append(c)
                continue
            }
            if let other = byRole[sb.role] {
                throw FSError.invalid("\(c.member.name) and \(other.name) both claim role \(sb.role)")
            }
            byRole[sb.role] = c.member
        }
        // A member still being rebuilt holds writes, not yet data.
        func usableCount() -> Int {
            (0..<geometry.memberCount).filter { byRole[$0] != nil && freshest.roles[$0].state != .rebuilding }.count
        }
        // Freshest first; one member per role.
        takeable.sort { $0.superblock.events > $1.superblock.events }
        var forced: [(role: Int, events: UInt64)] = []
        if force {
            for c in takeable where usableCount() < geometry.dataChunkCount && byRole[c.superblock.role] == nil {
                byRole[c.superblock.role] = c.member
                forced.append((c.superblock.role, c.superblock.events))
                report.leftOut.removeAll { $0.directory == c.member.name }
                report.forcedBack.append("\(c.member.name) (role \(c.superblock.role), event counter \(c.superblock.events), array at \(maxEvents))")
            }
        }
        report.missingRoles = (0..<geometry.memberCount).filter { byRole[$0] == nil }
        if usableCount() < geometry.dataChunkCount {
            var why = "RAID \(geometry.level.rawValue) array \(freshest.arrayUUID) needs at least \(geometry.dataChunkCount) of \(geometry.memberCount) members; usable: "
            why += byRole.compactMap { $0?.name }.joined(separator: ", ")
            if !report.leftOut.isEmpty {
                why += "; left out: " + report.leftOut.map { "\($0.directory) (\($0.reason))" }.joined(separator: ", ")
            }
            let seen = Set(takeable.map { ObjectIdentifier($0.member) })
            if !force && seen.count + usableCount() >= geometry.dataChunkCount {
                why += "; -o force would take back the freshest of them ("
                    + takeable.prefix(geometry.dataChunkCount - usableCount()).map { "\($0.member.name) at event \($0.superblock.events)" }.joined(separator: ", ")
                    + ") and resync them, at the risk of losing or mixing what was written after they left the array"
            }
            throw FSError.invalid(why)
        }
        var plan = Plan(superblock: freshest, membersByRole: byRole, spares: spares, report: report)
        plan.replacement = replacement
        plan.forced = forced
        return plan
    }
}
