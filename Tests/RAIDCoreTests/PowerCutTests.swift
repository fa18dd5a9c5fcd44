import Foundation
import XCTest
@testable import RAIDCore
import RAIDSimulation

/// Below FUSE: the array over simulated members; a crash of the daemon
/// (every member keeps what it was given) combined with a power cut of one
/// member (its writes since its last sync dropped or torn page by page).
/// After reassembly and resync, every fsync'ed byte must be intact, the
/// offline check clean, and every file must read the same with any member
/// (any two for RAID 6) missing.
final class PowerCutTests: XCTestCase {
    /// What the workload knows: contents as of each file's last fsync, and
    /// the operations since then (which may or may not have landed).
    struct FileModel {
        var durable: [UInt8] = []
        var pending: [(offset: Int, bytes: [UInt8]?, truncate: Int?)] = []

        mutating func apply(_ op: (offset: Int, bytes: [UInt8]?, truncate: Int?), to buf: inout [UInt8]) {
            if let size = op.truncate {
                if size < buf.count { buf.removeLast(buf.count - size) } else { buf += [UInt8](repeating: 0, count: size - buf.count) }
            } else if let b = op.bytes {
                if buf.count < op.offset + b.count { buf += [UInt8](repeating: 0, count: op.offset + b.count - buf.count) }
                buf.replaceSubrange(op.offset..<(op.offset + b.count), with: b)
            }
        }

        mutating func synced() {
            var d = durable
            for op in pending { apply(op, to: &d) }
            durable = d
            pending = []
        }

        /// Nil when every byte is explained by the durable state or a later operation.
        func explain(_ actual: [UInt8]) -> String? {
            if pending.isEmpty {
                return actual == durable ? nil : "fsync'ed content differs (size \(actual.count) vs \(durable.count))"
            }
            let truncated = pending.contains { $0.truncate != nil }
            if !truncated && actual.count < durable.count { return "size \(actual.count) below fsync'ed \(durable.count)" }
            var written: [Int: Set<UInt8>] = [:]
            for op in pending { if let b = op.bytes { for (i, v) in b.enumerated() { written[op.offset + i, default: []].insert(v) } } }
            for (k, a) in actual.enumerated() {
                if k < durable.count && a == durable[k] { continue }
                if written[k]?.contains(a) ?? false { continue }
                if a == 0 && (truncated || k >= durable.count) { continue }
                return "byte \(k) = \(a): neither the fsync'ed value nor a later write"
            }
            return nil
        }
    }

    func runCrash(level: RAIDLevel, members n: Int, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        let members = (0..<n).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: level, chunkSizeBytes: 4096, members: members)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
        try array.markInUse()
        let fileCount = 3
        var models = [FileModel](repeating: FileModel(), count: fileCount)
        var files: [ArrayFile] = []
        for i in 0..<fileCount { files.append(try array.create("/f\(i)", mode: 0o644, exclusive: true, caller: root)) }
        let steps = 10 + Int(rng.next() % 60)
        for _ in 0..<steps {
            let f = Int(rng.next() % UInt64(fileCount))
            let r = rng.next() % 100
            if r < 8 {
                let size = Int(rng.next() % 60_000)
                try files[f].truncate(to: UInt64(size))
                models[f].pending.append((0, nil, size))
            } else if r < 25 {
                try files[f].sync(dataOnly: rng.next() % 2 == 0)
                models[f].synced()
            } else {
                let off = Int(rng.next() % 50_000)
                let len = 1 + Int(rng.next() % 20_000)
                var bytes = [UInt8](repeating: 0, count: len)
                for i in 0..<len { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
                try files[f].write(bytes, at: UInt64(off))
                models[f].pending.append((off, bytes, nil))
            }
        }
        // The crash: no shutdown, the arrays' files are simply abandoned.
        let victim = Int(rng.next() % UInt64(n))
        members[victim].powerCut(tear: rng.next() % 2 == 0, rng: &rng)

        let (again, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
        XCTAssertTrue(again.needsResync, "a crash with writes in flight leaves regions in the intent log")
        let named = Set(again.recovery.pendingResync.map { $0.1 }.filter { !$0.isEmpty })
        try again.markInUse()
        if !named.isEmpty {
            // The files the log named are scrubbed next, even across another crash.
            XCTAssertEqual(again.currentSuperblock.scrub?.checkpoint?.only.map(Set.init), named)
        }
        var healthy: [[UInt8]] = []
        for i in 0..<fileCount {
            let af = try again.open("/f\(i)")
            let got = try af.readAll()
            again.release(af)
            if let why = models[i].explain(got) {
                XCTFail("RAID\(level.rawValue) seed \(seed) victim \(victim): /f\(i): \(why)")
                return
            }
            healthy.append(got)
        }
        let summary = try again.checkAll(mode: .check) { XCTFail("RAID\(level.rawValue) seed \(seed): after resync: \($0)") }
        XCTAssertEqual(summary.exitCode, 0)
        again.shutdown()
        // Any member missing (any two for RAID 6): the same bytes, rebuilt from parity.
        let redundancy = level.redundancy(memberCount: n)
        var lost: [Int] = [Int(rng.next() % UInt64(n))]
        if redundancy >= 2 { lost.append((lost[0] + 1 + Int(rng.next() % UInt64(n - 1))) % n) }
        let (degraded, _) = try RAIDArray.assemble(members: members.enumerated().filter { !lost.contains($0.offset) }.map { $0.element },
                                                   configuration: ArrayConfiguration(readOnly: true), logger: quietLogger)
        for i in 0..<fileCount {
            let af = try degraded.open("/f\(i)")
            XCTAssertEqual(try af.readAll(), healthy[i], "RAID\(level.rawValue) seed \(seed): /f\(i) differs without members \(lost): write hole")
            degraded.release(af)
        }
    }

    func testPowerCutRAID5() throws { for seed in UInt64(1)...25 { try runCrash(level: .raid5, members: 4, seed: seed) } }
    func testPowerCutRAID6() throws { for seed in UInt64(1)...25 { try runCrash(level: .raid6, members: 5, seed: seed) } }
    func testPowerCutRAID1() throws { for seed in UInt64(1)...15 { try runCrash(level: .raid1, members: 3, seed: seed) } }

    /// A chunk a failed rebuild poisoned holds no data and no checksum to
    /// check its rebuild by. After a crash, resync rebuilds it only where
    /// the rest of the stripe over-determines it and agrees: with just
    /// enough chunks, one of them stale (the write hole of the write in
    /// flight), it would come back wrong, so it reads as EIO; with one
    /// to spare it comes back right.
    func testResyncRebuildsAPoisonedChunkOnlyFromParityThatAgrees() throws {
        for (level, n, dropParity) in [(RAIDLevel.raid5, 4, true), (.raid6, 5, true), (.raid6, 5, false)] {
            var rng = SeededGenerator(seed: 7)
            let members = (0..<n).map { SimulatedMember(name: "sim\($0)") }
            _ = try ArrayCreator.initialize(level: level, chunkSizeBytes: 4096, members: members)
            let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
            try array.markInUse()
            let f = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
            let k = array.geometry.dataChunkCount
            var old = [UInt8](repeating: 0, count: 4096 * k)
            for i in old.indices { old[i] = UInt8(truncatingIfNeeded: rng.next()) }
            try f.write(old, at: 0)
            try f.sync(dataOnly: false)
            // A write to chunk 1 in flight; chunk 0 poisoned, as a rebuild
            // that could not rebuild it leaves it; the daemon dies and the
            // first parity member loses its part of the write.
            let new = [UInt8](repeating: 0x5a, count: 4096)
            try f.write(new, at: 4096)
            let poisoned = f.role(stripe: 0, chunkIndex: 0)
            try array.layout.poison(f.writable(poisoned)!, stripe: 0, owner: f.owner)
            let parity = array.member(f.role(stripe: 0, chunkIndex: k))!.name
            if dropParity { members.first { $0.name == parity }!.powerCut(tear: false, rng: &rng) }

            let (again, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
            XCTAssertTrue(again.needsResync)
            try again.markInUse()
            let g = try again.open("/f")
            defer { again.release(g) }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let first = Result { try chunk.withUnsafeMutableBytes { try g.read(into: $0.baseAddress!, count: 4096, at: 0) } }
            let what = "RAID \(level.rawValue), parity \(dropParity ? "stale" : "whole")"
            if dropParity {
                XCTAssertThrowsError(try first.get(), "\(what): the poisoned chunk rebuilt from stale parity") { error in
                    XCTAssertEqual((error as? FSError)?.errno, EIO, what)
                }
            } else {
                XCTAssertEqual(try first.get(), 4096, what)
                XCTAssertEqual(chunk, Array(old[0..<4096]), what)
            }
            // The other chunks read as written, whichever write they hold.
            var rest = [UInt8](repeating: 0, count: 4096 * (k - 1))
            XCTAssertEqual(try rest.withUnsafeMutableBytes { try g.read(into: $0.baseAddress!, count: $0.count, at: 4096) }, rest.count, what)
            XCTAssertEqual(Array(rest[0..<4096]), new, what)
            XCTAssertEqual(Array(rest[4096...]), Array(old[8192...]), what)
            again.shutdown()
        }
    }

    /// Without the intent log the same crashes must leave stale parity that
    /// the check finds: the test can fail, and the log is what prevents it.
    func testWithoutIntentLogTheWriteHoleIsReal() throws {
        var holes = 0
        for seed in UInt64(1)...40 {
            var rng = SeededGenerator(seed: seed)
            let members = (0..<4).map { SimulatedMember(name: "sim\($0)") }
            _ = try ArrayCreator.initialize(level: .raid5, chunkSizeBytes: 4096, members: members)
            let (array, _) = try RAIDArray.assemble(members: members, configuration: ArrayConfiguration(intentLog: false), logger: quietLogger)
            try array.markInUse()
            let f = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
            var bytes = [UInt8](repeating: 0, count: 40_000)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
            try f.write(bytes, at: 0)
            try f.sync(dataOnly: true)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
            try f.write(bytes, at: 0)
            members[Int(rng.next() % 4)].powerCut(tear: true, rng: &rng)
            let (again, _) = try RAIDArray.assemble(members: members, configuration: ArrayConfiguration(readOnly: true, intentLog: false), logger: quietLogger)
            let summary = try again.checkAll(mode: .check) { _ in }
            if summary.problems > 0 { holes += 1 }
        }
        XCTAssertGreaterThan(holes, 10, "a power cut mid-write should leave parity or checksums stale without the log")
    }
}
