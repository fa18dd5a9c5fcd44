import Foundation
import XCTest
import RAIDCore
import RAIDControl

/// `raidctl scrub` on a mounted array: finds damage in data and parity that
/// no read touched, reports it in check mode without writing, repairs it
/// byte-exact in repair mode.
final class ScrubTests: XCTestCase {
    func testScrubFindsAndRepairsDataAndParityDamage() throws {
        let chunk = 16 * 1024
        let a = try ScratchArray(level: 6, members: 5, chunk: "16K")
        try a.mount()
        XCTAssertEqual(mkdir(a.path("dir"), 0o755), 0)
        let data = randomBytes(1 << 20, seed: 5)
        try writeFile(a.path("dir/f"), data)
        try writeFile(a.path("small"), randomBytes(5_000, seed: 6))
        let g = Geometry(level: .raid6, memberCount: 5, chunkSizeBytes: chunk)
        let layout = MemberFileLayout(chunkSizeBytes: chunk)
        // One flipped byte each in a data chunk (stripe 0), a P chunk
        // (stripe 1) and a Q chunk (stripe 2).
        var originals: [Int: Data] = [:]
        let damage = [(stripe: UInt64(0), index: 0), (stripe: 1, index: g.dataChunkCount), (stripe: 2, index: g.dataChunkCount + 1)]
        let shift = try rowShift(a, "dir/f")
        for d in damage {
            let role = g.member(stripe: d.stripe + shift, chunkIndex: d.index)
            let path = a.members[role] + "/data/dir/f"
            if originals[role] == nil { originals[role] = try readFile(path) }
            let fd = open(path, O_RDWR)
            XCTAssertGreaterThanOrEqual(fd, 0)
            var b: UInt8 = 0
            let off = off_t(layout.chunkOffset(stripe: d.stripe)) + 1000
            XCTAssertEqual(pread(fd, &b, 1, off), 1)
            b ^= 0x5A
            XCTAssertEqual(pwrite(fd, &b, 1, off), 1)
            close(fd)
        }
        let damaged = try originals.keys.map { ($0, try readFile(a.members[$0] + "/data/dir/f")) }

        // Check mode: counts, reports, writes nothing.
        let check = try a.ctl(["scrub", "--check", "--wait", a.mountpoint])
        XCTAssertEqual(check.status, 1, check.stdout + check.stderr)
        var s = try a.status().scrub
        XCTAssertEqual(s.mode, "check")
        XCTAssertEqual(s.problems, 3)
        XCTAssertEqual(s.repaired, 0)
        XCTAssertEqual(s.unrecoverable, 0)
        XCTAssertEqual(s.progress, 1, accuracy: 0.0001)
        for (role, bytes) in damaged {
            XCTAssertEqual(try readFile(a.members[role] + "/data/dir/f"), bytes, "check mode wrote to member \(role)")
        }

        // Repair mode: every damaged member file is byte-identical again.
        let repair = try a.ctl(["scrub", "--wait", a.mountpoint])
        XCTAssertEqual(repair.status, 1, repair.stdout + repair.stderr)
        s = try a.status().scrub
        XCTAssertEqual(s.mode, "repair")
        XCTAssertEqual(s.problems, 3)
        XCTAssertEqual(s.repaired, 3)
        for (role, bytes) in originals {
            XCTAssertEqual(try readFile(a.members[role] + "/data/dir/f"), bytes, "member \(role) not repaired")
        }
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("scrub-repaired") && events.contains("/dir/f"), events)

        // Clean now; nothing to stop.
        XCTAssertEqual(try a.ctl(["scrub", "--wait", a.mountpoint]).status, 0)
        let stop = try a.ctl(["scrub", "--stop", a.mountpoint])
        XCTAssertNotEqual(stop.status, 0)
        XCTAssertTrue(stop.stderr.contains("no scrub is running"), stop.stderr)
        let usage = try a.ctl(["scrub", "--check", "--repair", a.mountpoint])
        XCTAssertEqual(usage.status, 64, usage.stderr)
        XCTAssertEqual(try readFile(a.path("dir/f")), data)
        a.unmount()
        try a.assertChecksClean()
    }

    func testScrubCanBeStoppedAndUnmountStopsIt() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount(options: ["scrub_rate=2"])   // 2 MB/s: a 16 MiB scrub takes seconds
        try writeFile(a.path("f"), randomBytes(16 << 20, seed: 8))
        XCTAssertEqual(try a.ctl(["scrub", a.mountpoint]).status, 0)
        XCTAssertTrue(try a.status().scrub.running)
        let again = try a.ctl(["scrub", a.mountpoint])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("already running"), again.stderr)
        XCTAssertEqual(try a.ctl(["scrub", "--stop", a.mountpoint]).status, 0)
        let s = try a.status().scrub
        XCTAssertFalse(s.running)
        XCTAssertEqual(s.stopped, true)
        XCTAssertLessThan(s.progress, 1)
        // A scrub running at unmount is stopped, and the daemon exits by
        // itself (not killed by the harness) after recording it.
        XCTAssertEqual(try a.ctl(["scrub", a.mountpoint]).status, 0)
        let daemon = a.daemon!
        a.unmount()
        XCTAssertFalse(isMounted(a.mountpoint))
        XCTAssertEqual(daemon.terminationReason, .exit)
        XCTAssertEqual(daemon.terminationStatus, 0)
        try a.mount(options: ["scrub_rate=2"])
        var events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertEqual(events.components(separatedBy: "scrub-stopped").count - 1, 2, events)
        // --stop ends a scrub for good; the one the unmount stopped resumes.
        let deadline = Date().addingTimeInterval(10)
        while !events.contains("scrub-resumed") && Date() < deadline { usleep(100_000); events = try a.ctl(["events", a.mountpoint]).stdout }
        XCTAssertTrue(events.contains("scrub-resumed"), events)
        XCTAssertEqual(events.components(separatedBy: "scrub-resumed").count - 1, 1, events)
    }
}

/// Scrubs that run with no one at the keyboard: on a schedule, resumed
/// after an unmount, with their history in the superblocks.
final class ScheduledScrubTests: XCTestCase {
    /// Flips one byte in the chunk `index` of `stripe` of `file` on the
    /// member that holds it; returns that member's role.
    @discardableResult
    func flip(_ a: ScratchArray, _ file: String, stripe: UInt64, index: Int, geometry g: Geometry, chunk: Int) throws -> Int {
        let role = g.member(stripe: stripe + (try rowShift(a, file)), chunkIndex: index)
        let fd = open(a.members[role] + "/data/" + file, O_RDWR)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var b: UInt8 = 0
        let off = off_t(MemberFileLayout(chunkSizeBytes: chunk).chunkOffset(stripe: stripe)) + 777
        XCTAssertEqual(pread(fd, &b, 1, off), 1)
        b ^= 0x81
        XCTAssertEqual(pwrite(fd, &b, 1, off), 1)
        return role
    }

    /// Polls status until `done` holds, failing after `seconds`.
    func waitForScrub(_ a: ScratchArray, seconds: Double = 60, _ done: (ProgressStatus) -> Bool) throws -> ProgressStatus {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let s = try a.status().scrub
            if done(s) { return s }
            if Date() > deadline { throw FSError.io("scrub never reached the state waited for: \(s)") }
            usleep(100_000)
        }
    }

    func testScheduledScrubRepairsDamageNoReadTouchedThenFindsNothing() throws {
        let chunk = 16 * 1024
        let a = try ScratchArray(level: 6, members: 5, chunk: "16K")
        try a.mount(options: ["scrub_interval=0"])
        let data = randomBytes(600_000, seed: 21)
        try writeFile(a.path("f"), data)
        a.unmount()
        let g = Geometry(level: .raid6, memberCount: 5, chunkSizeBytes: chunk)
        try flip(a, "f", stripe: 0, index: 0, geometry: g, chunk: chunk)                   // data
        try flip(a, "f", stripe: 1, index: g.dataChunkCount, geometry: g, chunk: chunk)    // P
        // Nothing is typed after this mount: the schedule starts the scrubs.
        try a.mount(options: ["scrub_interval=2s"])
        var s = try waitForScrub(a) { $0.lastResult != nil && !$0.running }
        XCTAssertEqual(s.lastResult?.problems, 2)
        XCTAssertEqual(s.lastResult?.repaired, 2)
        let first = s.lastFinishedAt!
        XCTAssertEqual(s.nextDueAt!, first + 2, accuracy: 0.01)
        s = try waitForScrub(a) { ($0.lastFinishedAt ?? 0) > first && !$0.running }
        XCTAssertEqual(s.lastResult?.problems, 0, "the second scrub finds nothing")
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("scrub-scheduled"), events)
        XCTAssertEqual(try readFile(a.path("f")), data)
        let text = try a.ctl(["status", a.mountpoint]).stdout
        XCTAssertTrue(text.contains("last scrub (repair): finished") && text.contains("next scrub due"), text)
        // The history survives a remount.
        a.unmount()
        try a.mount(options: ["scrub_interval=0"])
        XCTAssertNotNil(try a.status().scrub.lastFinishedAt)
        XCTAssertNil(try a.status().scrub.nextDueAt, "scrub_interval=0: never scheduled")
    }

    func testScrubCutShortByUnmountResumesAtTheNextMount() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount(options: ["scrub_interval=0", "scrub_rate=1"])
        for i in 0..<8 { try writeFile(a.path(String(format: "f%02d", i)), randomBytes(500_000, seed: UInt64(30 + i))) }
        XCTAssertEqual(try a.ctl(["scrub", a.mountpoint]).status, 0)
        let before = try waitForScrub(a) { $0.running && $0.progress > 0.25 }
        a.unmount()
        XCTAssertTrue(try runTool("raidctl", ["examine", "--json", a.members[0]]).stdout.contains("checkpoint"))
        try a.mount(options: ["scrub_interval=0"])
        let s = try waitForScrub(a) { $0.lastFinishedAt != nil && !$0.running }
        XCTAssertEqual(s.lastResult?.bytes, 8 * 500_000, "every byte scrubbed once over both mounts")
        XCTAssertNil(s.resumesAfter)
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("scrub-resumed") && events.contains("the next mount resumes it"), events)
        XCTAssertGreaterThan(before.progress, 0.25)
    }
}
