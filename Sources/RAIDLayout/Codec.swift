import RAIDBase
import CISAL
#if canImport(Glibc)
import Glibc
#endif

/// CRC32C (Castagnoli) through ISA-L's crc32_iscsi, which does no pre- or
/// post-inversion itself.
@inline(__always)
public func crc32c(_ pointer: UnsafeRawPointer, count: Int) -> UInt32 {
    crc32_iscsi(UnsafeMutablePointer(mutating: pointer.assumingMemoryBound(to: UInt8.self)),
                Int32(count), 0xFFFF_FFFF) ^ 0xFFFF_FFFF
}

public func crc32c(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBytes { raw in
        raw.count == 0 ? 0 : crc32c(raw.baseAddress!, count: raw.count)
    }
}

/// Parity for one geometry: built once per array and reused. Encoding uses
/// xor_gen / pq_gen when the buffers allow it, else ec_encode_data with md's
/// P and Q rows; recovery inverts the surviving rows of the same matrix.
/// RAID 1 "parity" is a copy of the data chunk.
// @unchecked Sendable: its parity tables are read-only after init; decode tables are cached under `lock` and freed only in deinit.
public final class Codec: @unchecked Sendable {
    public let level: RAIDLevel
    public let dataCount: Int
    public let parityCount: Int
    /// n×k generator: identity rows, then all-ones (P), then powers of 2 (Q).
    private let matrix: [UInt8]
    /// ec_init_tables for the parity rows (cache-line aligned, as the
    /// decode tables below).
    private let parityTables: UnsafeMutablePointer<UInt8>
    private let lock = Lock()
    /// Decode tables by sources and wanted chunks, allocated once and freed
    /// with the codec: the hot path hands out a pointer, with no reference
    /// count to move (a 4 KiB decode is about 0.7 µs).
    private var decodeTables: [DecodeKey: UnsafeMutablePointer<UInt8>] = [:]
    /// None is freed before the codec: a caller may still be decoding with
    /// it. Their number is bounded by the sets of surviving and wanted
    /// chunks a geometry has, a few hundred for the arrays raidfs makes
    /// (each 32·k bytes per wanted chunk).
    private var lastKey: DecodeKey?
    private var lastTable: UnsafeMutablePointer<UInt8>?

    private struct DecodeKey: Hashable {
        package let sources: [Int]
        package let wanted: [Int]
    }

    public init(level: RAIDLevel, dataCount k: Int, parityCount m: Int) {
        precondition(k >= 1 && m >= 1 && k + m <= 255)
        self.level = level
        self.dataCount = k
        self.parityCount = m
        var a = [UInt8](repeating: 0, count: (k + m) * k)
        if level == .raid1 {
            precondition(k == 1)
            for i in 0..<(k + m) { a[i] = 1 }
        } else {
            precondition(m <= 2, "RAID 5/6 have at most two parity chunks")
            gf_gen_rs_matrix(&a, Int32(k + m), Int32(k))
        }
        matrix = a
        parityTables = Codec.alignedTable(32 * k * m)
        var rows = Array(a[(k * k)...])
        ec_init_tables(Int32(k), Int32(m), &rows, parityTables)
    }

    deinit {
        for t in decodeTables.values { t.deallocate() }
        parityTables.deallocate()
    }

    /// ISA-L's dot products load 32 bytes of table per source: a table
    /// straddling cache lines cost 6% of a 4 KiB RAID 6 decode.
    private static func alignedTable(_ bytes: Int) -> UnsafeMutablePointer<UInt8> {
        let t = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        t.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        return t.assumingMemoryBound(to: UInt8.self)
    }

    @inline(__always)
    private static func aligned32(_ ptrs: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, _ count: Int, _ len: Int) -> Bool {
        if len % 32 != 0 { return false }
        for i in 0..<count where Int(bitPattern: ptrs[i]) % 32 != 0 { return false }
        return true
    }

    /// Computes all parity chunks from the k data chunks.
    /// `chunks` holds k data pointers followed by m parity pointers.
    public func encode(_ chunks: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, length len: Int) {
        let k = dataCount, m = parityCount
        switch level {
        case .raid1:
            for i in 1...m { memcpy(chunks[i]!, chunks[0]!, len) }
        case .raid5 where k + m >= 3 && Codec.aligned32(chunks, k + m, len):
            let rc = xor_gen(Int32(k + m), Int32(len), UnsafeMutableRawPointer(chunks).assumingMemoryBound(to: UnsafeMutableRawPointer?.self))
            precondition(rc == 0, "xor_gen failed")
        case .raid6 where k + m >= 4 && Codec.aligned32(chunks, k + m, len):
            let rc = pq_gen(Int32(k + m), Int32(len), UnsafeMutableRawPointer(chunks).assumingMemoryBound(to: UnsafeMutableRawPointer?.self))
            precondition(rc == 0, "pq_gen failed")
        default:
            ec_encode_data(Int32(len), Int32(k), Int32(m), parityTables, chunks, chunks + k)
        }
    }

    /// Read-modify-write: folds `delta` (old XOR new of data chunk `index`)
    /// into the m parity chunks in place.
    public func update(dataIndex index: Int, delta: UnsafeMutablePointer<UInt8>,
                       parity: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, length len: Int) {
        precondition(level != .raid1 && index >= 0 && index < dataCount)
        ec_encode_data_update(Int32(len), Int32(dataCount), Int32(parityCount), Int32(index),
                              parityTables, delta, parity)
    }

    /// XORs `a` and `b` into `out` (the delta of a read-modify-write).
    public func xor(_ a: UnsafeMutablePointer<UInt8>, _ b: UnsafeMutablePointer<UInt8>, into out: UnsafeMutablePointer<UInt8>, length len: Int) {
        precondition(len % 32 == 0 && (Int(bitPattern: a) | Int(bitPattern: b) | Int(bitPattern: out)) % 32 == 0,
                     "xor needs 32-byte aligned buffers")
        // The pointer array on the stack: this runs for every read-modify-write.
        withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: 3) { v in
            v[0] = UnsafeMutableRawPointer(a)
            v[1] = UnsafeMutableRawPointer(b)
            v[2] = UnsafeMutableRawPointer(out)
            let rc = xor_gen(3, Int32(len), v.baseAddress!)
            precondition(rc == 0, "xor_gen failed")
        }
    }

    /// Recovers chunks `wanted` (chunk indices, data or parity) from exactly k
    /// intact chunks `sources` (chunk indices, ascending) into `outputs`.
    public func reconstruct(sources: [Int], sourcePointers: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>,
                            wanted: [Int], outputs: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, length len: Int) throws {
        let k = dataCount
        precondition(sources.count == k && !wanted.isEmpty)
        if level == .raid1 {
            for i in 0..<wanted.count { memcpy(outputs[i]!, sourcePointers[0]!, len) }
            return
        }
        let table = try decodeTable(sources: sources, wanted: wanted)
        ec_encode_data(Int32(len), Int32(k), Int32(wanted.count), table, sourcePointers, outputs)
    }

    private func decodeTable(sources: [Int], wanted: [Int]) throws -> UnsafeMutablePointer<UInt8> {
        // The last table first: a degraded array decodes with the same
        // sources stripe after stripe, and hashing two arrays per call costs
        // as much as a 4 KiB decode.
        let hit = lock.withLock { () -> UnsafeMutablePointer<UInt8>? in
            if let key = lastKey, key.sources == sources, key.wanted == wanted { return lastTable }
            let key = DecodeKey(sources: sources, wanted: wanted)
            guard let t = decodeTables[key] else { return nil }
            lastKey = key
            lastTable = t
            return t
        }
        if let t = hit { return t }
        let key = DecodeKey(sources: sources, wanted: wanted)
        let k = dataCount
        var b = [UInt8](repeating: 0, count: k * k)
        for (r, src) in sources.enumerated() {
            for c in 0..<k { b[r * k + c] = matrix[src * k + c] }
        }
        var inv = [UInt8](repeating: 0, count: k * k)
        guard gf_invert_matrix(&b, &inv, Int32(k)) == 0 else {
            throw FSError.io("parity matrix for sources \(sources) is singular")
        }
        // Row for a wanted data chunk d is inv[d]; for a parity chunk p it is
        // matrix[p] · inv (re-encode from the recovered data).
        var rows = [UInt8](repeating: 0, count: wanted.count * k)
        for (w, idx) in wanted.enumerated() {
            if idx < k {
                for c in 0..<k { rows[w * k + c] = inv[idx * k + c] }
            } else {
                for c in 0..<k {
                    var acc: UInt8 = 0
                    for j in 0..<k { acc ^= gf_mul(matrix[idx * k + j], inv[j * k + c]) }
                    rows[w * k + c] = acc
                }
            }
        }
        let t = Codec.alignedTable(32 * k * wanted.count)
        ec_init_tables(Int32(k), Int32(wanted.count), &rows, t)
        return lock.withLock {
            if let cached = decodeTables[key] {     // another thread built it meanwhile
                t.deallocate()
                lastKey = key
                lastTable = cached
                return cached
            }
            decodeTables[key] = t
            lastKey = key
            lastTable = t
            return t
        }
    }
}
