import Foundation
import XCTest
@testable import RAIDCore

/// Applies a seeded mix of writes (unaligned, spanning stripes, sparse,
/// appends) and truncates, comparing with the model after each step.
func runWorkload(_ file: ArrayFile, seed: UInt64, steps: Int, stripeBytes: Int) throws {
    var rng = SeededBytes(seed: seed)
    var model = try file.readAll()
    for step in 0..<steps {
        let op = rng.below(10)
        if op < 7 {
            let span = 4 * stripeBytes
            let offset = rng.below(span + 1) + (rng.below(4) == 0 ? model.count : 0)
            let length = 1 + rng.below([17, 4096, stripeBytes, 3 * stripeBytes + 5][rng.below(4)])
            let data = rng.bytes(length)
            try file.write(data, at: UInt64(offset))
            if model.count < offset + length { model += [UInt8](repeating: 0, count: offset + length - model.count) }
            model.replaceSubrange(offset..<(offset + length), with: data)
        } else {
            let newSize = rng.below(model.count + stripeBytes + 1)
            try file.truncate(to: UInt64(newSize))
            if newSize < model.count { model.removeLast(model.count - newSize) }
            else { model += [UInt8](repeating: 0, count: newSize - model.count) }
        }
        XCTAssertEqual(file.currentSize(), UInt64(model.count), "size after step \(step) seed \(seed)")
        let got = try file.readAll()
        if got != model {
            let i = (0..<min(got.count, model.count)).first { got[$0] != model[$0] } ?? min(got.count, model.count)
            XCTFail("content differs at byte \(i) after step \(step), seed \(seed)")
            return
        }
    }
}

/// Round trips through the engine over directory members, checked against an
/// in-memory model of the file.
final class ArrayFileTests: XCTestCase {
    let shapes: [(RAIDLevel, Int)] = [(.raid1, 2), (.raid1, 3), (.raid5, 3), (.raid5, 5), (.raid6, 4), (.raid6, 6)]

    func testRoundTripsEveryLevel() throws {
        for (level, n) in shapes {
            let tmp = TempDir()
            let (array, _) = try makeArray(tmp, level: level, members: n)
            let f = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
            try runWorkload(f, seed: UInt64(level.rawValue * 100 + n), steps: 60, stripeBytes: array.geometry.stripeDataBytes)
            array.release(f)
            // Reads heal what they find; parity and checksums must agree by
            // themselves (small writes update only the bytes they cover).
            let summary = try array.checkAll(mode: .check) { XCTFail("RAID\(level.rawValue) x\(n): \($0)") }
            XCTAssertEqual(summary.problems, 0)
            XCTAssertGreaterThan(summary.stripesChecked, 0)
        }
    }

    func testUnalignedReadsReturnExactBytes() throws {
        let tmp = TempDir()
        let (array, _) = try makeArray(tmp, level: .raid6, members: 5)
        let f = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
        var rng = SeededBytes(seed: 3)
        let data = rng.bytes(100_000)
        try f.write(data, at: 0)
        for _ in 0..<200 {
            let off = rng.below(data.count + 100), len = rng.below(40_000)
            var buf = [UInt8](repeating: 0xAA, count: len)
            let got = try buf.withUnsafeMutableBytes { try f.read(into: $0.baseAddress!, count: len, at: UInt64(off)) }
            let want = off >= data.count ? [] : Array(data[off..<min(data.count, off + len)])
            XCTAssertEqual(got, want.count)
            XCTAssertEqual(Array(buf[0..<got]), want)
        }
        array.release(f)
    }

    func testContentsSurviveReopenAndReassembly() throws {
        let tmp = TempDir()
        var dirs: [String] = []
        var rng = SeededBytes(seed: 5)
        let data = rng.bytes(70_001)
        do {
            let (array, d) = try makeArray(tmp, level: .raid5, members: 4)
            dirs = d
            let f = try array.create("/a", mode: 0o600, exclusive: true, caller: root)
            try f.write(data, at: 0)
            array.release(f)
            array.shutdown()
        }
        let (again, _) = try RAIDArray.assemble(directories: dirs.reversed(), logger: quietLogger)
        let f = try again.open("/a")
        XCTAssertEqual(try f.readAll(), data)
        XCTAssertEqual(try again.getattr("/a").st_size, 70_001)
        again.release(f)
    }

    /// Loses members up to the level's redundancy by deleting their
    /// directories, by corrupting their chunks, or both; every byte must
    /// still read back, and corrupt chunks must be rewritten.
    func testReadsSurviveLossAndCorruptionUpToRedundancy() throws {
        for (level, n) in [(RAIDLevel.raid1, 3), (.raid5, 4), (.raid6, 6)] {
            let redundancy = level.redundancy(memberCount: n)
            for mode in ["delete", "corrupt", "mixed"] {
                let tmp = TempDir()
                let (array, dirs) = try makeArray(tmp, level: level, members: n)
                var rng = SeededBytes(seed: UInt64(n * 31 + mode.count))
                let data = rng.bytes(300_000)
                let f = try array.create("/big", mode: 0o644, exclusive: true, caller: root)
                try f.write(data, at: 0)
                array.release(f)
                let victims = Array((0..<n).shuffledDeterministically(&rng).prefix(redundancy))
                for (i, v) in victims.enumerated() {
                    let corrupt = mode == "corrupt" || (mode == "mixed" && i % 2 == 0)
                    if corrupt {
                        try flipBytes(in: dirs[v] + "/data/big", count: 200, rng: &rng)
                    } else {
                        try FileManager.default.removeItem(atPath: dirs[v])
                    }
                }
                let g = try array.open("/big")
                XCTAssertEqual(try g.readAll(), data, "RAID\(level.rawValue) \(mode)")
                array.release(g)
                // The repaired copy verifies with no new checksum errors.
                let before = (0..<n).map { array.counters($0).checksumErrors }.reduce(0, +)
                let h = try array.open("/big")
                XCTAssertEqual(try h.readAll(), data)
                array.release(h)
                let after = (0..<n).map { array.counters($0).checksumErrors }.reduce(0, +)
                XCTAssertEqual(before, after, "second read of RAID\(level.rawValue) \(mode) still found damage")
            }
        }
    }

    func testBeyondRedundancyIsEIONeverGarbage() throws {
        let tmp = TempDir()
        let (array, dirs) = try makeArray(tmp, level: .raid5, members: 4)
        var rng = SeededBytes(seed: 9)
        let data = rng.bytes(100_000)
        let f = try array.create("/x", mode: 0o644, exclusive: true, caller: root)
        try f.write(data, at: 0)
        array.release(f)
        // Corrupt the same stripe's chunk on two members: data chunk 0 (the
        // read's) and P.
        for v in [try roleOf(array, "/x", stripe: 0, chunkIndex: 0), try roleOf(array, "/x", stripe: 0, chunkIndex: 3)] {
            let fd = open(dirs[v] + "/data/x", O_RDWR)
            var junk = [UInt8](repeating: 0x5A, count: 512)
            _ = pwrite(fd, &junk, 512, off_t(array.layout.chunkOffset(stripe: 0)))
            close(fd)
        }
        let g = try array.open("/x")
        var buf = [UInt8](repeating: 0, count: 4096)
        XCTAssertThrowsError(try buf.withUnsafeMutableBytes { try g.read(into: $0.baseAddress!, count: 4096, at: 0) }) { e in
            XCTAssertEqual((e as? FSError)?.errno, EIO)
        }
        // Other stripes are still served.
        let off = array.geometry.stripeDataBytes * 3
        let got = try buf.withUnsafeMutableBytes { try g.read(into: $0.baseAddress!, count: 4096, at: UInt64(off)) }
        XCTAssertEqual(Array(buf[0..<got]), Array(data[off..<(off + 4096)]))
        array.release(g)
    }

    func testWritesContinueDegradedAndReadBackAfterRemount() throws {
        for (level, n) in [(RAIDLevel.raid5, 3), (.raid6, 5), (.raid1, 2)] {
            let tmp = TempDir()
            let (array, dirs) = try makeArray(tmp, level: level, members: n)
            var rng = SeededBytes(seed: UInt64(n))
            let w = try array.create("/w", mode: 0o644, exclusive: true, caller: root)
            try w.write(rng.bytes(50_000), at: 0)
            array.release(w)
            let lost = Array(0..<level.redundancy(memberCount: n))
            for v in lost { try FileManager.default.removeItem(atPath: dirs[v]) }
            let f = try array.open("/w")
            try runWorkload(f, seed: UInt64(n) + 77, steps: 25, stripeBytes: array.geometry.stripeDataBytes)
            let final = try f.readAll()
            array.release(f)
            XCTAssertEqual(array.state, .degraded)
            array.shutdown()
            let (again, report) = try RAIDArray.assemble(directories: dirs, logger: quietLogger)
            XCTAssertEqual(report.leftOut.count, lost.count)
            let g = try again.open("/w")
            XCTAssertEqual(try g.readAll(), final, "RAID\(level.rawValue)")
            again.release(g)
        }
    }
}

func flipBytes(in path: String, count: Int, rng: inout SeededBytes) throws {
    let fd = open(path, O_RDWR)
    guard fd >= 0 else { throw FSError.system("open", path) }
    defer { close(fd) }
    var st = stat()
    fstat(fd, &st)
    // Past the first 4 KiB (stripe 0's chunk; SectorChecksumTests rot it).
    for _ in 0..<count {
        let off = off_t(4096 + rng.below(Int(st.st_size) - 4096))
        var b: UInt8 = 0
        _ = pread(fd, &b, 1, off)
        b ^= UInt8(1 + rng.below(255))
        _ = pwrite(fd, &b, 1, off)
    }
}

extension Range where Bound == Int {
    func shuffledDeterministically(_ rng: inout SeededBytes) -> [Int] {
        var a = Array(self)
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, rng.below(i + 1)) }
        return a
    }
}
