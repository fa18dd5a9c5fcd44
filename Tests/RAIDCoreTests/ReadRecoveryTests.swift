import Foundation
import XCTest
@testable import RAIDCore

/// Every redundancy that still exists is used before a read gives up: a
/// failed read is retried, whole chunks too few are made up sector by
/// sector, and what no member gives is EIO, never wrong bytes.
final class ReadRecoveryTests: XCTestCase {
    let sector = MemberFileLayout.sectorBytes

    /// Flips one byte in each of sectors `sectors` of stripe 5's chunk in
    /// `path`'s member file on member directory `dir`.
    private func rot(_ dir: String, _ path: String, _ layout: MemberFileLayout, sectors: [Int]) throws {
        let fd = open(dir + "/data" + path, O_RDWR)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        for s in sectors {
            let off = off_t(layout.chunkOffset(stripe: 5)) + off_t(s * sector) + 7
            var b: UInt8 = 0
            XCTAssertEqual(pread(fd, &b, 1, off), 1)
            b ^= 0xFF
            XCTAssertEqual(pwrite(fd, &b, 1, off), 1)
        }
    }

    /// RAID 5 of three with every chunk of a stripe rotted, each in other
    /// sectors: no whole chunk can be rebuilt, but every sector can. The
    /// read returns the right bytes and heals them; damage in one sector
    /// of two chunks is EIO, and the sectors around it still read.
    func testDamageOnTwoMembersInDifferentSectorsIsRebuiltSectorBySector() throws {
        let tmp = TempDir()
        let chunk = 65536
        let (array, dirs) = try makeArray(tmp, level: .raid5, members: 3, chunk: chunk)
        var rng = SeededBytes(seed: 41)
        let data = rng.bytes(8 * 2 * chunk)
        var af = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
        try af.write(data, at: 0)
        try af.sync(dataOnly: false)
        array.release(af)
        let layout = array.layout
        // Stripe 5: chunk 0 rotted in sectors 1 and 3, chunk 1 in sector
        // 2, parity in sector 0.
        let r0 = try roleOf(array, "/f", stripe: 5, chunkIndex: 0)
        let r1 = try roleOf(array, "/f", stripe: 5, chunkIndex: 1)
        let rp = try roleOf(array, "/f", stripe: 5, chunkIndex: 2)
        try rot(dirs[r0], "/f", layout, sectors: [1, 3])
        try rot(dirs[r1], "/f", layout, sectors: [2])
        try rot(dirs[rp], "/f", layout, sectors: [0])
        af = try array.open("/f")
        defer { array.release(af) }
        let stripeStart = Int(array.geometry.stripeStart(5))
        XCTAssertEqual(array.geometry.stripeBytes(5), 2 * chunk)
        var got = [UInt8](repeating: 0, count: 2 * chunk)
        let n = try got.withUnsafeMutableBytes { try af.read(into: $0.baseAddress!, count: 2 * chunk, at: UInt64(stripeStart)) }
        XCTAssertEqual(n, 2 * chunk)
        XCTAssertEqual(got, Array(data[stripeStart..<stripeStart + 2 * chunk]), "every sector from the chunk that holds it")
        XCTAssertGreaterThan(array.counters(r0).checksumErrors, 0)

        // Healed: the same bytes again, with no new error.
        let before = [r0, r1, rp].map { array.counters($0).checksumErrors }.reduce(0, +)
        got = [UInt8](repeating: 0, count: 2 * chunk)
        _ = try got.withUnsafeMutableBytes { try af.read(into: $0.baseAddress!, count: 2 * chunk, at: UInt64(stripeStart)) }
        XCTAssertEqual(got, Array(data[stripeStart..<stripeStart + 2 * chunk]))
        XCTAssertEqual([r0, r1, rp].map { array.counters($0).checksumErrors }.reduce(0, +), before, "the read healed all three")

        // One sector bad on both: beyond redundancy there, EIO — and the
        // sectors around it still read.
        try rot(dirs[r0], "/f", layout, sectors: [4])
        try rot(dirs[r1], "/f", layout, sectors: [4])
        XCTAssertThrowsError(try got.withUnsafeMutableBytes { try af.read(into: $0.baseAddress!, count: 2 * chunk, at: UInt64(stripeStart)) }) {
            XCTAssertEqual(($0 as? FSError)?.errno, EIO)
        }
        var one = [UInt8](repeating: 0, count: sector)
        _ = try one.withUnsafeMutableBytes { try af.read(into: $0.baseAddress!, count: sector, at: UInt64(stripeStart + 5 * sector)) }
        XCTAssertEqual(one, Array(data[stripeStart + 5 * sector..<stripeStart + 6 * sector]))
    }

    /// A RAID 1 whose two members both rot half their reads: a read whose
    /// chunk fails on both at first is made up from the reads that come
    /// back right, and never returns a wrong byte. (Every chunk reading
    /// right on the retry once crashed the engine: nothing was left to
    /// rebuild.)
    func testMirrorsThatBothRotHalfTheirReadsReadBackRight() throws {
        let tmp = TempDir()
        let (array, dirs) = try makeArray(tmp, level: .raid1, members: 2, chunk: 4096)
        var rng = SeededBytes(seed: 42)
        let data = rng.bytes(200 * 4096)
        let af = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
        defer { array.release(af) }
        try af.write(data, at: 0)
        for d in dirs { _ = try array.injectFault(d, InjectedFault(kind: .bitrot, rate: 0.5)) }
        var failures = 0
        for round in 0..<20 {
                do {
                let got = try af.readAll()
                XCTAssertEqual(got, data, "round \(round): never a wrong byte")
            } catch let e as FSError where e.errno == EIO {
                failures += 1
            }
        }
        XCTAssertLessThan(failures, 2, "patient retries find a good read")
    }
}
