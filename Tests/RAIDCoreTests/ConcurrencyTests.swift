import Foundation
import XCTest
@testable import RAIDCore

/// Writers of different stripes of one file run at once (stripe-range
/// locks): whatever the interleaving, the file ends as the model says,
/// parity and checksums agree, and no reader sees a write half done.
final class ConcurrencyTests: XCTestCase {
    private let threads = 4

    /// Runs `body(t)` on `threads` threads at once and waits for all.
    func together(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        for t in 0..<count {
            group.enter()
            Thread {
                body(t)
                group.leave()
            }.start()
        }
        group.wait()
    }

    /// Each thread owns the stripes s with s % threads == t and writes
    /// seeded ranges inside them (sub-sector, whole-chunk, cross-chunk:
    /// read-modify-write, reconstruct and full-stripe writes), keeping its
    /// slice of the model; afterwards the file equals the model and a
    /// check finds parity and checksums consistent.
    private func writersOfDifferentStripes(level: RAIDLevel, members: Int, failing role: Int? = nil) throws {
        let tmp = TempDir()
        let (array, _) = try makeArray(tmp, level: level, members: members, chunk: 16 * 1024)
        let f = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
        defer { array.release(f) }
        let sb = array.geometry.stripeDataBytes, stripes = 48
        var initial = SeededBytes(seed: 77)
        let start = initial.bytes(stripes * sb)
        try f.write(start, at: 0)
        if let role { array.memberFailed(role: role, reason: "test") }
        let model = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: start.count)
        defer { model.deallocate() }
        _ = model.initialize(from: start)
        let failures = Failures()
        let threads = self.threads
        together(threads) { t in
            var rng = SeededBytes(seed: UInt64(1000 + t))
            for _ in 0..<150 {
                let s = t + threads * rng.below(stripes / threads)
                let offset = rng.below(sb)
                let length = 1 + rng.below(min(sb - offset, [40, 4096, 16 * 1024, sb][rng.below(4)]))
                let data = rng.bytes(length)
                do {
                    try f.write(data, at: UInt64(s * sb + offset))
                    for i in 0..<length { model[s * sb + offset + i] = data[i] }
                } catch {
                    failures.add("thread \(t): write at stripe \(s): \(error)")
                }
            }
        }
        XCTAssertEqual(failures.all, [])
        let got = try f.readAll()
        XCTAssertEqual(got.count, model.count)
        if let i = got.indices.first(where: { got[$0] != model[$0] }) {
            XCTFail("byte \(i) (stripe \(i / sb)) differs from the model")
        }
        var problems: [String] = []
        try f.checkAll(mode: .check) { s, r in problems.append("stripe \(s): \(r.problems) unrecoverable \(r.unrecoverable)") }
        XCTAssertEqual(problems, [], "parity and checksums after concurrent writers")
    }

    func testWritersOfDifferentStripesRAID5() throws { try writersOfDifferentStripes(level: .raid5, members: 4) }
    func testWritersOfDifferentStripesRAID6() throws { try writersOfDifferentStripes(level: .raid6, members: 6) }
    func testWritersOfDifferentStripesRAID1() throws { try writersOfDifferentStripes(level: .raid1, members: 3) }
    func testWritersOfDifferentStripesDegradedRAID6() throws {
        try writersOfDifferentStripes(level: .raid6, members: 6, failing: 2)
    }

    /// Two writers fill ranges of the same stripes with one byte per write
    /// (the write's number), two readers read those ranges meanwhile: every
    /// read sees one write's bytes, never parts of two. The ranges cross
    /// a chunk boundary, so a torn read would mix chunks of two writes. A
    /// scrub in repair mode runs over the same stripes and finds nothing.
    func testReadersNeverSeeAWriteHalfDone() throws {
        let tmp = TempDir()
        let (array, _) = try makeArray(tmp, level: .raid6, members: 6, chunk: 16 * 1024)
        let f = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
        defer { array.release(f) }
        let sb = array.geometry.stripeDataBytes, stripes = 2
        try f.write([UInt8](repeating: 0, count: stripes * sb), at: 0)
        // Whole stripes, and 20 KiB across the first chunk boundary.
        let shapes = [(0, sb), (12 * 1024, 20 * 1024)]
        let failures = Failures()
        together(5) { t in
            var rng = SeededBytes(seed: UInt64(50 + t))
            for n in 0..<1000 {
                let s = rng.below(stripes)
                if t == 4 {
                    do {
                        let r = try f.checkStripe(UInt64(s), mode: .repair)
                        if !r.problems.isEmpty { failures.add("scrub: stripe \(s): \(r.problems)") }
                    } catch {
                        failures.add("scrub: \(error)")
                    }
                    continue
                }
                let (offset, length) = shapes[rng.below(shapes.count)]
                let at = UInt64(s * sb + offset)
                do {
                    if t < 2 {
                        try f.write([UInt8](repeating: UInt8(truncatingIfNeeded: n * 2 + t + 1), count: length), at: at)
                    } else {
                        var got = [UInt8](repeating: 0, count: length)
                        let read = try got.withUnsafeMutableBytes { try f.read(into: $0.baseAddress!, count: length, at: at) }
                        // A whole-stripe read may span older partial writes;
                        // the partial shape's bytes must be one write's.
                        let window = offset == 0 ? 12 * 1024..<(32 * 1024) : 0..<length
                        let first = got[window.lowerBound]
                        if read != length || got[window].contains(where: { $0 != first }) {
                            failures.add("reader \(t): stripe \(s) bytes \(offset)+\(length) mix writes")
                        }
                    }
                } catch {
                    failures.add("thread \(t): \(error)")
                }
            }
        }
        XCTAssertEqual(failures.all, [])
        var problems: [String] = []
        try f.checkAll(mode: .check) { s, r in problems.append("stripe \(s): \(r.problems)") }
        XCTAssertEqual(problems, [])
    }
}

extension ConcurrencyTests {
    /// Readers of some stripes fill the checksum table cache while writers
    /// change the entries of other stripes of the same table (every full
    /// stripe here shares each member's first table): a table read before
    /// a neighbour's write and kept after it would hold that write's old
    /// entries, and the next read of it would count a checksum error that
    /// is not on disk. None may; the file ends as the model, and a cold
    /// read and a check agree with it.
    func testReadersFillingTheEntryCacheWhileWritersChangeTheSameTable() throws {
        for (level, members) in [(RAIDLevel.raid5, 4), (.raid6, 6)] {
            let tmp = TempDir()
            let (array, _) = try makeArray(tmp, level: level, members: members, chunk: 16 * 1024)
            let g = array.geometry
            let first = Geometry.leadingStripes, stripes = 40
            XCTAssertLessThan(UInt64(stripes), array.layout.chunksPerGroup, "one table per member")
            let f = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
            let end = Int(g.stripeStart(first + UInt64(stripes)))
            var initial = SeededBytes(seed: 5)
            let start = initial.bytes(end)
            try f.write(start, at: 0)
            let model = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: end)
            defer { model.deallocate() }
            _ = model.initialize(from: start)
            let failures = Failures()
            let sb = g.stripeDataBytes
            together(4) { t in
                var rng = SeededBytes(seed: UInt64(300 + t))
                for _ in 0..<400 {
                    let s = first + UInt64(rng.below(stripes / 2) * 2 + t % 2)
                    let at = Int(g.stripeStart(s))
                    do {
                        if t < 2 {
                            // A 4 KiB read-modify-write somewhere in the stripe.
                            let offset = rng.below(sb / 4096) * 4096
                            let data = rng.bytes(4096)
                            try f.write(data, at: UInt64(at + offset))
                            for i in 0..<4096 { model[at + offset + i] = data[i] }
                        } else {
                            var got = [UInt8](repeating: 0, count: sb)
                            _ = try got.withUnsafeMutableBytes { try f.read(into: $0.baseAddress!, count: sb, at: UInt64(at)) }
                        }
                    } catch {
                        failures.add("RAID\(level.rawValue) thread \(t): stripe \(s): \(error)")
                    }
                }
            }
            XCTAssertEqual(failures.all, [])
            let errors = (0..<members).map { array.counters($0).checksumErrors }.reduce(0, +)
            XCTAssertEqual(errors, 0, "RAID\(level.rawValue): checksum errors counted that are not on disk")
            XCTAssertTrue(try f.readAll() == Array(model), "RAID\(level.rawValue): the file differs from the model")
            array.release(f)
            let cold = try array.open("/f")
            XCTAssertTrue(try cold.readAll() == Array(model), "RAID\(level.rawValue): read cold, the file differs from the model")
            var problems: [String] = []
            try cold.checkAll(mode: .check) { s, r in problems.append("stripe \(s): \(r.problems)") }
            XCTAssertEqual(problems, [])
            array.release(cold)
        }
    }
}

/// Failures collected from several threads.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ s: String) { lock.withLock { list.append(s) } }
    var all: [String] { lock.withLock { list } }
}
