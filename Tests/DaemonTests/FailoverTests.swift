import Foundation
import XCTest
import RAIDCore

/// A hot spare takes over by itself, whatever failed the member and
/// whether the spare was attached before or after the failure.
final class FailoverTests: XCTestCase {
    /// Files written before the failure, checked after every step.
    private func populate(_ a: ScratchArray, count: Int = 6) throws -> [String: Data] {
        var expected: [String: Data] = [:]
        try FileManager.default.createDirectory(atPath: a.path("sub"), withIntermediateDirectories: true)
        for i in 0..<count {
            let p = i % 2 == 0 ? "f\(i)" : "sub/f\(i)"
            expected[p] = randomBytes(700_000 + i * 33_333, seed: UInt64(i + 900))
            try writeFile(a.path(p), expected[p]!)
        }
        return expected
    }

    private func makeSpare(_ a: ScratchArray, _ name: String) throws -> String {
        let dir = a.root + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// RAID 5 with a spare attached before anything fails; `fail` breaks
    /// member 1 while a writer writes; the spare must bring the array back
    /// to clean by itself, and a further failure must then be survived.
    private func failoverOnRAID5(_ fail: (ScratchArray) throws -> Void, writer withWriter: Bool = true,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        let expected = try populate(a)
        let spare = try makeSpare(a, "spare")
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spare]).status, 0, file: file, line: line)
        XCTAssertEqual(try a.status().state, "clean", file: file, line: line)
        let writer = BackgroundWriter(path: a.path("live"))
        if withWriter { writer.start() }
        try fail(a)
        // Clean again only once the spare holds role 1 (the health monitor
        // notices a deleted member within a couple of seconds).
        let deadline = Date().addingTimeInterval(60)
        var st = try a.status()
        while !(st.state == "clean" && st.members[1].path == spare) && Date() < deadline {
            usleep(100_000)
            st = try a.status()
        }
        writer.stop()
        XCTAssertEqual(st.state, "clean", file: file, line: line)
        XCTAssertEqual(st.members[1].path, spare, "the spare holds role 1", file: file, line: line)
        XCTAssertEqual(st.spares, [], file: file, line: line)
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "after failover: \(p)", file: file, line: line) }
        if withWriter {
            XCTAssertGreaterThan(writer.written, 0, file: file, line: line)
            XCTAssertTrue(try writer.verify(), "the live writer's file differs", file: file, line: line)
        }
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("spare-activated member 1") && events.contains("spare \(spare) takes role 1"),
                      "the event log names the spare and its role: \(events)", file: file, line: line)
        XCTAssertTrue(events.contains("rebuild-finished"), events, file: file, line: line)
        // Redundancy is whole again: one more failure is survived.
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "0"]).status, 0, file: file, line: line)
        XCTAssertEqual(try a.status().state, "degraded", file: file, line: line)
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "spare + member 2 only: \(p)", file: file, line: line) }
        if withWriter { XCTAssertTrue(try writer.verify(), "live file after the second failure", file: file, line: line) }
    }

    func testSpareTakesOverWhenTheAdministratorFailsAMember() throws {
        try failoverOnRAID5 { a in
            XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "1"]).status, 0)
        }
    }

    func testSpareTakesOverAfterAWriteError() throws {
        try failoverOnRAID5 { a in
            XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "1", "eio-write"]).status, 0)
        }
    }

    /// The health monitor finds the member gone while the mount is idle:
    /// no command is typed after the deletion.
    func testSpareTakesOverAMemberDeletedWhileIdle() throws {
        try failoverOnRAID5({ a in
            _ = try runTool("/bin/rm", ["-rf", a.members[1]])
        }, writer: false)
    }

    /// Read errors are repaired from redundancy and counted; once a member
    /// spends its budget (-o max_read_errors per hour) it is degraded, not
    /// failed, and the spare replaces it by hot replace while it serves.
    func testSpareTakesOverWhenTheReadErrorBudgetIsSpent() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount(options: ["max_read_errors=5"])
        let expected = try populate(a)
        let spare = try makeSpare(a, "spare")
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spare]).status, 0)
        func readAll() throws {
            for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
        }
        XCTAssertEqual(try a.ctl(["inject", "--count", "3", a.mountpoint, "1", "eio-read"]).status, 0)
        try readAll()
        var st = try a.status()
        XCTAssertTrue((1...3).contains(st.members[1].readErrors), "\(st.members[1].readErrors) read errors counted")
        XCTAssertEqual(st.members[1].state, "active", "within its budget a member stays")
        XCTAssertEqual(st.state, "clean")
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "1", "eio-read"]).status, 0)
        try readAll()
        let deadline = Date().addingTimeInterval(60)
        repeat { usleep(100_000); st = try a.status() } while !(st.state == "clean" && st.members[1].path == spare) && Date() < deadline
        XCTAssertEqual(st.members[1].path, spare, "the spare took role 1")
        XCTAssertEqual(st.state, "clean")
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("over the budget of 5 (max_read_errors)"), events)
        XCTAssertTrue(events.contains("member-degraded member 1") && events.contains("member-replaced member 1"), events)
        XCTAssertFalse(events.contains("member-failed"), "the degraded member served until the copy was done: \(events)")
        try readAll()
    }

    func testSpareAttachedAfterTheFailureTakesOver() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        let expected = try populate(a)
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "2"]).status, 0)
        XCTAssertEqual(try a.status().state, "degraded")
        let spare = try makeSpare(a, "late")
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spare]).status, 0)
        let st = try a.waitFor(state: "clean", seconds: 60)
        XCTAssertEqual(st.members[2].path, spare)
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
    }

    /// RAID 6 of six with files, two spares attached, a writer writing, and
    /// member 1 just failed.
    private func raid6WithTwoSparesAndAWriter(options: [String] = []) throws
        -> (ScratchArray, [String: Data], [String], BackgroundWriter) {
        let a = try ScratchArray(level: 6, members: 6, chunk: "16K")
        try a.mount(options: options)
        let expected = try populate(a, count: 8)
        let spares = [try makeSpare(a, "spare0"), try makeSpare(a, "spare1")]
        for s in spares { XCTAssertEqual(try a.ctl(["add", a.mountpoint, s]).status, 0) }
        let writer = BackgroundWriter(path: a.path("live"))
        writer.start()
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "1"]).status, 0)
        return (a, expected, spares, writer)
    }

    /// RAID 6, two spares attached first, two members failed one after the
    /// other while a writer runs: both roles are rebuilt, the array is clean.
    func testTwoFailuresAndTwoSparesOnRAID6EndClean() throws {
        let (a, expected, spares, writer) = try raid6WithTwoSparesAndAWriter()
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "4"]).status, 0)
        let st = try a.waitFor(state: "clean", seconds: 90)
        writer.stop()
        XCTAssertEqual(Set([st.members[1].path, st.members[4].path]), Set(spares))
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
        XCTAssertTrue(try writer.verify(), "the live writer's file differs")
        a.unmount()
        let check = try runTool("raidctl", ["check"] + st.members.map { $0.path })
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        // The two rebuilt members carry their roles: mount without two others.
        try a.mount(st.members.map { $0.path }.enumerated().filter { $0.offset != 0 && $0.offset != 2 }.map { $0.element })
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "rebuilt members carry \(p)") }
    }

    /// Two lost roles on RAID 6 are rebuilt together, in one pass over the
    /// survivors; the new members' chunks agree with parity and checksums
    /// and alone (with two survivors) carry every byte.
    func testTwoLostRolesAreRebuiltInOnePass() throws {
        let a = try ScratchArray(level: 6, members: 6, chunk: "16K")
        try a.mount(options: ["rebuild_rate=4"])
        let expected = try populate(a, count: 8)
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "1"]).status, 0)
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "4"]).status, 0)
        let spares = [try makeSpare(a, "spare0"), try makeSpare(a, "spare1")]
        // The first add starts a rebuild of one role; the second joins it.
        for s in spares { XCTAssertEqual(try a.ctl(["add", a.mountpoint, s]).status, 0) }
        let st = try a.waitFor(state: "clean", seconds: 60)
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("(with role 4, in one pass)") && events.contains("(with role 1, in one pass)"), events)
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
        a.unmount()
        let check = try runTool("raidctl", ["check"] + st.members.map { $0.path })
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        try a.mount([1, 3, 4, 5].map { st.members[$0].path })
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "from the rebuilt members: \(p)") }
    }

    /// A second member fails by a write error (a writer holds the file's
    /// lock) while the first one's rebuild runs: the second spare joins the
    /// rebuild, which has to stop and start again with both, without the
    /// writer and the rebuild waiting on each other.
    func testWriteErrorDuringARebuildJoinsIt() throws {
        // (rebuild_rate: still running when the write error comes)
        let (a, expected, spares, writer) = try raid6WithTwoSparesAndAWriter(options: ["rebuild_rate=8"])
        XCTAssertTrue(try a.status().rebuild.running, "raidctl fail returns with the spare's rebuild started")
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "4", "eio-write"]).status, 0)
        let st = try a.waitFor(state: "clean", seconds: 90)
        writer.stop()
        XCTAssertEqual(Set([st.members[1].path, st.members[4].path]), Set(spares))
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
        XCTAssertTrue(try writer.verify(), "the live writer's file differs")
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("in one pass"), events)
    }

    /// A spare whose directory vanished cannot take over: an event says so
    /// and the next spare is used.
    func testUnusableSpareIsReportedAndSkipped() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        let expected = try populate(a, count: 3)
        let gone = try makeSpare(a, "gone"), good = try makeSpare(a, "good")
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, gone]).status, 0)
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, good]).status, 0)
        _ = try runTool("/bin/rm", ["-rf", gone])
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "0"]).status, 0)
        let st = try a.waitFor(state: "clean", seconds: 60)
        XCTAssertEqual(st.members[0].path, good)
        XCTAssertEqual(st.spares, [])
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("spare-unusable") && events.contains(gone), events)
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
    }
}
