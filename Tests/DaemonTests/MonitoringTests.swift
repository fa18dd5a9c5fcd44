import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest
import RAIDCore
import RAIDControl

/// What runs with no one at the keyboard: counters that persist, programs
/// told of every event, spares that can really take over.
final class MonitoringTests: XCTestCase {
    /// READ/WRITE/CKSUM survive a remount, as ZFS's do, until raidctl clear.
    func testCountersPersistAcrossRemountsUntilCleared() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        let data = randomBytes(400_000, seed: 5)
        try writeFile(a.path("f"), data)
        XCTAssertEqual(try a.ctl(["inject", "--count", "2", a.mountpoint, "1", "eio-read"]).status, 0)
        XCTAssertEqual(try readFile(a.path("f")), data)
        let errors = try a.status().members[1].readErrors
        XCTAssertGreaterThan(errors, 0)
        a.unmount()
        try a.mount()
        XCTAssertEqual(try a.status().members[1].readErrors, errors, "the count survives a remount")
        let r = try a.ctl(["clear", a.mountpoint, "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try a.status().members[1].readErrors, 0)
        a.unmount()
        try a.mount()
        XCTAssertEqual(try a.status().members[1].readErrors, 0, "cleared stays cleared")
        XCTAssertEqual(try a.ctl(["clear", a.mountpoint, "9"]).status, 1, "no such role")
    }

    /// Every member counts the system calls the daemon makes on it, and
    /// `raidctl iostat` shows them: an fsync'ed write shows as bytes
    /// written on every member (data and parity) and a flush on each, a
    /// read after a remount as bytes read.
    func testIOStatCountsWhatTheMembersAreAsked() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        func io(_ st: ArrayStatus) -> [MemberIOStatus] { st.members.map { $0.io ?? MemberIOStatus() } }
        let before = io(try a.status())
        XCTAssertEqual(before.count, 3)
        XCTAssertTrue(before.allSatisfy { $0.opens > 0 && $0.latencyHistogram.count > 0 }, "assembly opened every member: \(before)")
        let data = randomBytes(1 << 20, seed: 31)
        let fd = open(a.path("f"), O_CREAT | O_WRONLY, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }, data.count)
        XCTAssertEqual(fsync(fd), 0)
        close(fd)
        let written = zip(io(try a.status()), before).map { $0.since($1) }
        for (role, d) in written.enumerated() {
            XCTAssertGreaterThanOrEqual(d.flushes, 1, "role \(role): the fsync flushed its member file")
            XCTAssertGreaterThanOrEqual(d.writeBytes, UInt64(data.count / 2), "role \(role): its half of the data or the parity")
            XCTAssertGreaterThan(d.writes, 0)
        }
        a.unmount()
        try a.mount()
        XCTAssertEqual(try readFile(a.path("f")), data)
        let read = io(try a.status())
        XCTAssertGreaterThanOrEqual(read.reduce(0) { $0 + $1.readBytes }, UInt64(data.count), "the data chunks read: \(read)")
        XCTAssertGreaterThan(read.reduce(0) { $0 + $1.latencyMicroseconds }, 0)

        var r = try a.ctl(["iostat", a.mountpoint])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("raid5 array (3 members)"), r.stdout)
        for m in a.members { XCTAssertTrue(r.stdout.contains(m), "a line for \(m): \(r.stdout)") }
        r = try a.ctl(["iostat", a.mountpoint, "0.2", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: "per second over the last").count - 1, 2, r.stdout)
        r = try a.ctl(["iostat", a.mountpoint, "0"])
        XCTAssertEqual(r.status, 64)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    /// A spare inside the array's own mount, or inside a member, would die
    /// with what it protects: refused, one line, nothing written.
    func testSpareInsideTheMountOrAMemberIsRefused() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        try FileManager.default.createDirectory(atPath: a.path("sub"), withIntermediateDirectories: true)
        var r = try a.ctl(["add", a.mountpoint, a.path("sub")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("inside the array's own mount"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: a.path("sub")), [])
        let nested = a.members[0] + "/nested"
        try FileManager.default.createDirectory(atPath: nested, withIntermediateDirectories: true)
        r = try a.ctl(["add", a.mountpoint, nested])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("inside member \(a.members[0])"), r.stderr)
        r = try a.ctl(["replace", a.mountpoint, "1", a.path("sub")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("inside the array's own mount"), r.stderr)
        XCTAssertEqual(try a.status().spares, [])
    }

    /// -o event_program and raidctl monitor --exec each get every event:
    /// JSON on stdin, kind and member in the environment; each event once.
    func testEventProgramsReceiveEveryEvent() throws {
        let a = try ScratchArray(level: 6, members: 5, chunk: "16K")
        let out = a.root + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let program = { (name: String) in "cat >> \(out)/\(name).jsonl; echo \"$RAIDFS_EVENT $RAIDFS_MEMBER\" >> \(out)/\(name).env" }
        try a.mount(options: ["event_program=" + program("daemon")])
        try writeFile(a.path("f"), randomBytes(300_000, seed: 8))
        let monitor = Process()
        monitor.executableURL = URL(fileURLWithPath: binDir + "/raidctl")
        monitor.arguments = ["monitor", a.mountpoint, "--exec", program("monitor")]
        try monitor.run()
        defer { if monitor.isRunning { monitor.terminate(); monitor.waitUntilExit() } }
        usleep(300_000)   // the monitor connects
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "1"]).status, 0)
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "3"]).status, 0)
        let spare = a.root + "/spare"
        try FileManager.default.createDirectory(atPath: spare, withIntermediateDirectories: true)
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spare]).status, 0)
        let deadline = Date().addingTimeInterval(30)
        var st = try a.status()
        while st.members[1].path != spare || st.members[1].state != "active", Date() < deadline { usleep(100_000); st = try a.status() }
        usleep(500_000)   // the programs run after the event
        for name in ["daemon", "monitor"] {
            let env = (try? String(contentsOfFile: "\(out)/\(name).env", encoding: .utf8)) ?? ""
            let json = (try? String(contentsOfFile: "\(out)/\(name).jsonl", encoding: .utf8)) ?? ""
            for line in ["member-failed 1", "member-failed 3", "spare-added ", "spare-activated 1", "rebuild-started 1", "rebuild-finished 1"] {
                XCTAssertTrue(env.split(separator: "\n").contains(Substring(line)), "\(name): no '\(line)' in\n\(env)")
            }
            XCTAssertEqual(env.split(separator: "\n").filter { $0.hasPrefix("rebuild-started") }.count, 1,
                           "\(name): one rebuild, one rebuild-started:\n\(env)")
            let events = json.split(separator: "\n").compactMap { try? JSONDecoder().decode(ArrayEvent.self, from: Data($0.utf8)) }
            XCTAssertEqual(events.count, env.split(separator: "\n").count, "\(name): one JSON line per run")
            XCTAssertTrue(events.contains { $0.kind == "member-failed" && $0.member == 3 }, json)
        }
    }
}
