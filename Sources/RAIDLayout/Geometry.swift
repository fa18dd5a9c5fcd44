import RAIDBase
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

    /// Logical file bytes held by one stripe of the array's chunk size
    /// (every stripe past the leading ones).
    public var stripeDataBytes: Int { dataChunkCount * chunkSizeBytes }

    /// The first `leadingStripes` stripes of every file use 4 KiB chunks
    /// (format 3): a small file is spread over the data members a block at
    /// a time and costs its size plus parity per block row, as RAID-Z
    /// sizes a stripe to its block, instead of a data chunk and m parity
    /// chunks each as long as the file. The stripes after them use the
    /// array's chunk size. Rows, P and Q are md's in every stripe.
    public static let leadingStripes: UInt64 = 4
    public static let leadingChunkBytes = 4096

    /// Bytes of each chunk of stripe `s`.
    @inline(__always)
    public func chunkBytes(_ s: UInt64) -> Int {
        s < Geometry.leadingStripes ? Geometry.leadingChunkBytes : chunkSizeBytes
    }

    /// Logical file bytes held by stripe `s`.
    @inline(__always)
    public func stripeBytes(_ s: UInt64) -> Int { dataChunkCount * chunkBytes(s) }

    /// Logical bytes held by the leading stripes together.
    @inline(__always)
    public var leadingBytes: UInt64 { Geometry.leadingStripes * UInt64(dataChunkCount * Geometry.leadingChunkBytes) }

    /// The file offset where stripe `s` begins.
    @inline(__always)
    public func stripeStart(_ s: UInt64) -> UInt64 {
        if s < Geometry.leadingStripes { return s * UInt64(dataChunkCount * Geometry.leadingChunkBytes) }
        return leadingBytes + (s - Geometry.leadingStripes) * UInt64(stripeDataBytes)
    }

    /// The stripe holding file offset `offset`.
    @inline(__always)
    public func stripe(at offset: UInt64) -> UInt64 {
        let lead = leadingBytes
        if offset < lead { return offset / UInt64(dataChunkCount * Geometry.leadingChunkBytes) }
        return Geometry.leadingStripes + (offset - lead) / UInt64(stripeDataBytes)
    }

    /// Stripes a file of `size` bytes reaches into.
    @inline(__always)
    public func stripeCount(size: UInt64) -> UInt64 { size == 0 ? 0 : stripe(at: size - 1) + 1 }

    /// The first stripe starting at or after `offset`.
    @inline(__always)
    public func stripe(atOrAfter offset: UInt64) -> UInt64 {
        let s = stripe(at: offset)
        return stripeStart(s) == offset ? s : s + 1
    }

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
    public func chunkExtent(stripe: UInt64, stripeExtent: Int, chunkIndex: Int) -> Int {
        let j = chunkIndex < dataChunkCount ? chunkIndex : 0
        let sector = MemberFileLayout.sectorBytes, c = chunkBytes(stripe)
        return min(c, (max(0, stripeExtent - j * c) + sector - 1) / sector * sector)
    }

    /// The 512-byte blocks a file of `size` bytes reports (`st_blocks`),
    /// from `memberBlocks`, what the member file of `role` occupies on its
    /// host (the file's stripes start on md's row `rowShift`). Each member
    /// holds one chunk of every stripe, so the fraction of its share that
    /// the host has allocated is the fraction of the file's data that is
    /// written: a sparse file reports about what was written, a dense one
    /// its size in 4 KiB blocks (as ext4), capped there. A member that
    /// holds none of a small file's bytes tells nothing: the size counts.
    public func estimatedBlocks(size: UInt64, rowShift: UInt64, role: Int, memberBlocks: Int64) -> Int64 {
        let whole = Int64((size / 4096 + (size % 4096 == 0 ? 0 : 1)) * 8)
        let stripes = stripeCount(size: size)
        guard stripes > 0 else { return 0 }
        let last = stripes - 1
        let extent = chunkExtent(stripe: last, stripeExtent: Int(size - stripeStart(last)),
                                 chunkIndex: chunkIndex(stripe: last &+ rowShift, member: role))
        let share = stripeStart(last) / UInt64(dataChunkCount) + UInt64(extent)
        guard share > 0 else { return whole }
        let fraction = min(1, Double(max(0, memberBlocks)) * 512 / Double(share))
        return min(whole, Int64((Double(whole) * fraction).rounded(.up)))
    }

    /// Usable bytes for `memberBytes` of raw space on each member.
    public func usableBytes(memberBytes: UInt64) -> UInt64 {
        memberBytes * UInt64(dataChunkCount)
    }
}

/// Where things sit inside one member's file for an array file (format 3).
///
/// The member's chunks of the leading stripes (`Geometry.leadingStripes`,
/// 4 KiB each) come first, at offset 4 KiB × stripe; their checksum
/// entries, with the file's header, are in the member file's attribute
/// (`FileAttribute`), so a file that fits in them costs nothing but its
/// blocks. Then groups: each a checksum table, then the chunks it
/// describes (the member's chunk of stripe Z + i is chunk i of the
/// groups). A table holds one 8-byte entry per 4 KiB sector of its chunks
/// (4 KiB of table for 2 MiB of chunks, or one chunk's entries when a
/// chunk is larger), so a 4 KiB read verifies 4 KiB and a 4 KiB write
/// rewrites one entry. A sector and its checksum stay on the same member.
public struct MemberFileLayout: Sendable, Equatable {
    public static let sectorBytes = 4096
    public static let entryBytes: UInt64 = 8
    /// Member file bytes of the leading chunks.
    public static let leadingBytes = Geometry.leadingStripes * UInt64(Geometry.leadingChunkBytes)

    /// Where the header and the leading chunks' entries live
    /// (`Superblock.metadata`): the attribute, or the first 4 KiB of the
    /// member file, before the chunks, on an array with a member whose
    /// filesystem takes no user extended attributes.
    public let metadataInFile: Bool
    /// Where the leading chunks start: 0, or 4 KiB past the metadata.
    public let base: UInt64

    public let chunkSizeBytes: UInt64
    /// 4 KiB sectors in a chunk past the leading stripes, one entry each.
    public let sectorsPerChunk: UInt64
    public let tableBytes: UInt64
    public let chunksPerGroup: UInt64

    public init(chunkSizeBytes: Int, metadataInFile: Bool = false) {
        precondition(chunkSizeBytes >= Self.sectorBytes && chunkSizeBytes % Self.sectorBytes == 0,
                     "chunk size \(chunkSizeBytes) is not a multiple of 4 KiB")
        self.metadataInFile = metadataInFile
        base = metadataInFile ? UInt64(Self.sectorBytes) : 0
        self.chunkSizeBytes = UInt64(chunkSizeBytes)
        sectorsPerChunk = UInt64(chunkSizeBytes / Self.sectorBytes)
        let chunkEntryBytes = sectorsPerChunk * Self.entryBytes
        tableBytes = max(4096, chunkEntryBytes)
        chunksPerGroup = tableBytes / chunkEntryBytes
    }

    @inline(__always)
    public static func isLeading(_ stripe: UInt64) -> Bool { stripe < Geometry.leadingStripes }

    @inline(__always)
    package var groupBytes: UInt64 { tableBytes + chunksPerGroup * chunkSizeBytes }

    /// The sectors of the chunk of `stripe`.
    @inline(__always)
    public func sectors(stripe: UInt64) -> UInt64 { Self.isLeading(stripe) ? 1 : sectorsPerChunk }

    /// A stripe past the leading ones, counted from the first group.
    @inline(__always)
    private func grouped(_ stripe: UInt64) -> UInt64 {
        precondition(!Self.isLeading(stripe), "stripe \(stripe) is a leading stripe: its entry is in the attribute")
        return stripe - Geometry.leadingStripes
    }

    @inline(__always)
    public func tableOffset(stripe: UInt64) -> UInt64 {
        base + Self.leadingBytes + (grouped(stripe) / chunksPerGroup) * groupBytes
    }

    /// The entry of sector `sector` (0 ..< sectorsPerChunk) of the chunk of
    /// `stripe`, a stripe past the leading ones; a chunk's entries are
    /// contiguous.
    @inline(__always)
    public func entryOffset(stripe: UInt64, sector: Int = 0) -> UInt64 {
        tableOffset(stripe: stripe) + UInt64(tableIndex(stripe: stripe, sector: sector)) * Self.entryBytes
    }

    /// The table holding the entries of `stripe` (past the leading
    /// stripes), counted from the first group.
    @inline(__always)
    public func table(stripe: UInt64) -> UInt64 { grouped(stripe) / chunksPerGroup }

    /// Where the entry of sector `sector` of the chunk of `stripe` sits
    /// in its table, in entries.
    @inline(__always)
    public func tableIndex(stripe: UInt64, sector: Int) -> Int {
        Int((grouped(stripe) % chunksPerGroup) * sectorsPerChunk) + sector
    }

    @inline(__always)
    public func chunkOffset(stripe: UInt64) -> UInt64 {
        if Self.isLeading(stripe) { return base + stripe * UInt64(Geometry.leadingChunkBytes) }
        return tableOffset(stripe: stripe) + tableBytes + (grouped(stripe) % chunksPerGroup) * chunkSizeBytes
    }

    /// Member file length that holds exactly stripes 0..<stripeCount (with
    /// none: the metadata alone, nothing where it is an attribute).
    public func fileBytes(stripeCount: UInt64) -> UInt64 {
        if stripeCount == 0 { return metadataInFile ? UInt64(FileAttribute.encodedBytes) : 0 }
        let last = stripeCount - 1
        return chunkOffset(stripe: last) + (Self.isLeading(last) ? UInt64(Geometry.leadingChunkBytes) : chunkSizeBytes)
    }

    /// How many stripes a member file `memberFileBytes` long reaches into
    /// (the inverse of `fileBytes`, counting a chunk cut short).
    /// The stripe whose chunk holds member file offset `offset`, or for an
    /// offset in metadata, a stripe before the chunks it describes.
    public func stripe(atOrBeforeMemberOffset offset: UInt64) -> UInt64 {
        max(1, stripesHeld(memberFileBytes: offset + 1)) - 1
    }

    public func stripesHeld(memberFileBytes length: UInt64) -> UInt64 {
        let chunk = UInt64(Geometry.leadingChunkBytes)
        let bytes = length > base ? length - base : 0
        guard bytes > Self.leadingBytes else { return (bytes + chunk - 1) / chunk }
        let rest = bytes - Self.leadingBytes
        let tail = rest % groupBytes
        let partial = tail > tableBytes ? (tail - tableBytes + chunkSizeBytes - 1) / chunkSizeBytes : 0
        return Geometry.leadingStripes + (rest / groupBytes) * chunksPerGroup + partial
    }
}
