/// The 4 KiB header at the start of every member file of an array file:
/// the file's identity and logical size, replicated on every member.
/// Layout (little endian): "RAIDFSF2", format version u32, reserved u32,
/// file id u64, logical size u64, CRC32C of the preceding 32 bytes.
public struct FileHeader: Equatable, Sendable {
    public static let magic: [UInt8] = Array("RAIDFSF2".utf8)
    public static let formatVersion: UInt32 = 2
    public static let encodedBytes = 36

    public var fileId: UInt64
    public var size: UInt64

    public init(fileId: UInt64, size: UInt64) {
        self.fileId = fileId
        self.size = size
    }

    public func encode(into p: UnsafeMutableRawPointer) {
        for i in 0..<8 { p.storeBytes(of: FileHeader.magic[i], toByteOffset: i, as: UInt8.self) }
        p.storeBytes(of: FileHeader.formatVersion.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: fileId.littleEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: size.littleEndian, toByteOffset: 24, as: UInt64.self)
        p.storeBytes(of: crc32c(p, count: 32).littleEndian, toByteOffset: 32, as: UInt32.self)
    }

    /// Nil when the bytes are not a valid header of this format.
    public static func decode(_ p: UnsafeRawPointer) -> FileHeader? {
        for i in 0..<8 where p.load(fromByteOffset: i, as: UInt8.self) != magic[i] { return nil }
        guard UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) == formatVersion,
              UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 32, as: UInt32.self)) == crc32c(p, count: 32) else {
            return nil
        }
        return FileHeader(fileId: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                          size: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }
}

/// A 4 KiB sector's checksum entry in its member's table: the CRC32C and
/// its complement with a tag, so a damaged entry is itself detected. An
/// all-zero entry means "never written": the sector must read as zeros.
enum SectorEntry {
    static let tag: UInt32 = 0x5241_4944  // "RAID"
    /// The entry of a sector a rebuild could not rebuild (`poison`): it is
    /// lost, and no crash resync may take what the member holds there.
    /// Far, in bits, from the all-zero entry (24 bits) and from every valid
    /// encoding (20): rot of a few bits leaves it recognisably poison
    /// (`isPoison`) and never makes it "never written" (which would pass
    /// a lost sector's zeros as data) or a CRC that some bytes match. It was
    /// 1 until format 2 was final: one flipped bit from 0.
    static let poison: UInt64 = 0xDEAD_0000_0000_BEEF

    /// `raw` is poison, allowing for a few rotted bits.
    @inline(__always)
    static func isPoison(_ raw: UInt64) -> Bool { (raw ^ poison).nonzeroBitCount <= 4 }

    @inline(__always)
    static func encode(crc: UInt32) -> UInt64 {
        UInt64(crc) | UInt64(crc ^ tag) << 32
    }

    /// The CRC a sector must have, or nil if the entry is damaged.
    @inline(__always)
    static func expectedCRC(_ raw: UInt64, zeroSectorCRC: UInt32) -> UInt32? {
        if raw == 0 { return zeroSectorCRC }
        let crc = UInt32(truncatingIfNeeded: raw)
        let check = UInt32(truncatingIfNeeded: raw >> 32)
        return check == crc ^ tag ? crc : nil
    }
}
