#if canImport(Glibc)
import Glibc
#endif
/// A member file's attribute (`FileAttribute`: the header and the leading
/// chunks' entries) and the entries of any chunk, wherever they live. On an
/// array whose metadata is in the member files (`metadataInFile`) the same
/// 56 bytes are the start of each member file, and each part is written in
/// place, as format 2 wrote its header and tables: no read-modify-write.
extension MemberFileLayout {
    // MARK: the attribute

    /// Serialise the read-modify-writes of a member file's attribute
    /// (writers of different leading stripes, and the header's size, share
    /// it; a rebuild may hold the same file open through another handle),
    /// by file id: writers of different files seldom wait for each other.
    static let attributeLocks = (0..<64).map { _ in Lock() }

    @inline(__always)
    static func attributeLock(_ fileId: UInt64) -> Lock { attributeLocks[Int(fileId % 64)] }

    /// The member file's attribute. Reads that find it, its header or an
    /// entry damaged read again (rot on the way from the disk leaves the
    /// stored value intact).
    public func readAttribute(_ f: MemberFile) throws -> StoredAttribute {
        try readAttribute { try readStored(f, into: $0, capacity: $1) }
    }

    /// `readAttribute` of the file at `path` on `m` (opened only where the
    /// metadata is in the member files).
    public func readAttribute(at path: String, on m: Member) throws -> StoredAttribute {
        guard !metadataInFile else {
            let f = try m.open(path, flags: O_RDONLY, mode: 0)
            defer { f.close() }
            return try readAttribute(f)
        }
        return try readAttribute { try m.readAttribute(at: path, into: $0, capacity: $1) }
    }

    private func readAttribute(_ read: (UnsafeMutableRawPointer, Int) throws -> Int?) throws -> StoredAttribute {
        try withUnsafeTemporaryAllocation(byteCount: FileAttribute.encodedBytes + 8, alignment: 8) { raw in
            var state = StoredAttribute.absent
            for _ in 0..<3 {
                guard let n = try read(raw.baseAddress!, raw.count) else { return .absent }
                guard let a = FileAttribute.decode(raw.baseAddress!, count: n) else { state = .damaged; continue }
                state = .present(a)
                if a.header != nil && (0..<Int(Geometry.leadingStripes)).allSatisfy({ SectorEntry.isWhole(a.entries[$0]) }) { break }
            }
            return state
        }
    }

    /// The stored value's length (nil: none), read into `p`.
    private func readStored(_ f: MemberFile, into p: UnsafeMutableRawPointer, capacity: Int) throws -> Int? {
        guard metadataInFile else { return try f.readAttribute(into: p, capacity: capacity) }
        let n = FileAttribute.encodedBytes
        try f.readFull(into: p, count: n, at: 0)
        // A header never written reads as zeros (a create cut short, as
        // format 2's header), whatever entries a power cut kept after it:
        // the header and each entry are written apart, so one may survive
        // without the other.
        return UnsafeRawBufferPointer(start: p, count: FileAttribute.headerBytes).allSatisfy({ $0 == 0 }) ? nil : n
    }

    /// Changes the attribute with `body`, in one host operation (no read
    /// of the disk: a rotted read never goes back as the value). One
    /// missing is made from `owner` (its entries "never written"); a header
    /// that does not verify becomes `owner`; a value that is no attribute
    /// at all becomes `owner` with every entry unreadable, so those sectors
    /// read as damaged (rebuilt from redundancy) until written again. An
    /// entry that does not verify stays as it is, damaged.
    public func updateAttribute(_ f: MemberFile, owner: FileHeader, _ body: (inout FileAttribute) -> Void) throws {
        try Self.attributeLock(owner.fileId).withLock {
            try f.modifyAttribute(capacity: FileAttribute.encodedBytes + 8) { p, n in
                var a: FileAttribute
                if let n {
                    if var v = FileAttribute.decode(p, count: n) {
                        if v.header == nil { v.header = owner }
                        a = v
                    } else {
                        a = FileAttribute(header: owner, entries: SIMD4(repeating: SectorEntry.unreadable))
                    }
                } else {
                    a = FileAttribute(header: owner)
                }
                body(&a)
                a.encode(into: p)
                return FileAttribute.encodedBytes
            }
        }
    }

    /// Zeroes ("never written") the entries of leading stripes `from` and
    /// after that are not already, in one host operation like
    /// `updateAttribute`; a file with no attribute, or a value that is no
    /// attribute, is left as it is (the header's repair is another's).
    public func clearLeadingEntries(_ f: MemberFile, fileId: UInt64, from: UInt64) throws {
        let lead = Int(Geometry.leadingStripes)
        guard Int(from) < lead else { return }
        if metadataInFile {
            // In place, as far as the file reaches (past it they read as zeros).
            let start = UInt64(FileAttribute.headerBytes) + 8 * from
            let end = min(UInt64(try f.status().st_size), UInt64(FileAttribute.encodedBytes))
            guard end > start else { return }
            let zeros = SIMD4<UInt64>.zero
            try withUnsafeBytes(of: zeros) { try f.write(from: $0.baseAddress!, count: Int(end - start), at: start) }
            return
        }
        try Self.attributeLock(fileId).withLock {
            try f.modifyAttribute(capacity: FileAttribute.encodedBytes + 8) { p, n in
                guard let n, var a = FileAttribute.decode(p, count: n),
                      (Int(from)..<lead).contains(where: { a.entries[$0] != 0 }) else { return nil }
                for s in Int(from)..<lead { a.entries[s] = 0 }
                a.encode(into: p)
                return FileAttribute.encodedBytes
            }
        }
    }

    /// Gives a new member file its attribute: `h`, every entry "never
    /// written".
    public func writeFreshAttribute(_ f: MemberFile, _ h: FileHeader) throws {
        try Self.attributeLock(h.fileId).withLock {
            try withUnsafeTemporaryAllocation(byteCount: FileAttribute.encodedBytes, alignment: 8) { raw in
                FileAttribute(header: h).encode(into: raw.baseAddress!)
                if metadataInFile {
                    try f.write(from: raw.baseAddress!, count: FileAttribute.encodedBytes, at: 0)
                } else {
                    try f.writeAttribute(from: raw.baseAddress!, count: FileAttribute.encodedBytes)
                }
            }
        }
    }

    /// Writes the header, keeping the entries.
    public func writeHeader(_ f: MemberFile, _ h: FileHeader) throws {
        guard metadataInFile else { return try updateAttribute(f, owner: h) { $0.header = h } }
        try withUnsafeTemporaryAllocation(byteCount: FileAttribute.headerBytes, alignment: 8) { raw in
            FileAttribute.encode(h, into: raw.baseAddress!)
            try f.write(from: raw.baseAddress!, count: FileAttribute.headerBytes, at: 0)
        }
    }

    // MARK: entries

    /// Reads the entries of sectors `sector ..< sector + count` of the chunk
    /// of `stripe` into `e`, as stored (little endian). A damaged attribute's
    /// entries read as `SectorEntry.unreadable`, a missing one's as zeros.
    public func readEntries(_ f: MemberFile, stripe: UInt64, sector: Int, count: Int, into e: UnsafeMutablePointer<UInt64>) throws {
        guard Self.isLeading(stripe) else {
            try f.readFull(into: UnsafeMutableRawPointer(e), count: count * 8, at: entryOffset(stripe: stripe, sector: sector))
            return
        }
        precondition(sector == 0 && count <= 1, "a leading chunk has one sector")
        guard count == 1 else { return }
        switch try readAttribute(f) {
        case .present(let a): e[0] = a.entries[Int(stripe)].littleEndian
        case .absent: e[0] = 0
        case .damaged: e[0] = SectorEntry.unreadable.littleEndian
        }
    }

    /// Writes entries (as stored, little endian) for sectors `sector ..<
    /// sector + count` of the chunk of `stripe`. `owner` makes a missing or
    /// damaged attribute again (`updateAttribute`).
    public func writeEntries(_ f: MemberFile, stripe: UInt64, sector: Int, count: Int, from e: UnsafeRawPointer,
                             owner: FileHeader) throws {
        guard Self.isLeading(stripe) else {
            try f.write(from: e, count: count * 8, at: entryOffset(stripe: stripe, sector: sector))
            return
        }
        precondition(sector == 0 && count <= 1, "a leading chunk has one sector")
        guard count == 1 else { return }
        if metadataInFile {
            try f.write(from: e, count: 8, at: UInt64(FileAttribute.headerBytes) + 8 * stripe)
            return
        }
        let raw = UInt64(littleEndian: e.loadUnaligned(as: UInt64.self))
        try updateAttribute(f, owner: owner) { $0.entries[Int(stripe)] = raw }
    }

    /// Marks every sector of the chunk of `stripe` in `f` damaged (or
    /// only `sectors` of them), so it reads as lost (EIO or rebuilt),
    /// never as the zeros an empty entry stands for.
    func poison(_ f: MemberFile, stripe: UInt64, sectors only: Range<Int>? = nil, owner: FileHeader) throws {
        let all = 0..<Int(sectors(stripe: stripe))
        let r = only?.clamped(to: all) ?? all
        guard !r.isEmpty else { return }
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: r.count) { e in
            for i in 0..<r.count { e[i] = SectorEntry.poison.littleEndian }
            try writeEntries(f, stripe: stripe, sector: r.lowerBound, count: r.count, from: UnsafeRawPointer(e.baseAddress!), owner: owner)
        }
    }
}
