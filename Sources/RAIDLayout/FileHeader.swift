import RAIDBase
/// A file's identity and logical size, replicated on every member file of
/// it (format 3: in the member file's attribute, `FileAttribute`).
public struct FileHeader: Equatable, Sendable {
    /// The id of a header that is not known: an attribute with it holds
    /// checksum entries only (a damaged copy, `createDamagedCopy`). Real
    /// ids are never below 2^32.
    public static let unknownId: UInt64 = 0

    public var fileId: UInt64
    public var size: UInt64

    public init(fileId: UInt64, size: UInt64) {
        self.fileId = fileId
        self.size = size
    }
}

/// The extended attribute (`user.raidfs`) every member file of an array
/// file carries: the header and the checksum entries of the member's
/// chunks of the leading stripes (`Geometry.leadingStripes`, one 4 KiB
/// sector each). Kept small enough to live in an ext4 inode (256-byte
/// inodes take a value of about 60 bytes with no extra block), so a member
/// file holding none of a small file's data is an empty file, and one
/// holding a block of it takes one block.
///
/// Layout (56 bytes, little endian): "RFS3", file id u64, logical size
/// u64, CRC32C u32 of those 20 bytes; then one entry u64 per leading
/// stripe (`SectorEntry`, each checking itself). Rot in the header loses
/// the header only (the other members hold it); rot in an entry loses that
/// sector only, as in a checksum table.
public struct FileAttribute: Equatable, Sendable {
    public static let name = "user.raidfs"
    public static let magic: [UInt8] = Array("RFS3".utf8)
    public static let encodedBytes = headerBytes + Int(Geometry.leadingStripes) * 8

    /// Nil when it does not verify.
    public var header: FileHeader?
    /// Raw entries (as `SectorEntry` stores them), one per leading stripe
    /// (a fixed vector: no allocation on the data path).
    public var entries: SIMD4<UInt64>

    public init(header: FileHeader?, entries: SIMD4<UInt64> = .zero) {
        precondition(Geometry.leadingStripes == 4, "FileAttribute holds 4 entries")
        self.header = header
        self.entries = entries
    }

    /// Bytes of the header part (magic, id, size, CRC); the entries follow.
    public static let headerBytes = 24
    /// Where the header's CRC sits: after magic, id and size, covering them.
    package static let crcOffset = headerBytes - 4

    public func encode(into p: UnsafeMutableRawPointer) {
        FileAttribute.encode(header ?? FileHeader(fileId: FileHeader.unknownId, size: 0), into: p)
        for i in 0..<4 { p.storeBytes(of: entries[i].littleEndian, toByteOffset: FileAttribute.headerBytes + 8 * i, as: UInt64.self) }
    }

    /// The header part alone (`headerBytes`).
    public static func encode(_ h: FileHeader, into p: UnsafeMutableRawPointer) {
        for i in 0..<4 { p.storeBytes(of: magic[i], toByteOffset: i, as: UInt8.self) }
        p.storeBytes(of: h.fileId.littleEndian, toByteOffset: 4, as: UInt64.self)
        p.storeBytes(of: h.size.littleEndian, toByteOffset: 12, as: UInt64.self)
        p.storeBytes(of: crc32c(p, count: crcOffset).littleEndian, toByteOffset: crcOffset, as: UInt32.self)
    }

    /// Nil when the bytes are not an attribute of this format at all.
    public static func decode(_ p: UnsafeRawPointer, count: Int) -> FileAttribute? {
        guard count == encodedBytes else { return nil }
        var header: FileHeader? = nil
        if (0..<4).allSatisfy({ p.load(fromByteOffset: $0, as: UInt8.self) == magic[$0] }),
           UInt32(littleEndian: p.loadUnaligned(fromByteOffset: crcOffset, as: UInt32.self)) == crc32c(p, count: crcOffset) {
            header = FileHeader(fileId: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt64.self)),
                                size: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt64.self)))
        }
        var e = SIMD4<UInt64>.zero
        for i in 0..<4 { e[i] = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: headerBytes + 8 * i, as: UInt64.self)) }
        return FileAttribute(header: header, entries: e)
    }
}

/// What a member file's attribute holds.
public enum StoredAttribute: Equatable {
    /// None: a file whose create was cut short (or not a format 3 file).
    case absent
    /// Not an attribute of this format (a torn or foreign value): header
    /// and entries unknown.
    case damaged
    /// Its header may still not verify (`FileAttribute.header` nil).
    case present(FileAttribute)

    /// The header, unless missing, damaged or not known.
    public var header: FileHeader? {
        if case .present(let a) = self, let h = a.header, h.fileId != FileHeader.unknownId { return h }
        return nil
    }
}

/// A 4 KiB sector's checksum entry in its member's table: the CRC32C and
/// its complement with a tag, so a damaged entry is itself detected. An
/// all-zero entry means "never written": the sector must read as zeros.
package enum SectorEntry {
    package static let tag: UInt32 = 0x5241_4944  // "RAID"
    /// The entry of a sector a rebuild could not rebuild (`poison`): it is
    /// lost, and no crash resync may take what the member holds there.
    /// Far, in bits, from the all-zero entry (24 bits) and from every valid
    /// encoding (20): rot of a few bits leaves it recognisably poison
    /// (`isPoison`) and never makes it "never written" (which would pass
    /// a lost sector's zeros as data) or a CRC that some bytes match.
    package static let poison: UInt64 = 0xDEAD_0000_0000_BEEF
    /// What the entries of a damaged attribute read as: not "never
    /// written", not poison, no CRC (a sector that reads as damaged).
    package static let unreadable: UInt64 = 1

    /// `raw` is poison, allowing for a few rotted bits.
    @inline(__always)
    package static func isPoison(_ raw: UInt64) -> Bool { (raw ^ poison).nonzeroBitCount <= 4 }

    @inline(__always)
    package static func encode(crc: UInt32) -> UInt64 {
        UInt64(crc) | UInt64(crc ^ tag) << 32
    }

    /// Whether `raw` reads as written: "never written", poison, or a
    /// checksum whose halves agree.
    @inline(__always)
    package static func isWhole(_ raw: UInt64) -> Bool {
        raw == 0 || raw == poison || UInt32(truncatingIfNeeded: raw >> 32) == UInt32(truncatingIfNeeded: raw) ^ tag
    }

    /// The CRC a sector must have, or nil if the entry is damaged.
    @inline(__always)
    package static func expectedCRC(_ raw: UInt64, zeroSectorCRC: UInt32) -> UInt32? {
        if raw == 0 { return zeroSectorCRC }
        let crc = UInt32(truncatingIfNeeded: raw)
        let check = UInt32(truncatingIfNeeded: raw >> 32)
        return check == crc ^ tag ? crc : nil
    }
}
