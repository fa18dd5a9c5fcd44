import Foundation
import XCTest
import RAIDCore

/// A directory that once held many entries is removed on the first member
/// while the caller waits, and on the others in the background (see
/// Trash.swift): the answers, the members' trees and the cleanup after an
/// unmount must be those of a plain removal on every member.
final class LargeDirectoryTests: XCTestCase {
    /// Enough long names that each member's emptied copy stays far over
    /// 64 KiB on ext4 (the members here are on /tmp's filesystem).
    private func fillAndEmpty(_ dir: String, count: Int = 1500, keep: Int = 0) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        let pad = String(repeating: "n", count: 200)
        for i in 0..<count {
            let fd = open(dir + "/\(pad)\(i)", O_CREAT | O_EXCL | O_WRONLY, 0o644)
            XCTAssertGreaterThanOrEqual(fd, 0, "create \(i): \(String(cString: strerror(errno)))")
            close(fd)
        }
        for i in keep..<count { XCTAssertEqual(unlink(dir + "/\(pad)\(i)"), 0, "unlink \(i)") }
    }

    private func trashEntries(_ member: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: member + "/data/.raidfs-trash")) ?? []
    }

    private func waitForEmptyTrash(_ a: ScratchArray, seconds: Double = 20) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, a.members.contains(where: { !trashEntries($0).isEmpty }) { usleep(20_000) }
    }

    func testRemovingAnEmptiedLargeDirectoryLeavesNoCopyOnAnyMember() throws {
        let a = try ScratchArray(level: 6, members: 5, chunk: "16K")
        try a.mount()
        try fillAndEmpty(a.path("big"))
        var st = stat()
        XCTAssertEqual(lstat(a.members[1] + "/data/big", &st), 0)
        XCTAssertGreaterThan(st.st_size, 64 << 10, "the members' copies are large enough to take the background path")
        XCTAssertEqual(rmdir(a.path("big")), 0, String(cString: strerror(errno)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: a.path("big")))
        for m in a.members { XCTAssertFalse(FileManager.default.fileExists(atPath: m + "/data/big"), m) }
        // The hidden directory is not the users'.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: a.mountpoint), [])
        XCTAssertNotEqual(mkdir(a.path(".raidfs-trash"), 0o755), 0)
        XCTAssertEqual(errno, EPERM)
        waitForEmptyTrash(a)
        for m in a.members { XCTAssertEqual(trashEntries(m), [], "\(m): removed in the background") }
        XCTAssertEqual(try a.status().state, "clean")
        // The name can be made again at once.
        XCTAssertEqual(mkdir(a.path("big"), 0o755), 0)
        a.unmount()
        try a.assertChecksClean()
    }

    /// ENOTEMPTY (and ENOENT, ENOTDIR) come from the first member, and no
    /// member's copy moves.
    func testANonEmptyLargeDirectoryIsRefusedAndStaysOnEveryMember() throws {
        let a = try ScratchArray(level: 5, members: 4, chunk: "16K")
        try a.mount()
        try fillAndEmpty(a.path("big"), keep: 1)
        XCTAssertNotEqual(rmdir(a.path("big")), 0)
        XCTAssertEqual(errno, ENOTEMPTY)
        for m in a.members {
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: m + "/data/big").count, 1, m)
            XCTAssertEqual(trashEntries(m), [], m)
        }
        XCTAssertNotEqual(rmdir(a.path("nothing")), 0)
        XCTAssertEqual(errno, ENOENT)
        a.unmount()
        try a.assertChecksClean()
    }

    /// What an unmount (or a crash) leaves in the members' hidden
    /// directories is removed at the next mount; a rebuild does not copy
    /// it, and a member that held the directory where the first did not
    /// (a diverged member) loses it with the rest.
    func testLeftoversAreRemovedAtTheNextMountAndNeverRebuilt() throws {
        let a = try ScratchArray(level: 5, members: 4, chunk: "16K")
        try a.mount()
        try fillAndEmpty(a.path("big"))
        a.unmount()
        // As an unmount cut the background removal short, with a member
        // whose copy still held an entry.
        for (i, m) in a.members.enumerated() where i > 0 {
            let holder = m + "/data/.raidfs-trash/\(i)"
            try FileManager.default.createDirectory(atPath: holder, withIntermediateDirectories: true)
            XCTAssertEqual(rename(m + "/data/big", holder + "/d"), 0)
        }
        try Data("left".utf8).write(to: URL(fileURLWithPath: a.members[2] + "/data/.raidfs-trash/2/d/stray"))
        XCTAssertEqual(rmdir(a.members[0] + "/data/big"), 0)
        try a.mount()
        waitForEmptyTrash(a)
        for m in a.members { XCTAssertEqual(trashEntries(m), [], m) }
        try writeFile(a.path("f"), randomBytes(100_000, seed: 3))
        // Left over again, then member 1 rebuilt from the others.
        let holder = a.members[2] + "/data/.raidfs-trash/x"
        a.unmount()
        try FileManager.default.createDirectory(atPath: holder + "/d", withIntermediateDirectories: true)
        try a.mount()
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "1"]).status, 0)
        XCTAssertEqual(try a.ctl(["remove", a.mountpoint, "1"]).status, 0)
        let spare = a.members[1] + "-new"
        try FileManager.default.createDirectory(atPath: spare, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: spare) }
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spare]).status, 0)
        _ = try a.waitFor(state: "clean", seconds: 60)
        XCTAssertEqual(trashEntries(spare), [])
        XCTAssertEqual(try readFile(a.path("f")), randomBytes(100_000, seed: 3))
        a.unmount()
    }
}
