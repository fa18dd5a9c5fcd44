import Foundation
import XCTest
import RAIDCore

/// Members whose namespaces disagree are repaired, not failed; an array
/// whose members were failed anyway comes back with -o force.
final class NamespaceRepairTests: XCTestCase {
    /// The defect as found: an unlink that reached member 0 only (a kill -9
    /// between members), then a create of that name. Members 1–3 answer
    /// EEXIST; before, each was failed in turn until the array was dead.
    func testCreateOverAnUnlinkDoneOnOneMemberOnly() throws {
        let a = try ScratchArray(level: 5, members: 4, chunk: "16K")
        try a.mount()
        try writeFile(a.path("j15"), randomBytes(100_000, seed: 1))
        try writeFile(a.path("other"), randomBytes(50_000, seed: 2))
        a.unmount()
        XCTAssertEqual(unlink(a.members[0] + "/data/j15"), 0)
        try a.mount()
        let fresh = randomBytes(70_000, seed: 3)
        let fd = open(a.path("j15"), O_CREAT | O_EXCL | O_WRONLY, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0, "create: \(String(cString: strerror(errno)))")
        _ = fresh.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let st = try a.status()
        XCTAssertEqual(st.state, "clean", "\(st.members.map { $0.state })")
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("namespace-repaired"), events)
        XCTAssertFalse(events.contains("member-failed"), events)
        XCTAssertEqual(try readFile(a.path("j15")), fresh)
        a.unmount()
        try a.assertChecksClean()
        try a.mount(Array(a.members.dropFirst()))
        XCTAssertEqual(try readFile(a.path("j15")), fresh, "without member 0")
        XCTAssertEqual(try readFile(a.path("other")), randomBytes(50_000, seed: 2))
    }

    /// Members failed one after another until the array failed: refused
    /// with a message naming -o force, nothing written; -o force takes the
    /// freshest back, resyncs, serves every file; add brings it to clean.
    func testForcedAssemblyBringsBackAnArrayWhoseMembersWereFailed() throws {
        let a = try ScratchArray(level: 5, members: 4, chunk: "16K")
        try a.mount()
        var expected: [String: Data] = [:]
        try FileManager.default.createDirectory(atPath: a.path("dir"), withIntermediateDirectories: true)
        for (i, p) in ["f1", "dir/f2", "dir/f3"].enumerated() {
            expected[p] = randomBytes(300_000 + i * 1000, seed: UInt64(40 + i))
            try writeFile(a.path(p), expected[p]!)
        }
        try writeFile(a.path("j15"), randomBytes(10_000, seed: 9))
        a.unmount()
        // As the old behaviour left it: an unlink that reached member 0
        // only, then the members failed one after another.
        XCTAssertEqual(unlink(a.members[0] + "/data/j15"), 0)
        try a.mount()
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "1"]).status, 0)
        XCTAssertEqual(try a.ctl(["fail", "--force", a.mountpoint, "2"]).status, 0)
        XCTAssertEqual(try a.ctl(["fail", "--force", a.mountpoint, "3"]).status, 0)
        XCTAssertEqual(try a.status().state, "failed")
        a.unmount()
        let superblocks = try a.members.map { try readFile($0 + "/raidfs.sb") }
        let refused = try runTool("raidfs", [a.memberSpec, a.mountpoint, "-f"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("-o force would take back"), refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertEqual(try a.members.map { try readFile($0 + "/raidfs.sb") }, superblocks, "a refusal writes nothing")
        try a.mount(options: ["force"])
        XCTAssertTrue(a.log().contains("forced back"), a.log())
        XCTAssertEqual(try a.status().state, "degraded")
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "forced: \(p)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: a.path("j15")), "the unlink rolled forward")
        // The assembled members agree on the tree.
        let trees = try [0, 2, 3].map { try runTool("/usr/bin/find", [a.members[$0] + "/data", "-printf", "%P %y %m\n"]).stdout
            .split(separator: "\n").sorted() }
        XCTAssertEqual(trees[0], trees[1])
        XCTAssertEqual(trees[0], trees[2])
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, a.members[1]]).status, 0)
        _ = try a.waitFor(state: "clean", seconds: 60)
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "after the rebuild: \(p)") }
        a.unmount()
        try a.assertChecksClean()
    }
}
