import Foundation
import XCTest
@testable import RAIDCore
import RAIDSimulation

/// The deterministic simulation: the whole engine over simulated members,
/// a seeded random workload (create, write, truncate, read, rename, unlink,
/// fsync, remount) checked against an in-memory model after every read,
/// while faults from `raidctl inject`'s vocabulary are injected into members
/// up to the level's redundancy. Single-threaded (no monitor, no rebuild
/// thread), so a failing seed replays exactly: the message names it.
final class SimulationTests: XCTestCase {
    struct Sim {
        let level: RAIDLevel
        var disks: [SimulatedMember]
        var array: RAIDArray
        var rng: SeededGenerator
        var model: [String: [UInt8]] = [:]
        /// Roles whose member is failed, or has a fault injected since the
        /// last remount: never more than the level's redundancy.
        var failed = Set<Int>()
        var faulty = Set<Int>()
        let seed: UInt64
        var step = 0

        var redundancy: Int { level.redundancy(memberCount: disks.count) }
        var where_: String { "RAID\(level.rawValue) x\(disks.count) seed \(seed) step \(step)" }

        mutating func below(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }

        mutating func randomPath() -> String? { model.keys.sorted().randomElement(using: &rng) }

        func checkRead(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let af = try array.open(path)
            defer { array.release(af) }
            let got = try af.readAll()
            let want = model[path]!
            if got != want {
                let i = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
                XCTFail("\(where_): \(path) differs from the model at byte \(i) (size \(got.count) vs \(want.count))", file: file, line: line)
            }
        }

        /// A fault on a member not yet compromised, if redundancy allows.
        mutating func injectFault() {
            let compromised = failed.union(faulty)
            guard compromised.count < redundancy else { return }
            let candidates = (0..<disks.count).filter { !compromised.contains($0) }
            let role = candidates[below(candidates.count)]
            let kinds: [FaultKind] = [.bitrot, .eioRead, .eioWrite, .vanish, .latency]
            let kind = kinds[below(kinds.count)]
            let fault = InjectedFault(kind: kind, rate: [1, 0.5, 0.1][below(3)],
                                      count: below(2) == 0 ? nil : 1 + below(20),
                                      latencyMilliseconds: kind == .latency ? 0 : nil)
            _ = try? array.injectFault("\(role)", fault)
            faulty.insert(role)
        }

        /// Notes members the array failed (a write error, a vanish noticed).
        mutating func noteFailures() {
            for r in 0..<disks.count where array.roleState(r) != .active { failed.insert(r) }
        }

        /// A failed member replaced by a new empty one: the rebuild runs on
        /// its own thread while this one waits (nothing else runs meanwhile,
        /// so the outcome stays deterministic).
        mutating func replaceFailed() throws {
            guard let role = failed.sorted().first, array.roleState(role) != .rebuilding else { return }
            let spare = SimulatedMember(name: "sim\(role)-\(step)")
            // It takes the lowest lost role: perhaps one the array failed
            // just now (a superblock write to a vanished member), which the
            // next noteFailures would have seen.
            guard let took = try array.addSpare(member: spare, note: "simulated spare") else {
                XCTFail("\(where_): no rebuild onto the spare for role \(role): "
                        + array.eventLog.history().suffix(8).map { $0.line }.joined(separator: "\n"))
                return
            }
            // (Not necessarily one this simulation saw fail: the array may
            // have failed it meanwhile, and the rebuild may be done already.)
            guard waitUntilHeld(took, by: spare, "rebuild") else { return }
            disks[took] = spare
            failed.remove(took)
            rebuilds += 1
        }
        var rebuilds = 0

        /// A healthy member replaced by a new one while it keeps serving
        /// (raidctl replace); the copy runs on its own thread while this
        /// one waits.
        mutating func replaceHealthy() throws {
            let candidates = (0..<disks.count).filter {
                !failed.contains($0) && !faulty.contains($0) && array.roleState($0) == .active
            }
            guard !candidates.isEmpty else { return }
            let role = candidates[below(candidates.count)]
            let fresh = SimulatedMember(name: "sim\(role)-r\(step)")
            try array.replace(role: role, with: fresh)
            guard waitUntilHeld(role, by: fresh, "replacement") else { return }
            disks[role] = fresh
            replacements += 1
        }
        var replacements = 0

        /// Waits for the rebuild or replacement to end with `member` active
        /// in `role` (the rebuilder's thread finishes it just after it stops
        /// running); false, with a failure, if it does not within a minute.
        func waitUntilHeld(_ role: Int, by member: SimulatedMember, _ what: String) -> Bool {
            let deadline = Date().addingTimeInterval(60)
            while !(array.roleState(role) == .active && array.member(role)?.name == member.name && !array.rebuildStatus.running) {
                if Date() > deadline {
                    XCTFail("\(where_): \(what) onto \(member.name) for role \(role) did not finish: \(array.roleState(role)), held by \(array.memberName(role))")
                    return false
                }
                usleep(1_000)
            }
            return true
        }

        /// Clean unmount and reassembly: injected faults are gone, failed
        /// members stay out (stale).
        mutating func remount() throws {
            array.shutdown()
            let (again, _) = try RAIDArray.assemble(members: disks, logger: quietLogger)
            try again.markInUse()
            again.seedFileIds(rng.next())
            array = again
            faulty = []
            noteFailures()
        }
    }

    func run(level: RAIDLevel, members n: Int, seed: UInt64, steps: Int = 150) throws {
        let disks = (0..<n).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: level, chunkSizeBytes: 4096, members: disks)
        let (array, _) = try RAIDArray.assemble(members: disks, logger: quietLogger)
        try array.markInUse()
        array.seedFileIds(seed)
        // Odd generator seeds: SeededGenerator sets the low bit, so 2k and 2k+1 would replay the same run.
        var s = Sim(level: level, disks: disks, array: array, rng: SeededGenerator(seed: seed * 2 + 1), seed: seed)
        try s.array.mkdir("/d", mode: 0o755, caller: root)
        for step in 0..<steps {
            s.step = step
            let r = s.below(100)
            switch r {
            case 0..<8:
                let path = (s.below(2) == 0 ? "/d/" : "/") + "f\(s.below(12))"
                if s.model[path] == nil {
                    let af = try s.array.create(path, mode: 0o644, exclusive: true, caller: root)
                    s.array.release(af)
                    s.model[path] = []
                }
            case 8..<45:
                guard let path = s.randomPath() else { continue }
                let af = try s.array.open(path)
                let offset = s.below(60_000), data = s.bytes(1 + s.below([100, 5_000, 30_000][s.below(3)]))
                try af.write(data, at: UInt64(offset))
                if s.below(4) == 0 { try af.sync(dataOnly: false) }
                s.array.release(af)
                var m = s.model[path]!
                if m.count < offset + data.count { m += [UInt8](repeating: 0, count: offset + data.count - m.count) }
                m.replaceSubrange(offset..<(offset + data.count), with: data)
                s.model[path] = m
            case 45..<52:
                guard let path = s.randomPath() else { continue }
                let size = s.below(70_000)
                let af = try s.array.open(path)
                try af.truncate(to: UInt64(size))
                s.array.release(af)
                var m = s.model[path]!
                if size < m.count { m.removeLast(m.count - size) } else { m += [UInt8](repeating: 0, count: size - m.count) }
                s.model[path] = m
            case 52..<75:
                guard let path = s.randomPath() else { continue }
                try s.checkRead(path)
            case 75..<79:
                guard let path = s.randomPath() else { continue }
                let to = (s.below(2) == 0 ? "/d/" : "/") + "r\(s.below(12))"
                guard s.model[to] == nil else { continue }
                try s.array.rename(path, to, flags: 0)
                s.model[to] = s.model.removeValue(forKey: path)
            case 79..<82:
                guard let path = s.randomPath() else { continue }
                try s.array.unlink(path)
                s.model[path] = nil
            case 82..<92:
                s.injectFault()
            case 92..<94:
                try s.array.clearFaults(nil)
                s.faulty = []
            case 94..<96:
                if s.failed.isEmpty { try s.replaceHealthy() } else { try s.replaceFailed() }
            default:
                try s.remount()
                for path in s.model.keys.sorted() { try s.checkRead(path) }
            }
            s.noteFailures()
            XCTAssertNotEqual(s.array.state, .failed, "\(s.where_): failed with \(s.failed.union(s.faulty).count) members compromised")
            if s.array.state == .failed { return }
        }
        // The end: every file reads right, and with the faults cleared the
        // array's checksums and parity agree everywhere.
        try s.array.clearFaults(nil)
        for path in s.model.keys.sorted() { try s.checkRead(path) }
        let summary = try s.array.checkAll(mode: .check) { XCTFail("\(s.where_): \($0)") }
        XCTAssertEqual(summary.unrecoverable, 0, s.where_)
        XCTAssertEqual(summary.problems, 0, s.where_)
        s.array.shutdown()
        rebuilds += s.rebuilds
        replacements += s.replacements
    }

    /// Rebuilds and replacements this test's runs went through: a run that
    /// never reached one would not test them.
    private var rebuilds = 0, replacements = 0

    private func runSeeds(_ level: RAIDLevel, members: Int) throws {
        for seed in UInt64(1)...12 { try run(level: level, members: members, seed: seed) }
        XCTAssertGreaterThan(rebuilds, 0, "RAID \(level.rawValue): no seed rebuilt a failed member")
        XCTAssertGreaterThan(replacements, 0, "RAID \(level.rawValue): no seed replaced a member")
    }

    func testSimulationRAID1() throws { try runSeeds(.raid1, members: 3) }
    func testSimulationRAID5() throws { try runSeeds(.raid5, members: 4) }
    func testSimulationRAID6() throws { try runSeeds(.raid6, members: 6) }
}
