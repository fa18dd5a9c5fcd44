import Foundation
import XCTest
@testable import RAIDCore

final class GeometryTests: XCTestCase {
    func testLeftSymmetricMatchesMdFormulas() {
        for n in 3...8 {
            let g = Geometry(level: .raid5, memberCount: n, chunkSizeBytes: 4096)
            for s in 0..<UInt64(3 * n) {
                let p = (n - 1) - Int(s) % n
                XCTAssertEqual(g.member(stripe: s, chunkIndex: n - 1), p)
                for j in 0..<(n - 1) { XCTAssertEqual(g.member(stripe: s, chunkIndex: j), (p + 1 + j) % n) }
            }
        }
        for n in 4...8 {
            let g = Geometry(level: .raid6, memberCount: n, chunkSizeBytes: 4096)
            for s in 0..<UInt64(3 * n) {
                let p = (n - 1) - Int(s) % n
                XCTAssertEqual(g.member(stripe: s, chunkIndex: n - 2), p)
                XCTAssertEqual(g.member(stripe: s, chunkIndex: n - 1), (p + 1) % n)
                for j in 0..<(n - 2) { XCTAssertEqual(g.member(stripe: s, chunkIndex: j), (p + 2 + j) % n) }
            }
        }
    }

    func testEveryStripeUsesEveryMemberOnceAndInverseAgrees() {
        for level in RAIDLevel.allCases {
            for n in level.minimumMemberCount...9 {
                let g = Geometry(level: level, memberCount: n, chunkSizeBytes: 4096)
                for s in 0..<UInt64(2 * n + 1) {
                    let ms = (0..<n).map { g.member(stripe: s, chunkIndex: $0) }
                    XCTAssertEqual(Set(ms).count, n, "RAID\(level.rawValue) n=\(n) s=\(s)")
                    for (i, m) in ms.enumerated() { XCTAssertEqual(g.chunkIndex(stripe: s, member: m), i) }
                }
            }
        }
    }

    func testLayoutAgainstIndependentReference() throws {
        let v = try ParityVectors.load()
        XCTAssertFalse(v.layout.isEmpty)
        for c in v.layout {
            let level = RAIDLevel(rawValue: c.level)!
            let g = Geometry(level: level, memberCount: c.members, chunkSizeBytes: 4096)
            let k = g.dataChunkCount
            XCTAssertEqual(g.member(stripe: c.stripe, chunkIndex: k), c.p)
            if let q = c.q { XCTAssertEqual(g.member(stripe: c.stripe, chunkIndex: k + 1), q) }
            XCTAssertEqual((0..<k).map { g.member(stripe: c.stripe, chunkIndex: $0) }, c.data)
        }
    }

    func testCountsAndChunkSizeRules() {
        XCTAssertEqual(Geometry(level: .raid6, memberCount: 6, chunkSizeBytes: 65536).dataChunkCount, 4)
        XCTAssertEqual(Geometry(level: .raid5, memberCount: 3, chunkSizeBytes: 65536).parityChunkCount, 1)
        XCTAssertEqual(Geometry(level: .raid1, memberCount: 3, chunkSizeBytes: 65536).dataChunkCount, 1)
        XCTAssertTrue(Geometry.isValidChunkSize(4096))
        XCTAssertTrue(Geometry.isValidChunkSize(16 << 20))
        XCTAssertFalse(Geometry.isValidChunkSize(2048))
        XCTAssertFalse(Geometry.isValidChunkSize(32 << 20))
        XCTAssertFalse(Geometry.isValidChunkSize(12288))
    }

    /// Format 3: the leading stripes' 4 KiB chunks first (their entries in
    /// the attribute), then groups of a table and its chunks.
    func testMemberFileLayoutKeepsTablesBesideTheirChunks() {
        let l = MemberFileLayout(chunkSizeBytes: 4096)
        XCTAssertEqual((0..<4).map { l.chunkOffset(stripe: $0) }, [0, 4096, 8192, 12288])
        XCTAssertEqual(l.tableOffset(stripe: 4), 16384)
        XCTAssertEqual(l.chunkOffset(stripe: 4), 16384 + 4096)
        XCTAssertEqual(l.chunkOffset(stripe: 5), 16384 + 8192)
        XCTAssertEqual(l.entryOffset(stripe: 4 + 511), 16384 + 511 * 8)
        // Stripe 4 + 512 starts the second group: its table follows chunk 4 + 511.
        XCTAssertEqual(l.tableOffset(stripe: 516), l.chunkOffset(stripe: 515) + 4096)
        XCTAssertEqual(l.chunkOffset(stripe: 516), l.tableOffset(stripe: 516) + 4096)
        XCTAssertEqual(l.fileBytes(stripeCount: 516), l.tableOffset(stripe: 516))
        XCTAssertEqual(l.fileBytes(stripeCount: 0), 0, "an empty file: the header is in the attribute")
        XCTAssertEqual(l.fileBytes(stripeCount: 1), 4096)
        XCTAssertEqual(l.fileBytes(stripeCount: 4), 16384)
        XCTAssertEqual(l.fileBytes(stripeCount: 5), 16384 + 8192)
        let big = MemberFileLayout(chunkSizeBytes: 128 * 1024)
        for layout in [l, big] {
            for count in [UInt64(0), 1, 3, 4, 5, 6, 600] {
                let bytes = layout.fileBytes(stripeCount: count)
                XCTAssertEqual(layout.stripesHeld(memberFileBytes: bytes), count, "\(count) stripes")
                if count > 0 { XCTAssertEqual(layout.stripesHeld(memberFileBytes: bytes - 1), count, "\(count) stripes, cut short") }
            }
        }
    }

    /// Stripe boundaries: 4 KiB chunks in the leading stripes, then the
    /// array's chunk size; offsets map to stripes and back.
    func testLeadingStripesThenFullChunks() {
        let g = Geometry(level: .raid6, memberCount: 6, chunkSizeBytes: 128 * 1024)
        XCTAssertEqual((0..<6).map { g.stripeStart($0) }, [0, 16384, 32768, 49152, 65536, 65536 + 524_288])
        XCTAssertEqual(g.chunkBytes(3), 4096)
        XCTAssertEqual(g.chunkBytes(4), 128 * 1024)
        for s in UInt64(0)..<12 {
            XCTAssertEqual(g.stripe(at: g.stripeStart(s)), s)
            XCTAssertEqual(g.stripe(at: g.stripeStart(s) + UInt64(g.stripeBytes(s)) - 1), s)
            XCTAssertEqual(g.stripe(atOrAfter: g.stripeStart(s) + 1), s + 1)
        }
        XCTAssertEqual(g.stripeCount(size: 0), 0)
        XCTAssertEqual(g.stripeCount(size: 1), 1)
        XCTAssertEqual(g.stripeCount(size: 65536), 4)
        XCTAssertEqual(g.stripeCount(size: 65537), 5)
        XCTAssertEqual(g.chunkExtent(stripe: 0, stripeExtent: 5000, chunkIndex: 1), 4096)
        XCTAssertEqual(g.chunkExtent(stripe: 0, stripeExtent: 5000, chunkIndex: 2), 0)
        XCTAssertEqual(g.chunkExtent(stripe: 0, stripeExtent: 5000, chunkIndex: 4), 4096, "P as long as the first data chunk")
    }
}
