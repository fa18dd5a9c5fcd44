import Foundation
import XCTest
import RAIDCore
import CLinux

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

/// Sizes near and past the largest file: EFBIG at once with nothing
/// changed, as ext4 answers; work and memory follow the bytes written,
/// not the size (the POSIX suite's truncate/12.t asks for a petabyte).
final class HugeSizeTests: XCTestCase {
    private func rssKiB(_ pid: pid_t) -> Int {
        let s = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = s.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    private func size(_ p: String) -> Int64 {
        var st = stat()
        XCTAssertEqual(stat(p, &st), 0)
        return Int64(st.st_size)
    }

    func testSizesPastTheLargestFileGetEFBIGAndHugeOnesCostNothing() throws {
        let a = try ScratchArray(level: 5, members: 4)
        try a.mount()
        let pid = a.daemon!.processIdentifier
        let f = a.path("f")
        let mib = [UInt8](randomBytes(1 << 20, seed: 5))
        try writeFile(f, Data(mib))
        // The members' host (ext4 here, 16 TiB a file) bounds the largest
        // file: find it through the mount.
        var lo: Int64 = 0, hi = Int64.max
        while lo < hi {
            let mid = lo + (hi - lo) / 2 + 1
            if truncate(f, off_t(mid)) == 0 { lo = mid } else { XCTAssertEqual(errno, EFBIG); hi = mid - 1 }
        }
        let largest = lo
        XCTAssertGreaterThanOrEqual(largest, 1 << 40, "the largest file is at least a TiB")
        XCTAssertEqual(truncate(f, off_t(999_999_999_999_999 > largest ? 999_999_999_999_999 : Int64.max)), -1)
        XCTAssertEqual(errno, EFBIG)
        XCTAssertEqual(size(f), largest, "a refused truncate changes nothing")
        // A write that crosses it stops there; one that starts there fails.
        let fd = open(f, O_RDWR)
        XCTAssertEqual(pwrite(fd, mib, 100, off_t(largest - 10)), 10)
        XCTAssertEqual(pwrite(fd, mib, 100, off_t(largest)), -1)
        XCTAssertEqual(errno, EFBIG)
        XCTAssertEqual(fallocate(fd, 0, off_t(largest - 4096), 8192), -1)
        XCTAssertEqual(errno, EFBIG)
        // A MiB far out, a hole punched over all but the first MiB, and
        // back to a few bytes: memory stays flat.
        let far = off_t(largest / 2)
        XCTAssertEqual(pwrite(fd, mib, mib.count, far), mib.count)
        var back = [UInt8](repeating: 0, count: mib.count)
        XCTAssertEqual(pread(fd, &back, back.count, far), back.count)
        XCTAssertEqual(back, mib)
        XCTAssertEqual(pread(fd, &back, 4096, far - 8192), 4096)
        XCTAssertEqual(back[0..<4096].allSatisfy { $0 == 0 }, true, "a hole reads as zeros")
        XCTAssertEqual(fallocate(fd, 3 /* PUNCH_HOLE | KEEP_SIZE */, 1 << 20, off_t(largest) - (1 << 20)), 0)
        XCTAssertEqual(pread(fd, &back, back.count, far), back.count)
        XCTAssertTrue(back.allSatisfy { $0 == 0 }, "the punched MiB reads as zeros")
        XCTAssertEqual(ftruncate(fd, 1 << 20), 0)
        XCTAssertEqual(ftruncate(fd, off_t(largest)), 0)
        XCTAssertEqual(ftruncate(fd, 5), 0)
        XCTAssertEqual(size(f), 5)
        let rss = rssKiB(pid)
        XCTAssertGreaterThan(rss, 0)
        XCTAssertLessThan(rss, 64 * 1024, "the daemon's memory stays under 64 MiB (\(rss) KiB)")
        close(fd)
        a.unmount()
        try a.mount()
        XCTAssertEqual(size(f), 5)
        XCTAssertEqual(try readFile(f), Data(mib[0..<5]))
    }
}
