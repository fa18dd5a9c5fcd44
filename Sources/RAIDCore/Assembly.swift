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

    public var lines: [String] {
        leftOut.map { "left out \($0.directory): \($0.reason)" }
            + missingRoles.map { "role \($0) missing" }
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
        public let report: AssemblyReport
    }

    public static func plan(directories: [String]) throws -> Plan {
        guard !directories.isEmpty else { throw FSError.invalid("no member directories given") }
        var report = AssemblyReport()
        var members: [Member] = []
        var seen: [String: String] = [:]
        for given in directories {
            // The daemon changes directory to / once mounted: keep absolute paths.
            let dir = absolutePath(given)
            var st = stat()
            guard stat(dir, &st) == 0 else {
                report.leftOut.append(.init(directory: dir, reason: "cannot open: \(String(cString: strerror(errno)))"))
                continue
            }
            let id = "\(st.st_dev):\(st.st_ino)"
            if let other = seen[id] {
                throw FSError.invalid("\(dir): named twice (same directory as \(other))")
            }
            seen[id] = dir
            members.append(DirectoryMember(root: dir))
        }
        return try plan(members: members, report: report)
    }

    /// Decides the array from members of any kind (directories, simulated).
    public static func plan(members: [Member], report initial: AssemblyReport = AssemblyReport()) throws -> Plan {
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
        for c in candidates {
            let sb = c.superblock
            if sb.level != freshest.level || sb.memberCount != freshest.memberCount || sb.chunkSizeBytes != freshest.chunkSizeBytes {
                throw FSError.invalid("\(c.member.name): geometry disagrees with the other members of array \(sb.arrayUUID)")
            }
            if sb.events < maxEvents {
                report.leftOut.append(.init(directory: c.member.name,
                                            reason: "stale (event counter \(sb.events), array at \(maxEvents)); kicked as non-fresh"))
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
                continue
            }
            if let other = byRole[sb.role] {
                throw FSError.invalid("\(c.member.name) and \(other.name) both claim role \(sb.role)")
            }
            byRole[sb.role] = c.member
        }
        report.missingRoles = (0..<geometry.memberCount).filter { byRole[$0] == nil }
        // A member still being rebuilt holds writes, not yet data.
        let usable = (0..<geometry.memberCount).filter { byRole[$0] != nil && freshest.roles[$0].state != .rebuilding }.count
        if usable < geometry.dataChunkCount {
            var why = "RAID \(geometry.level.rawValue) array \(freshest.arrayUUID) needs at least \(geometry.dataChunkCount) of \(geometry.memberCount) members; usable: "
            why += byRole.compactMap { $0?.name }.joined(separator: ", ")
            if !report.leftOut.isEmpty {
                why += "; left out: " + report.leftOut.map { "\($0.directory) (\($0.reason))" }.joined(separator: ", ")
            }
            throw FSError.invalid(why)
        }
        return Plan(superblock: freshest, membersByRole: byRole, spares: spares, report: report)
    }
}

/// `path` made absolute (symlinks resolved when it exists).
public func absolutePath(_ path: String) -> String {
    if let r = realpath(path, nil) {
        defer { free(r) }
        return String(cString: r)
    }
    if path.hasPrefix("/") { return path }
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buf, buf.count) != nil else { return path }
    return String(cString: buf) + "/" + path
}
