import Foundation
import XCTest
import RAIDCore
import RAIDControl

extension ScratchArray {
    @discardableResult
    func ctl(_ args: [String]) throws -> RunResult { try runTool("raidctl", args) }

    func status() throws -> ArrayStatus {
        let r = try ctl(["status", "--json", mountpoint])
        guard let s = try? JSONDecoder().decode(ArrayStatus.self, from: Data(r.stdout.utf8)) else {
            throw FSError.io("status unreadable: \(r.stdout) \(r.stderr)")
        }
        return s
    }

    /// Polls status until `state`, failing after `seconds`.
    func waitFor(state: String, seconds: Double = 120) throws -> ArrayStatus {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let s = try status()
            if s.state == state { return s }
            if Date() > deadline { throw FSError.io("array still \(s.state) after \(seconds) s: \(s)") }
            usleep(100_000)
        }
    }
}

/// A writer that keeps appending known blocks to one file until stopped.
final class BackgroundWriter {
    let path: String
    private let lock = NSLock()
    private var stopFlag = false
    private(set) var written = 0
    private var thread: Thread?
    static let block = 64 * 1024 + 123

    init(path: String) { self.path = path }

    static func blockData(_ i: Int) -> Data { randomBytes(block, seed: UInt64(1000 + i)) }

    func start() {
        let t = Thread { [self] in
            let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
            defer { close(fd) }
            var i = 0
            while !lock.withLock({ stopFlag }) {
                let d = BackgroundWriter.blockData(i)
                let n = d.withUnsafeBytes { pwrite(fd, $0.baseAddress, d.count, off_t(i * BackgroundWriter.block)) }
                if n != d.count { break }
                if i % 16 == 0 { fsync(fd) }
                i += 1
                lock.withLock { written = i }
            }
        }
        thread = t
        t.start()
    }

    func stop() {
        lock.withLock { stopFlag = true }
        while thread?.isExecuting == true { usleep(10_000) }
    }

    func verify() throws -> Bool {
        let d = try readFile(path)
        let n = lock.withLock { written }
        guard d.count == n * BackgroundWriter.block else { return false }
        for i in 0..<n where d.subdata(in: (i * BackgroundWriter.block)..<((i + 1) * BackgroundWriter.block)) != BackgroundWriter.blockData(i) {
            return false
        }
        return true
    }
}

/// raidctl against a live mount: status, fail, remove, add, rebuild, events.
final class AdminTests: XCTestCase {
    func testFailTwoAddTwoRebuildsToCleanWhileAWriterWrites() throws {
        let a = try ScratchArray(level: 6, members: 6)
        try a.mount()
        var expected: [String: Data] = [:]
        try FileManager.default.createDirectory(atPath: a.path("d/e"), withIntermediateDirectories: true)
        for i in 0..<8 {
            let p = i % 2 == 0 ? "f\(i)" : "d/e/f\(i)"
            expected[p] = randomBytes(1_500_000 + i * 77_777, seed: UInt64(i + 500))
            try writeFile(a.path(p), expected[p]!)
        }
        var st = try a.status()
        XCTAssertEqual(st.state, "clean")
        XCTAssertEqual(try a.ctl(["status", a.mountpoint]).status, 0)
        // Every field DESIGN.md promises, by name.
        let raw = try JSONSerialization.jsonObject(with: Data(try a.ctl(["status", "--json", a.mountpoint]).stdout.utf8)) as! [String: Any]
        for key in ["level", "state", "members", "rebuild", "scrub"] { XCTAssertNotNil(raw[key], key) }
        let m0 = (raw["members"] as! [[String: Any]])[0]
        for key in ["index", "path", "state", "readErrors", "writeErrors", "checksumErrors"] { XCTAssertNotNil(m0[key], key) }
        for section in ["rebuild", "scrub"] {
            let p = raw[section] as! [String: Any]
            for key in ["running", "progress", "bytesPerSecond", "etaSeconds"] { XCTAssertTrue(p.keys.contains(key), "\(section).\(key)") }
        }
        let scrub = raw["scrub"] as! [String: Any]
        XCTAssertNotNil(scrub["repaired"])
        XCTAssertNotNil(scrub["unrecoverable"])
        let writer = BackgroundWriter(path: a.path("live"))
        writer.start()
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "1"]).status, 0)
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, a.members[4]]).status, 0)
        st = try a.status()
        XCTAssertEqual(st.state, "degraded")
        XCTAssertEqual(st.members[1].state, "faulty")
        XCTAssertEqual(st.members[4].state, "faulty")
        XCTAssertEqual(try a.ctl(["status", a.mountpoint]).status, 1)
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "degraded read of \(p)") }
        let spares = [a.root + "/spare0", a.root + "/spare1"]
        for s in spares { try FileManager.default.createDirectory(atPath: s, withIntermediateDirectories: true) }
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spares[0]]).status, 0)
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spares[1]]).status, 0)
        st = try a.waitFor(state: "clean")
        writer.stop()
        XCTAssertEqual(Set(st.members.map { $0.path }), Set([a.members[0], a.members[2], a.members[3], a.members[5]] + spares))
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "after rebuild: \(p)") }
        XCTAssertGreaterThan(writer.written, 0)
        XCTAssertTrue(try writer.verify(), "the live writer's file differs")
        let events = try a.ctl(["events", a.mountpoint]).stdout
        for kind in ["member-failed", "spare-added", "rebuild-started", "rebuild-finished"] {
            XCTAssertTrue(events.contains(kind), "events lack \(kind): \(events)")
        }
        a.unmount()
        // The rebuilt members alone (the failed ones left out) hold everything.
        let newSet = st.members.map { $0.path }
        let check = try runTool("raidctl", ["check"] + newSet)
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        try a.mount(newSet.enumerated().filter { $0.offset != 0 && $0.offset != 3 }.map { $0.element })
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "rebuilt members only: \(p)") }
    }

    func testRefusalsChangeNothing() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "0"]).status, 0)
        var r = try a.ctl(["fail", a.mountpoint, "2"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("data would be lost"), r.stderr)
        r = try a.ctl(["remove", a.mountpoint, "2"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("fail it first"), r.stderr)
        r = try a.ctl(["fail", a.mountpoint, "7"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no such role"), r.stderr)
        let busy = a.root + "/busy"
        try FileManager.default.createDirectory(atPath: busy, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: busy + "/x", contents: Data("x".utf8))
        r = try a.ctl(["add", a.mountpoint, busy])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not empty"), r.stderr)
        let st = try a.status()
        XCTAssertEqual(st.members.map { $0.state }, ["faulty", "active", "active"])
        XCTAssertEqual(st.spares, [])
        XCTAssertEqual(try a.ctl(["remove", a.mountpoint, "0"]).status, 0)
        XCTAssertEqual(try a.status().members[0].state, "missing")
        r = try runTool("raidctl", ["status", a.root])
        XCTAssertEqual(r.status, 4, "no daemon: not 1 (degraded)")
        XCTAssertTrue(r.stderr.contains("no raidfs control socket"), r.stderr)
        // Another user is refused (the socket's directory is owner-only).
        if geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") {
            let dir = (ControlProtocol.socketPath(mountpoint: a.mountpoint) as NSString).deletingLastPathComponent
            r = try runTool("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/env",
                                                 "RAIDFS_CONTROL_DIR=" + dir, binDir + "/raidctl", "status", a.mountpoint])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("Permission denied") || r.stderr.contains("permission denied"), r.stderr)
        }
    }

    func testRemountDuringRebuildResumesWhereItStopped() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        for i in 0..<24 { try writeFile(a.path(String(format: "f%02d", i)), randomBytes(500_000, seed: UInt64(i))) }
        // A directory that sorts first: its files must not be skipped when
        // the rebuild resumes after a checkpoint on a later top-level file.
        try FileManager.default.createDirectory(atPath: a.path("a/b"), withIntermediateDirectories: true)
        for i in 0..<6 { try writeFile(a.path("a/b/g\(i)"), randomBytes(300_000, seed: UInt64(100 + i))) }
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "2"]).status, 0)
        a.unmount()
        try a.mount(options: ["rebuild_rate=1"])
        let spare = a.root + "/spare"
        try FileManager.default.createDirectory(atPath: spare, withIntermediateDirectories: true)
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spare]).status, 0)
        var st = try a.status()
        let deadline = Date().addingTimeInterval(30)
        while st.rebuild.progress < 0.3 && Date() < deadline { usleep(200_000); st = try a.status() }
        XCTAssertEqual(st.state, "rebuilding")
        XCTAssertTrue(st.rebuild.running)
        let before = st.rebuild.progress
        XCTAssertGreaterThan(before, 0.2)
        a.unmount()
        let sb = try runTool("raidctl", ["examine", "--json", spare]).stdout
        XCTAssertTrue(sb.contains("\"rebuilds\""), sb)
        try a.mount(a.members + [spare])
        st = try a.status()
        XCTAssertTrue(st.state == "rebuilding" || st.state == "clean", st.state)
        if st.state == "rebuilding" {
            XCTAssertGreaterThan(st.rebuild.progress, before - 0.15, "resumed rebuild went back (was \(before), now \(st.rebuild.progress))")
        }
        _ = try a.waitFor(state: "clean")
        for i in 0..<24 {
            XCTAssertEqual(try readFile(a.path(String(format: "f%02d", i))), randomBytes(500_000, seed: UInt64(i)))
        }
        a.unmount()
        // Without member 0 the rebuilt member's chunks carry the data.
        try a.mount([a.members[1], spare])
        for i in 0..<6 { XCTAssertEqual(try readFile(a.path("a/b/g\(i)")), randomBytes(300_000, seed: UInt64(100 + i)), "a/b/g\(i)") }
        XCTAssertTrue(try a.ctl(["events", a.mountpoint]).stdout.contains("resuming after"))
    }

    func testStaleMemberAddedBackIsResyncedNotTrusted() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        try writeFile(a.path("old"), randomBytes(400_000, seed: 1))
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "2"]).status, 0)
        try writeFile(a.path("old"), randomBytes(400_000, seed: 2))
        try writeFile(a.path("new"), randomBytes(300_000, seed: 3))
        a.unmount()
        try a.mount()
        XCTAssertTrue(a.log().contains("stale"), a.log())
        XCTAssertEqual(try a.status().state, "degraded")
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, a.members[2]]).status, 0)
        _ = try a.waitFor(state: "clean")
        a.unmount()
        try a.assertChecksClean()
        // Without member 0, the re-added member's chunks carry the data.
        try a.mount([a.members[1], a.members[2]])
        XCTAssertEqual(try readFile(a.path("old")), randomBytes(400_000, seed: 2))
        XCTAssertEqual(try readFile(a.path("new")), randomBytes(300_000, seed: 3))
    }

    /// A replace cut short by an unmount goes on at the next mount, from
    /// where it stopped, with the old member serving until it is done.
    func testReplaceCutShortByUnmountResumes() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount(options: ["rebuild_rate=1"])
        var expected: [String: Data] = [:]
        for i in 0..<6 {
            expected["f\(i)"] = randomBytes(600_000, seed: UInt64(i + 70))
            try writeFile(a.path("f\(i)"), expected["f\(i)"]!)
        }
        let fresh = a.root + "/fresh"
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        XCTAssertEqual(try a.ctl(["replace", a.mountpoint, "1", fresh]).status, 0)
        var st = try a.status()
        let deadline = Date().addingTimeInterval(30)
        while st.rebuild.progress < 0.4 && Date() < deadline { usleep(100_000); st = try a.status() }
        XCTAssertTrue(st.rebuild.running)
        a.unmount()
        XCTAssertTrue(try runTool("raidctl", ["examine", "--json", a.members[0]]).stdout.contains("\"replacement\""))
        // Mounted as before (the replacement's directory is not named): it goes on.
        try a.mount(options: ["rebuild_rate=1"])
        st = try a.status()
        XCTAssertEqual(st.members[1].path, a.members[1], "the old member serves until the copy is done")
        XCTAssertEqual(st.state, "clean")
        let done = Date().addingTimeInterval(60)
        repeat { usleep(100_000); st = try a.status() } while st.members[1].path != fresh && Date() < done
        XCTAssertEqual(st.members[1].path, fresh)
        XCTAssertEqual(st.state, "clean")
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("replace-resumed") && events.contains("onto \(fresh) again, after /f"), events)
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
        a.unmount()
        let check = try runTool("raidctl", ["check", a.members[0], fresh, a.members[2]])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        try a.mount([fresh, a.members[2]])
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "replacement + member 2: \(p)") }
    }

    /// kill -9 during a replace: the next mount copies everything again
    /// (the crash resync does not know the replacement) and completes it.
    func testReplaceCutShortByACrashStartsOverAndCompletes() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount(options: ["rebuild_rate=0.5"])   // the copy takes about 5 s
        var expected: [String: Data] = [:]
        for i in 0..<4 {
            expected["f\(i)"] = randomBytes(600_000, seed: UInt64(i + 90))
            try writeFile(a.path("f\(i)"), expected["f\(i)"]!)
        }
        let fresh = a.root + "/fresh"
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        XCTAssertEqual(try a.ctl(["replace", a.mountpoint, "1", fresh]).status, 0)
        usleep(2_500_000)   // past a checkpoint
        XCTAssertTrue(try a.status().rebuild.running, "the copy is still running when the crash comes")
        kill(a.daemon!.processIdentifier, SIGKILL)
        a.unmount()
        try a.mount()
        var st = try a.status()
        let done = Date().addingTimeInterval(60)
        while (st.members[1].path != fresh || st.state != "clean") && Date() < done { usleep(100_000); st = try a.status() }
        XCTAssertEqual(st.members[1].path, fresh)
        XCTAssertTrue(try a.ctl(["events", a.mountpoint]).stdout.contains("onto \(fresh) again, from the start"))
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
        a.unmount()
        try a.mount([fresh, a.members[2]])
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "replacement + member 2: \(p)") }
    }

    func testReplaceWhileTheOldMemberServes() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount(options: ["rebuild_rate=1"])
        var expected: [String: Data] = [:]
        for i in 0..<6 {
            expected["f\(i)"] = randomBytes(600_000, seed: UInt64(i + 40))
            try writeFile(a.path("f\(i)"), expected["f\(i)"]!)
        }
        let fresh = a.root + "/fresh"
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        let r = try a.ctl(["replace", a.mountpoint, "1", fresh])
        XCTAssertEqual(r.status, 0, r.stderr)
        var st = try a.status()
        XCTAssertEqual(st.state, "clean", "redundancy stays whole during a replace")
        XCTAssertTrue(st.rebuild.running)
        // Writes during the copy reach both.
        expected["during"] = randomBytes(300_000, seed: 99)
        try writeFile(a.path("during"), expected["during"]!)
        let deadline = Date().addingTimeInterval(60)
        repeat { usleep(100_000); st = try a.status() } while st.members[1].path != fresh && Date() < deadline
        XCTAssertEqual(st.members[1].path, fresh)
        XCTAssertEqual(st.state, "clean")
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
        XCTAssertTrue(try a.ctl(["events", a.mountpoint]).stdout.contains("member-replaced"))
        a.unmount()
        let newSet = [a.members[0], fresh, a.members[2]]
        let check = try runTool("raidctl", ["check"] + newSet)
        XCTAssertEqual(check.status, 0, check.stdout)
        // The retired member is stale; the replacement alone carries role 1.
        try a.mount([a.members[0], a.members[1], fresh, a.members[2]])
        XCTAssertTrue(a.log().contains("stale"), a.log())
        a.unmount()
        try a.mount([fresh, a.members[2]])
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "replacement + member 2: \(p)") }
    }
}
