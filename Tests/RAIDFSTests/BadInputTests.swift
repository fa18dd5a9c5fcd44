import Foundation
import XCTest
import RAIDCore

/// Bad input gets a one-line error naming the thing and the cause, and
/// changes nothing on disk.
final class BadInputTests: XCTestCase {
    func superblocks(_ dirs: [String]) -> [Data] {
        dirs.map { FileManager.default.contents(atPath: $0 + "/raidfs.sb") ?? Data() }
    }

    func testMountRefusesMembersOfDifferentArrays() throws {
        let a = try ScratchArray(level: 5, members: 3)
        let b = try ScratchArray(level: 5, members: 3)
        let mixed = [a.members[0], a.members[1], b.members[2]]
        let before = superblocks(mixed)
        let r = try runTool("raidfs", [mixed.joined(separator: ":"), a.mountpoint, "-f"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("different arrays") && r.stderr.contains(b.members[2]), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(isMounted(a.mountpoint))
        XCTAssertEqual(superblocks(mixed), before)
    }

    func testMountRefusesTooFewMembers() throws {
        let a = try ScratchArray(level: 6, members: 4)
        let before = superblocks(a.members)
        let r = try runTool("raidfs", [a.members[0], a.mountpoint, "-f"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("needs at least 2 of 4"), r.stderr)
        XCTAssertEqual(superblocks(a.members), before)
    }

    func testUsageErrorsExit64() throws {
        XCTAssertEqual(try runTool("raidfs", []).status, 64)
        XCTAssertEqual(try runTool("raidfs", ["/a:/b", "/mnt", "--bogus"]).status, 64)
        let r = try runTool("raidctl", ["create", "--level", "4", "/tmp/x", "/tmp/y", "/tmp/z"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--level"), r.stderr)
        XCTAssertEqual(try runTool("raidctl", ["create", "--level", "5", "--chunk", "3K", "/a", "/b", "/c"]).status, 64)
        XCTAssertEqual(try runTool("raidctl", ["create", "--level", "6", "/a", "/b", "/c"]).status, 64)
        // Asking for help is not an error.
        for args in [["--help"], ["help", "scrub"], ["inject", "--help"]] {
            let h = try runTool("raidctl", args)
            XCTAssertEqual(h.status, 0, "raidctl \(args): \(h.stderr)")
            XCTAssertTrue(h.stdout.contains("USAGE"), h.stdout)
        }
    }

    func testCreateRefusesNonEmptyOrReusedDirectories() throws {
        let a = try ScratchArray(level: 5, members: 3)
        let fresh = a.root + "/fresh"
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        var r = try runTool("raidctl", ["create", "--level", "1", fresh, a.members[0]])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains(a.members[0]) && r.stderr.contains("already a member"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: fresh), [])
        r = try runTool("raidctl", ["create", "--level", "1", fresh, fresh])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("named twice"), r.stderr)
    }

    func testStaleMemberIsLeftOutAndReported() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount(Array(a.members[0..<2]))
        try writeFile(a.path("f"), randomBytes(50_000, seed: 8))
        a.unmount()
        try a.mount()
        XCTAssertTrue(a.log().contains("stale"), a.log())
        XCTAssertEqual(try readFile(a.path("f")), randomBytes(50_000, seed: 8))
    }
}
