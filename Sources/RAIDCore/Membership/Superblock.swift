import Foundation
import RAIDControl

/// What the array believes about one role.
public enum RoleState: String, Codable, Sendable {
    case active, faulty, missing, rebuilding, spare
}

public struct RebuildCheckpoint: Codable, Equatable, Sendable {
    public var role: Int
    public var memberUUID: String
    /// Files are rebuilt in sorted depth-first order; this one and all
    /// before it are done.
    public var lastPath: String
    public var bytesDone: UInt64
}

/// The scrub history the superblocks keep: when the last complete scrub
/// ended and what it found, and where a scrub in progress stood at its last
/// checkpoint (an unmount or crash resumes it there).
public struct ScrubRecord: Codable, Equatable, Sendable {
    public var lastFinishedAt: Double?
    public var lastResult: ScrubResult?
    public var checkpoint: ScrubCheckpoint?
}

public struct ScrubCheckpoint: Codable, Equatable, Sendable {
    /// Files are scrubbed in sorted depth-first order; this one and all
    /// before it are done ("" before the first).
    public var lastPath: String
    public var startedAt: Double
    /// What was found so far (carried over when resumed).
    public var found: ScrubResult
    /// After an unclean shutdown: only these files (those the intent log named),
    /// or the files a read found sectors of beyond redundancy in.
    public var only: [String]?
    /// Why only those: nil after an unclean shutdown.
    public var because: String? = nil
}

/// `raidctl replace` in progress: the member taking over `role`, where it
/// lives, and how far the copy got; the next mount resumes it.
public struct ReplacementRecord: Codable, Equatable, Sendable {
    public var role: Int
    public var memberUUID: String
    public var directory: String
    public var lastPath: String
    public var bytesDone: UInt64
}

public struct RoleRecord: Codable, Equatable, Sendable {
    public var memberUUID: String
    public var state: RoleState
}

/// The per-member superblock. Stored as a fixed binary envelope
/// ("RAIDFSSB", format version, payload length, CRC32C of the payload)
/// around a JSON payload, so a torn or rotted superblock is detected and a
/// future format is refused by version rather than misread.
/// Where member files keep their metadata (`MemberFileLayout.metadataInFile`).
public enum MetadataPlace: String, Codable, Sendable {
    case attribute = "xattr"
    case file = "file"
}

public struct Superblock: Codable, Equatable, Sendable {
    public static let magic: [UInt8] = Array("RAIDFSSB".utf8)
    /// 2: checksums per 4 KiB sector (MemberFileLayout), file header "RAIDFSF2".
    public static let formatVersion: UInt32 = 3
    static let envelopeBytes = 24

    public var arrayUUID: String
    public var memberUUID: String
    /// Role index, or -1 for a hot spare.
    public var role: Int
    public var level: RAIDLevel
    public var chunkSizeBytes: Int
    public var memberCount: Int
    /// md's event counter: bumped on every change of array state, so a member
    /// that missed a change is recognised as stale.
    public var events: UInt64
    public var roles: [RoleRecord]
    public var spares: [String]
    public var createdAt: Double
    public var updatedAt: Double
    /// False while mounted read-write; true after a clean shutdown.
    public var clean: Bool
    /// Where each role being rebuilt stood at its last checkpoint: a remount
    /// resumes there.
    public var rebuilds: [RebuildCheckpoint]? = nil
    /// Each role's READ, WRITE and CKSUM counts, kept until `raidctl clear`.
    public var counters: [MemberCounters]? = nil
    public var scrub: ScrubRecord? = nil
    public var replacement: ReplacementRecord? = nil
    /// Where each member file keeps its header and leading entries,
    /// chosen at create: an extended attribute when every member's
    /// filesystem takes them, else the member file's first 4 KiB.
    public var metadata: MetadataPlace = .attribute

    public var geometry: Geometry {
        Geometry(level: level, memberCount: memberCount, chunkSizeBytes: chunkSizeBytes)
    }

    public func encoded() -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let payload = [UInt8](try! enc.encode(self))
        var out = Superblock.magic
        out.reserveCapacity(Superblock.envelopeBytes + payload.count)
        appendLE(&out, Superblock.formatVersion)
        appendLE(&out, UInt32(payload.count))
        appendLE(&out, crc32c(payload))
        appendLE(&out, UInt32(0))
        out += payload
        return out
    }

    /// Decodes and verifies a superblock; the error says what is wrong.
    public static func decode(_ bytes: [UInt8], source: String) throws -> Superblock {
        guard bytes.count >= envelopeBytes, Array(bytes[0..<8]) == magic else {
            throw FSError.invalid("\(source): not a raidfs superblock (bad magic)")
        }
        let version = readLE32(bytes, 8)
        guard version == formatVersion else {
            if version < formatVersion {
                // Nothing of formats 1 and 2 was deployed: there is no migration.
                throw FSError.invalid("\(source): superblock format version \(version) is older than this raidfs's \(formatVersion) (small files in 4 KiB leading stripes, headers in an extended attribute); copy the files off with the raidfs that made the array, then raidctl create a new one")
            }
            throw FSError.invalid("\(source): superblock format version \(version) is not supported (this raidfs reads version \(formatVersion))")
        }
        let len = Int(readLE32(bytes, 12))
        guard bytes.count == envelopeBytes + len else {
            throw FSError.invalid("\(source): superblock truncated (\(bytes.count) bytes, expected \(envelopeBytes + len))")
        }
        let payload = Array(bytes[envelopeBytes...])
        guard crc32c(payload) == readLE32(bytes, 16) else {
            throw FSError.invalid("\(source): superblock checksum mismatch")
        }
        let sb: Superblock
        do {
            sb = try JSONDecoder().decode(Superblock.self, from: Data(payload))
        } catch {
            throw FSError.invalid("\(source): superblock payload unreadable: \(error)")
        }
        guard sb.memberCount >= sb.level.minimumMemberCount, sb.memberCount <= 255,
              Geometry.isValidChunkSize(sb.chunkSizeBytes), sb.roles.count == sb.memberCount,
              sb.role >= -1, sb.role < sb.memberCount else {
            throw FSError.invalid("\(source): superblock describes an impossible geometry")
        }
        return sb
    }
}

@inline(__always)
func appendLE(_ out: inout [UInt8], _ v: UInt32) {
    out.append(UInt8(v & 0xff)); out.append(UInt8((v >> 8) & 0xff))
    out.append(UInt8((v >> 16) & 0xff)); out.append(UInt8(v >> 24))
}

@inline(__always)
func readLE32(_ b: [UInt8], _ at: Int) -> UInt32 {
    UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
}
