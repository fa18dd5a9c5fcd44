import Foundation
import XCTest
@testable import RAIDCore

/// fixtures/parity-vectors.json, made by tools/gen_parity_fixtures.py (an
/// independent pure-Python GF(2^8) implementation).
struct ParityVectors: Decodable {
    struct Parity: Decodable {
        let level: Int
        let dataChunks: Int
        let chunkBytes: Int
        let data: [String]
        let p: String
        let q: String?
    }
    struct CRC: Decodable {
        let dataHex: String
        let crc: UInt32
    }
    struct Layout: Decodable {
        let level: Int
        let members: Int
        let stripe: UInt64
        let p: Int
        let q: Int?
        let data: [Int]
    }
    let parity: [Parity]
    let crc32c: [CRC]
    let layout: [Layout]

    static func load() throws -> ParityVectors {
        let url = URL(fileURLWithPath: repoRoot + "/fixtures/parity-vectors.json")
        return try JSONDecoder().decode(ParityVectors.self, from: Data(contentsOf: url))
    }
}

func hexBytes(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(s.count / 2)
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        out.append(UInt8(s[i..<j], radix: 16)!)
        i = j
    }
    return out
}

/// Chunks in aligned buffers (what the engine uses) or at an odd offset
/// (forces the ec_encode_data path instead of xor_gen / pq_gen).
final class Chunks {
    let buffers: [AlignedBuffer]
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>
    init(count: Int, length: Int, misalign: Int = 0) {
        buffers = (0..<count).map { _ in AlignedBuffer(count: length + 64) }
        pointers = .allocate(capacity: count)
        for i in 0..<count { pointers[i] = buffers[i].bytes + misalign }
    }
    deinit { pointers.deallocate() }
    func set(_ i: Int, _ bytes: [UInt8]) { bytes.withUnsafeBytes { memcpy(pointers[i]!, $0.baseAddress!, $0.count) } }
    func get(_ i: Int, _ n: Int) -> [UInt8] { Array(UnsafeBufferPointer(start: pointers[i]!, count: n)) }
}

final class CodecTests: XCTestCase {
    func testParityMatchesIndependentReference() throws {
        let v = try ParityVectors.load()
        XCTAssertGreaterThan(v.parity.count, 10)
        for c in v.parity {
            let level = RAIDLevel(rawValue: c.level)!
            let m = level == .raid6 ? 2 : 1
            let codec = Codec(level: level, dataCount: c.dataChunks, parityCount: m)
            for misalign in [0, 1] {
                let ch = Chunks(count: c.dataChunks + m, length: c.chunkBytes, misalign: misalign)
                for (j, d) in c.data.enumerated() { ch.set(j, hexBytes(d)) }
                withExtendedLifetime(ch) { codec.encode(ch.pointers, length: c.chunkBytes) }
                XCTAssertEqual(ch.get(c.dataChunks, c.chunkBytes), hexBytes(c.p), "P RAID\(c.level) k=\(c.dataChunks) L=\(c.chunkBytes) misalign=\(misalign)")
                if let q = c.q {
                    XCTAssertEqual(ch.get(c.dataChunks + 1, c.chunkBytes), hexBytes(q), "Q k=\(c.dataChunks) L=\(c.chunkBytes) misalign=\(misalign)")
                }
            }
        }
    }

    func testCRC32CMatchesReference() throws {
        let v = try ParityVectors.load()
        XCTAssertFalse(v.crc32c.isEmpty)
        XCTAssertEqual(crc32c(Array("123456789".utf8)), 0xE306_9283)
        for c in v.crc32c { XCTAssertEqual(crc32c(hexBytes(c.dataHex)), c.crc, c.dataHex) }
    }

    func testReconstructAnyLossWithinRedundancy() throws {
        var rng = SeededBytes(seed: 7)
        let len = 4096
        for (level, n) in [(RAIDLevel.raid5, 3), (.raid5, 6), (.raid6, 4), (.raid6, 7), (.raid1, 3)] {
            let g = Geometry(level: level, memberCount: n, chunkSizeBytes: len)
            let k = g.dataChunkCount, m = g.parityChunkCount
            let codec = Codec(level: level, dataCount: k, parityCount: m)
            let ch = Chunks(count: n, length: len)
            for j in 0..<k { ch.set(j, rng.bytes(len)) }
            codec.encode(ch.pointers, length: len)
            let original = (0..<n).map { ch.get($0, len) }
            // Every set of lost chunks the level tolerates.
            var patterns: [[Int]] = (0..<n).map { [$0] }
            if m >= 2 { for a in 0..<n { for b in (a + 1)..<n { patterns.append([a, b]) } } }
            for lost in patterns {
                let sources = (0..<n).filter { !lost.contains($0) }.prefix(k).map { $0 }
                let src = UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>.allocate(capacity: k)
                let out = Chunks(count: lost.count, length: len)
                for (i, s) in sources.enumerated() { src[i] = ch.pointers[s] }
                try codec.reconstruct(sources: sources, sourcePointers: src, wanted: lost, outputs: out.pointers, length: len)
                for (i, l) in lost.enumerated() {
                    XCTAssertEqual(out.get(i, len), original[l], "RAID\(level.rawValue) n=\(n) lost \(lost)")
                }
                src.deallocate()
            }
        }
    }

    func testReadModifyWriteUpdateEqualsFullEncode() {
        var rng = SeededBytes(seed: 11)
        let len = 4096
        for (level, k) in [(RAIDLevel.raid5, 4), (.raid6, 4), (.raid6, 8)] {
            let m = level == .raid6 ? 2 : 1
            let codec = Codec(level: level, dataCount: k, parityCount: m)
            let ch = Chunks(count: k + m, length: len)
            for j in 0..<k { ch.set(j, rng.bytes(len)) }
            codec.encode(ch.pointers, length: len)
            let j = 2
            let old = AlignedBuffer(count: len), delta = AlignedBuffer(count: len)
            memcpy(old.pointer, ch.pointers[j]!, len)
            ch.set(j, rng.bytes(len))
            codec.xor(old.bytes, ch.pointers[j]!, into: delta.bytes, length: len)
            codec.update(dataIndex: j, delta: delta.bytes, parity: ch.pointers + k, length: len)
            let updated = (k..<(k + m)).map { ch.get($0, len) }
            codec.encode(ch.pointers, length: len)
            XCTAssertEqual(updated, (k..<(k + m)).map { ch.get($0, len) }, "RAID\(level.rawValue) k=\(k)")
        }
    }
}
