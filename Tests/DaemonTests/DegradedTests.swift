import Foundation
import XCTest
import RAIDCore
import RAIDControl

/// Faults that come together (issue sequences 1–3): a member whose read and
/// checksum errors pass the budget is *degraded*, not failed. It keeps
/// serving its good sectors, so the next fault finds the redundancy whole;
/// a spare replaces it by hot replace; transient errors are retried.
final class DegradedTests: XCTestCase {
    /// The kernel's page cache forgets the mount's pages: the next reads
    /// reach the daemon.
    private func dropCaches() {
        sync()
        let fd = open("/proc/sys/vm/drop_caches", O_WRONLY)
        if fd >= 0 { _ = write(fd, "3", 1); close(fd) }
    }

    /// Flips `count` bytes at seeded offsets of `file`'s member file on
    /// each of `roles` (the array unmounted).
    private func rot(_ a: ScratchArray, _ file: String, roles: [Int], count: Int, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        for role in roles {
            let path = a.members[role] + "/data/" + file
            let fd = open(path, O_RDWR)
            XCTAssertGreaterThanOrEqual(fd, 0, path)
            defer { close(fd) }
            var st = stat()
            XCTAssertEqual(fstat(fd, &st), 0)
            guard st.st_size > 0 else { continue }
            for _ in 0..<count {
                let off = off_t(rng.next() % UInt64(st.st_size))
                var b: UInt8 = 0
                XCTAssertEqual(pread(fd, &b, 1, off), 1)
                b ^= 0xA5
                XCTAssertEqual(pwrite(fd, &b, 1, off), 1)
            }
        }
    }

    /// Files f0… of `size` bytes and `step` more each, written through the
    /// mount; their contents by name.
    private func writeFiles(_ a: ScratchArray, count: Int, size: Int, step: Int, seed: UInt64) throws -> [String: Data] {
        var expected: [String: Data] = [:]
        for i in 0..<count {
            expected["f\(i)"] = randomBytes(size + i * step, seed: seed + UInt64(i))
            try writeFile(a.path("f\(i)"), expected["f\(i)"]!)
        }
        return expected
    }

    private func readsBack(_ a: ScratchArray, _ expected: [String: Data], _ what: String,
                           file: StaticString = #filePath, line: UInt = #line) {
        dropCaches()
        var failed: [String] = []
        for (p, d) in expected.sorted(by: { $0.key < $1.key }) {
            do {
                if try readFile(a.path(p)) != d { failed.append("\(p): wrong bytes") }
            } catch {
                failed.append("\(p): \(error)")
            }
        }
        XCTAssertEqual(failed, [], "\(what): \(failed.count) of \(expected.count) files not read back", file: file, line: line)
    }

    private func waitFor(_ a: ScratchArray, seconds: Double = 120, _ done: (ArrayStatus) -> Bool) throws -> ArrayStatus {
        let deadline = Date().addingTimeInterval(seconds)
        var st = try a.status()
        while !done(st) && Date() < deadline {
            usleep(100_000)
            st = try a.status()
        }
        return st
    }

    /// The states `status` shows: `degraded` for `roles`, active for the rest.
    private func states(_ n: Int, degraded roles: Set<Int>) -> [String] {
        (0..<n).map { roles.contains($0) ? "degraded" : "active" }
    }

    /// Sequence 1: rot in as many members as the level tolerates (RAID 6:
    /// two of six; RAID 5: one of five), read and scrubbed; then the same
    /// rot on as many others. Every byte reads back each time, and the
    /// rotted members end degraded, never faulty.
    private func rotThenMoreRot(level: Int, members n: Int, first: [Int], then: [Int]) throws {
        let a = try ScratchArray(level: level, members: n, chunk: "64K")
        let data = randomBytes(24 << 20, seed: 281)
        try a.mount()
        try writeFile(a.path("big"), data)
        a.unmount()
        try rot(a, "big", roles: first, count: 600, seed: 1)
        try a.mount()
        readsBack(a, ["big": data], "rot on members \(first)")
        let repair = try a.ctl(["scrub", "--repair", "--wait", a.mountpoint])
        XCTAssertEqual(repair.status, 1, "problems found and repaired: " + repair.stdout + repair.stderr)
        var st = try a.status()
        XCTAssertEqual(st.scrub.unrecoverable, 0)
        XCTAssertEqual(st.scrub.problems, st.scrub.repaired, "every problem repaired or counted lost")
        XCTAssertEqual(st.members.map { $0.state }, states(n, degraded: Set(first)))
        XCTAssertEqual(st.state, "degraded")
        XCTAssertTrue(st.members[first[0]].reason?.contains("max_read_errors") == true, "\(st.members[first[0]])")
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("member-degraded member \(first[0])") && events.contains("no spare is attached"), events)
        XCTAssertFalse(events.contains("member-failed"), events)
        a.unmount()

        try rot(a, "big", roles: then, count: 600, seed: 2)
        try a.mount()
        readsBack(a, ["big": data], "then rot on members \(then)")
        st = try a.status()
        XCTAssertEqual(st.members.map { $0.state }, states(n, degraded: Set(first + then)),
                       "the degraded state survives the remount, and the new rot degrades the others")
        let text = try a.ctl(["status", a.mountpoint])
        XCTAssertEqual(text.status, 1, "degraded: exit 1")
        XCTAssertTrue(text.stdout.contains("degraded") && text.stdout.contains("over the budget of 20"), text.stdout)

        // `raidctl clear` makes a member healthy again.
        XCTAssertEqual(try a.ctl(["clear", a.mountpoint]).status, 0)
        st = try a.status()
        XCTAssertEqual(Set(st.members.map { $0.state }), ["active"])
        XCTAssertEqual(st.state, "clean")
        XCTAssertNil(st.members[first[0]].reason)
    }

    func testRotInTwoMembersThenTwoMoreReadsEveryByteRAID6() throws {
        try rotThenMoreRot(level: 6, members: 6, first: [0, 3], then: [1, 4])
    }

    func testRotInOneMemberThenAnotherReadsEveryByteRAID5() throws {
        try rotThenMoreRot(level: 5, members: 5, first: [0], then: [3])
    }

    /// Sequence 2: rot on as many members as the level tolerates (degrading
    /// them), then a spare replaces the first by hot replace while one more
    /// member fails half its reads. Every file reads back, the spare's
    /// chunks verify, and the other rotted member stays in, degraded.
    private func hotReplaceWhileAnotherIsFlaky(level: Int, members n: Int, rotted: [Int], flaky: Int) throws {
        let a = try ScratchArray(level: level, members: n, chunk: "16K")
        try a.mount()
        let expected = try writeFiles(a, count: 43, size: 150_000, step: 4_099, seed: 700)
        a.unmount()
        for (i, p) in expected.keys.sorted().enumerated() { try rot(a, p, roles: rotted, count: 50, seed: UInt64(i + 10)) }
        try a.mount()
        let repair = try a.ctl(["scrub", "--repair", "--wait", a.mountpoint])
        XCTAssertEqual(repair.status, 1, repair.stdout + repair.stderr)
        var st = try a.status()
        XCTAssertEqual(st.scrub.unrecoverable, 0)
        XCTAssertEqual(st.scrub.problems, st.scrub.repaired, "every problem repaired or counted lost")
        for r in rotted { XCTAssertEqual(st.members[r].state, "degraded") }

        XCTAssertEqual(try a.ctl(["inject", "--rate", "0.5", a.mountpoint, "\(flaky)", "eio-read"]).status, 0)
        let spare = a.root + "/spare"
        try FileManager.default.createDirectory(atPath: spare, withIntermediateDirectories: true)
        let add = try a.ctl(["add", a.mountpoint, spare])
        XCTAssertEqual(add.status, 0, add.stderr)
        let first = rotted[0]
        XCTAssertTrue(add.stdout.contains("replacing degraded member \(first)"), add.stdout)
        readsBack(a, expected, "during the hot replace, member \(flaky) flaky")
        st = try waitFor(a) { $0.members[first].path == spare && !$0.rebuild.running }
        XCTAssertEqual(st.members[first].path, spare, "the spare holds role \(first) after the hot replace")
        XCTAssertEqual(st.members[first].state, "active")
        for r in rotted.dropFirst() { XCTAssertEqual(st.members[r].state, "degraded", "no second spare: member \(r) stays in") }
        XCTAssertEqual(st.members[flaky].state, "degraded", "member \(flaky)'s failed reads passed the budget too")
        readsBack(a, expected, "after the hot replace, member \(flaky) flaky")
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("member-replaced member \(first)"), events)
        XCTAssertFalse(events.contains("member-failed"), events)

        // What the spare holds verifies: a check finds nothing once the
        // flaky member is healthy again.
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "\(flaky)", "clear"]).status, 0)
        let check = try a.ctl(["scrub", "--check", "--wait", a.mountpoint])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
    }

    func testHotReplaceOfADegradedMemberWhileAThirdIsFlakyRAID6() throws {
        try hotReplaceWhileAnotherIsFlaky(level: 6, members: 6, rotted: [1, 4], flaky: 5)
    }

    func testHotReplaceOfADegradedMemberWhileAnotherIsFlakyRAID5() throws {
        try hotReplaceWhileAnotherIsFlaky(level: 5, members: 5, rotted: [1], flaky: 4)
    }

    /// Sequence 3: a member that rots half its reads is degraded at its
    /// 21st error, and keeps serving: when as many others as the level
    /// tolerates then vanish, every file still reads back, from its good
    /// reads.
    private func rotHalfTheReadsThenOthersVanish(level: Int, members n: Int, vanish: [Int]) throws {
        let a = try ScratchArray(level: level, members: n, chunk: "16K")
        try a.mount()
        let expected = try writeFiles(a, count: 28, size: 100_000, step: 7_919, seed: 300)
        XCTAssertEqual(try a.ctl(["inject", "--rate", "0.5", a.mountpoint, "2", "bitrot"]).status, 0)
        readsBack(a, expected, "member 2 rotting half its reads")
        var st = try a.status()
        XCTAssertEqual(st.members[2].state, "degraded")
        XCTAssertGreaterThan(st.members[2].checksumErrors, 20)
        for r in vanish { XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "\(r)", "vanish"]).status, 0) }
        st = try waitFor(a, seconds: 30) { s in vanish.allSatisfy { s.members[$0].state == "faulty" } }
        for r in vanish {
            XCTAssertEqual(st.members[r].state, "faulty")
            XCTAssertNotNil(st.members[r].reason, "a faulty member says why")
        }
        readsBack(a, expected, "members \(vanish) gone, member 2 rotting half its reads")
        st = try a.status()
        XCTAssertEqual(st.members[2].state, "degraded", "degraded, not faulty")
        XCTAssertEqual(st.state, "degraded")
    }

    func testMemberRottingHalfItsReadsKeepsServingAfterAnotherVanishesRAID5() throws {
        try rotHalfTheReadsThenOthersVanish(level: 5, members: 5, vanish: [1])
    }

    func testMemberRottingHalfItsReadsKeepsServingAfterTwoVanishRAID6() throws {
        try rotHalfTheReadsThenOthersVanish(level: 6, members: 6, vanish: [1, 3])
    }

    /// A read that no member can serve right now fails with EIO, after
    /// patient retries; a repair scrub of that file then starts by itself
    /// within seconds (not at the next weekly one), and once the errors
    /// have passed the file reads back.
    func testAReadBeyondRedundancyBringsAScrubOfItsFileSoon() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        let data = randomBytes(200_000, seed: 77)
        try writeFile(a.path("f"), data)
        dropCaches()
        for m in ["0", "1"] { XCTAssertEqual(try a.ctl(["inject", a.mountpoint, m, "eio-read"]).status, 0) }
        XCTAssertThrowsError(try readFile(a.path("f")), "two members failing every read: beyond RAID 5")
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "clear"]).status, 0)
        let finished = "scrub (repair) of the 1 files a read found sectors of beyond redundancy in finished"
        let deadline = Date().addingTimeInterval(30)
        var events = ""
        repeat {
            usleep(200_000)
            events = try a.ctl(["events", a.mountpoint]).stdout
        } while !events.contains(finished) && Date() < deadline
        XCTAssertTrue(events.contains(finished), events)
        XCTAssertTrue(events.contains("0 beyond redundancy"), "the errors passed: nothing is lost: \(events)")
        XCTAssertFalse(events.contains("member-failed"), events)
        readsBack(a, ["f": data], "once the errors passed")
    }
}
