/// RAID level and the stripe math of one array: where each chunk of a stripe
/// lives (md's left-symmetric rotation) and where a stripe's chunk sits inside
/// a member's file.
public enum RAIDLevel: Int, Codable, Sendable, CaseIterable {
    case raid1 = 1
    case raid5 = 5
    case raid6 = 6

    public var minimumMemberCount: Int {
        switch self {
        case .raid1: return 2
        case .raid5: return 3
        case .raid6: return 4
        }
    }

    /// How many members may be lost without losing data.
    public func redundancy(memberCount: Int) -> Int {
        switch self {
        case .raid1: return memberCount - 1
        case .raid5: return 1
        case .raid6: return 2
        }
    }
}

public struct Geometry: Sendable, Equatable {
    public static let chunkSizeBytesMin = 4 * 1024
    public static let chunkSizeBytesMax = 16 * 1024 * 1024
    public static let chunkSizeBytesDefault = 128 * 1024

    public let level: RAIDLevel
    public let memberCount: Int
    public let chunkSizeBytes: Int
    /// k: data chunks per stripe.
    public let dataChunkCount: Int
    /// m: parity chunks per stripe (mirror copies for RAID 1).
    public let parityChunkCount: Int

    public init(level: RAIDLevel, memberCount: Int, chunkSizeBytes: Int) {
        precondition(memberCount >= level.minimumMemberCount && memberCount <= 255, "member count \(memberCount) invalid for RAID \(level.rawValue)")
        precondition(Geometry.isValidChunkSize(chunkSizeBytes), "chunk size \(chunkSizeBytes) invalid")
        self.level = level
        self.memberCount = memberCount
        self.chunkSizeBytes = chunkSizeBytes
        self.parityChunkCount = level.redundancy(memberCount: memberCount)
        self.dataChunkCount = memberCount - parityChunkCount
    }

    public static func isValidChunkSize(_ bytes: Int) -> Bool {
        bytes >= chunkSizeBytesMin && bytes <= chunkSizeBytesMax && bytes & (bytes - 1) == 0
    }

    /// Logical file bytes held by one stripe.
    public var stripeDataBytes: Int { dataChunkCount * chunkSizeBytes }

    /// Member (role) holding chunk `chunkIndex` of stripe `stripe`.
    /// Chunk indices 0..<k are data, k..<n parity (P, then Q; RAID 1 mirrors).
    /// md left-symmetric: first parity at (n-1) - s % n, the next parities
    /// follow it, and data j at (P + m + j) % n.
    @inline(__always)
    public func member(stripe: UInt64, chunkIndex: Int) -> Int {
        precondition(chunkIndex >= 0 && chunkIndex < memberCount)
        let n = UInt64(memberCount)
        let p0 = Int((n - 1) - stripe % n)
        if chunkIndex >= dataChunkCount {
            return (p0 + chunkIndex - dataChunkCount) % memberCount
        }
        return (p0 + parityChunkCount + chunkIndex) % memberCount
    }

    /// The inverse: which chunk index of stripe `stripe` lives on `member`.
    @inline(__always)
    public func chunkIndex(stripe: UInt64, member: Int) -> Int {
        precondition(member >= 0 && member < memberCount)
        let n = UInt64(memberCount)
        let p0 = Int((n - 1) - stripe % n)
        let rel = (member - p0 + memberCount) % memberCount
        if rel < parityChunkCount { return dataChunkCount + rel }
        return rel - parityChunkCount
    }

    /// The bytes of chunk `chunkIndex` that may be nonzero in a stripe
    /// holding `stripeExtent` bytes of its file, in whole 4 KiB sectors: a
    /// data chunk's share of them, and parity (or a mirror) as long as the
    /// first data chunk's, the longest. Nothing past them is written: a
    /// file's last stripe is short (the short tail).
    @inline(__always)
    public func chunkExtent(stripeExtent: Int, chunkIndex: Int) -> Int {
        let j = chunkIndex < dataChunkCount ? chunkIndex : 0
        let sector = MemberFileLayout.sectorBytes
        return min(chunkSizeBytes, (max(0, stripeExtent - j * chunkSizeBytes) + sector - 1) / sector * sector)
    }

    /// Usable bytes for `memberBytes` of raw space on each member.
    public func usableBytes(memberBytes: UInt64) -> UInt64 {
        memberBytes * UInt64(dataChunkCount)
    }
}

/// Where things sit inside one member's file for an array file (format 2).
///
/// A member file is a 4 KiB header followed by groups. Each group is a
/// checksum table, then the chunks it describes: the member's chunk of
/// stripe s is chunk s of the member file. The table holds one 8-byte entry
/// per 4 KiB sector of its chunks (4 KiB of table for 2 MiB of chunks, or
/// one chunk's entries when a chunk is larger), so a 4 KiB read verifies
/// 4 KiB and a 4 KiB write rewrites one entry. Keeping the table beside its
/// chunks keeps a sector and its checksum on the same member, and the
/// layout needs nothing but pread/pwrite from the host filesystem.
public struct MemberFileLayout: Sendable, Equatable {
    public static let headerBytes: UInt64 = 4096
    public static let sectorBytes = 4096
    public static let entryBytes: UInt64 = 8

    public let chunkSizeBytes: UInt64
    /// 4 KiB sectors in a chunk, one checksum entry each.
    public let sectorsPerChunk: UInt64
    public let tableBytes: UInt64
    public let chunksPerGroup: UInt64

    public init(chunkSizeBytes: Int) {
        precondition(chunkSizeBytes >= Self.sectorBytes && chunkSizeBytes % Self.sectorBytes == 0,
                     "chunk size \(chunkSizeBytes) is not a multiple of 4 KiB")
        self.chunkSizeBytes = UInt64(chunkSizeBytes)
        sectorsPerChunk = UInt64(chunkSizeBytes / Self.sectorBytes)
        let chunkEntryBytes = sectorsPerChunk * Self.entryBytes
        tableBytes = max(4096, chunkEntryBytes)
        chunksPerGroup = tableBytes / chunkEntryBytes
    }

    @inline(__always)
    var groupBytes: UInt64 { tableBytes + chunksPerGroup * chunkSizeBytes }

    @inline(__always)
    public func tableOffset(stripe: UInt64) -> UInt64 {
        Self.headerBytes + (stripe / chunksPerGroup) * groupBytes
    }

    /// The entry of sector `sector` (0 ..< sectorsPerChunk) of the chunk of
    /// `stripe`; a chunk's entries are contiguous.
    @inline(__always)
    public func entryOffset(stripe: UInt64, sector: Int = 0) -> UInt64 {
        tableOffset(stripe: stripe) + ((stripe % chunksPerGroup) * sectorsPerChunk + UInt64(sector)) * Self.entryBytes
    }

    @inline(__always)
    public func chunkOffset(stripe: UInt64) -> UInt64 {
        tableOffset(stripe: stripe) + tableBytes + (stripe % chunksPerGroup) * chunkSizeBytes
    }

    /// Member file length that holds exactly stripes 0..<stripeCount.
    public func fileBytes(stripeCount: UInt64) -> UInt64 {
        if stripeCount == 0 { return Self.headerBytes }
        return chunkOffset(stripe: stripeCount - 1) + chunkSizeBytes
    }

    /// How many stripes a member file `memberFileBytes` long reaches into
    /// (the inverse of `fileBytes`, counting a chunk cut short).
    public func stripesHeld(memberFileBytes bytes: UInt64) -> UInt64 {
        guard bytes > Self.headerBytes else { return 0 }
        let rest = bytes - Self.headerBytes
        let tail = rest % groupBytes
        let partial = tail > tableBytes ? (tail - tableBytes + chunkSizeBytes - 1) / chunkSizeBytes : 0
        return (rest / groupBytes) * chunksPerGroup + partial
    }

    /// Marks every sector of the chunk of `stripe` in `f` damaged, so it
    /// reads as lost (EIO or rebuilt), never as the zeros an empty entry
    /// stands for.
    func poison(_ f: MemberFile, stripe: UInt64) throws {
        let n = Int(sectorsPerChunk)
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { e in
            for i in 0..<n { e[i] = SectorEntry.poison.littleEndian }
            try f.write(from: UnsafeRawPointer(e.baseAddress!), count: n * 8, at: entryOffset(stripe: stripe))
        }
    }
}
