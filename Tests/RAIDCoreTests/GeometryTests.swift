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

    func testMemberFileLayoutKeepsTablesBesideTheirChunks() {
        let l = MemberFileLayout(chunkSizeBytes: 4096)
        XCTAssertEqual(l.tableOffset(stripe: 0), 4096)
        XCTAssertEqual(l.chunkOffset(stripe: 0), 8192)
        XCTAssertEqual(l.chunkOffset(stripe: 1), 8192 + 4096)
        XCTAssertEqual(l.entryOffset(stripe: 511), 4096 + 511 * 8)
        // Stripe 512 starts the second group: its table follows chunk 511.
        XCTAssertEqual(l.tableOffset(stripe: 512), l.chunkOffset(stripe: 511) + 4096)
        XCTAssertEqual(l.chunkOffset(stripe: 512), l.tableOffset(stripe: 512) + 4096)
        XCTAssertEqual(l.fileBytes(stripeCount: 512), l.tableOffset(stripe: 512))
        XCTAssertEqual(l.fileBytes(stripeCount: 0), 4096)
    }
}
