import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// `raidctl create`: validates every directory first, then writes the data
/// root and superblock of each. Nothing is written unless every check passes.
public enum ArrayCreator {
    public static func create(level: RAIDLevel, chunkSizeBytes: Int, directories: [String],
                              spares: [String] = [], now: Date? = nil,
                              environment: EngineEnvironment = SystemEnvironment()) throws -> Superblock {
        guard directories.count >= level.minimumMemberCount else {
            throw FSError.invalid("RAID \(level.rawValue) needs at least \(level.minimumMemberCount) members, \(directories.count) given")
        }
        guard directories.count <= 255 else {
            throw FSError.invalid("at most 255 members, \(directories.count) given")
        }
        guard Geometry.isValidChunkSize(chunkSizeBytes) else {
            throw FSError.invalid("chunk size \(chunkSizeBytes) bytes is not a power of two from 4 KiB to 16 MiB")
        }
        let provider = environment.directories
        var seen: [String: String] = [:]
        for dir in directories + spares {
            try checkEmptyDirectory(dir, provider)
            let id = try provider.identity(of: dir)
            if let other = seen[id] {
                throw FSError.invalid("\(dir): the same directory as \(other) (named twice)")
            }
            seen[id] = dir
        }
        // Headers in extended attributes where every member takes them;
        // else in the member files, where any POSIX filesystem keeps them.
        let metadata: MetadataPlace = (directories + spares).allSatisfy(provider.takesUserAttributes) ? .attribute : .file
        return try initialize(level: level, chunkSizeBytes: chunkSizeBytes,
                              members: directories.map(provider.member(at:)),
                              spares: spares.map(provider.member(at:)), metadata: metadata, now: now,
                              environment: environment,
                              prepare: { member in try provider.makeDataRoot(member.name) })
    }

    /// Writes a new array's superblocks to members that were checked to be
    /// empty (`prepare` runs on each first, e.g. to make its data root).
    /// The UUIDs come from `environment` (seeded in the simulation).
    public static func initialize(level: RAIDLevel, chunkSizeBytes: Int, members: [Member], spares: [Member] = [],
                                  metadata: MetadataPlace = .attribute,
                                  now: Date? = nil, environment: EngineEnvironment = SystemEnvironment(),
                                  prepare: (Member) throws -> Void = { _ in }) throws -> Superblock {
        precondition(members.count >= level.minimumMemberCount && Geometry.isValidChunkSize(chunkSizeBytes))
        let arrayUUID = environment.newUUID()
        let memberUUIDs = members.map { _ in environment.newUUID() }
        let spareUUIDs = spares.map { _ in environment.newUUID() }
        let ts = now?.timeIntervalSince1970 ?? environment.wallClockSeconds()
        var template = Superblock(arrayUUID: arrayUUID, memberUUID: "", role: 0, level: level,
                                  chunkSizeBytes: chunkSizeBytes, memberCount: members.count, events: 1,
                                  roles: memberUUIDs.map { RoleRecord(memberUUID: $0, state: .active) },
                                  spares: spareUUIDs, createdAt: ts, updatedAt: ts, clean: true)
        template.metadata = metadata
        for (i, member) in (members + spares).enumerated() {
            try prepare(member)
            template.role = i < members.count ? i : -1
            template.memberUUID = i < members.count ? memberUUIDs[i] : spareUUIDs[i - members.count]
            try member.writeSuperblock(template.encoded())
        }
        template.role = 0
        template.memberUUID = memberUUIDs[0]
        return template
    }

    /// A directory is usable for a new member when it is no member of an
    /// array and holds nothing but, perhaps, an ext4 root's lost+found.
    static func checkEmptyDirectory(_ dir: String, _ provider: MemberDirectories) throws {
        if let sb = try? provider.member(at: dir).readSuperblock(),
           let decoded = try? Superblock.decode(sb, source: dir) {
            throw FSError(EEXIST, "\(dir): already a member of array \(decoded.arrayUUID)")
        }
        try provider.requireEmpty(dir)
    }
}
