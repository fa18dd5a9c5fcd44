import Foundation
import XCTest
import RAIDCore

/// Real FUSE mounts over temporary directories, driven by plain file
/// operations.
final class MountTests: XCTestCase {
    func testFilesystemOperationsAndRemount() throws {
        let a = try ScratchArray(level: 6, members: 6)
        try a.mount()
        let fm = FileManager.default
        try fm.createDirectory(atPath: a.path("dir/sub"), withIntermediateDirectories: true)
        let sizes = [0, 1, 4095, 4096, 65_537, 262_144, 1_000_003]
        var expected: [String: Data] = [:]
        for (i, n) in sizes.enumerated() {
            let d = randomBytes(n, seed: UInt64(i + 1))
            try writeFile(a.path("dir/f\(i)"), d)
            expected["dir/f\(i)"] = d
        }
        try fm.moveItem(atPath: a.path("dir/f2"), toPath: a.path("dir/sub/moved"))
        expected["dir/sub/moved"] = expected.removeValue(forKey: "dir/f2")
        // rename over an existing file replaces it
        XCTAssertEqual(rename(a.path("dir/f3"), a.path("dir/f4")), 0)
        expected["dir/f4"] = expected.removeValue(forKey: "dir/f3")
        try fm.removeItem(atPath: a.path("dir/f1"))
        expected["dir/f1"] = nil
        try fm.createSymbolicLink(atPath: a.path("link"), withDestinationPath: "dir/f5")
        XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: a.path("link")), "dir/f5")
        XCTAssertEqual(chmod(a.path("dir/f0"), 0o600), 0)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: a.path("dir")).sorted(), ["f0", "f4", "f5", "f6", "sub"])
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, p) }
        a.unmount()
        try a.mount(Array(a.members.reversed()))
        for (p, d) in expected { XCTAssertEqual(try readFile(a.path(p)), d, "after remount: \(p)") }
        var st = stat()
        XCTAssertEqual(lstat(a.path("dir/f0"), &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o600)
        XCTAssertEqual(try readFile(a.path("link")), expected["dir/f5"])
        XCTAssertEqual(rmdir(a.path("dir")), -1)
        XCTAssertEqual(errno, ENOTEMPTY)
    }

    func testSparseWritesTruncateAndUnalignedIO() throws {
        let a = try ScratchArray(level: 5, members: 4, chunk: "16K")
        try a.mount()
        let fd = open(a.path("sparse"), O_CREAT | O_RDWR, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let payload = [UInt8](randomBytes(10_000, seed: 9))
        XCTAssertEqual(pwrite(fd, payload, payload.count, 1_000_000), payload.count)
        var st = stat()
        fstat(fd, &st)
        XCTAssertEqual(st.st_size, 1_010_000)
        var buf = [UInt8](repeating: 0xFF, count: 5000)
        XCTAssertEqual(pread(fd, &buf, 5000, 500_000), 5000)
        XCTAssertEqual(buf, [UInt8](repeating: 0, count: 5000), "a hole reads as zeros")
        XCTAssertEqual(pread(fd, &buf, 5000, 1_003_333), 5000)
        XCTAssertEqual(buf, Array(payload[3333..<8333]))
        XCTAssertEqual(ftruncate(fd, 1_005_000), 0)
        XCTAssertEqual(ftruncate(fd, 1_020_000), 0)
        var tail = [UInt8](repeating: 0xFF, count: 20_000)
        XCTAssertEqual(pread(fd, &tail, 20_000, 1_000_000), 20_000)
        XCTAssertEqual(Array(tail[0..<5000]), Array(payload[0..<5000]))
        XCTAssertEqual(Array(tail[5000...]), [UInt8](repeating: 0, count: 15_000), "shrunk-then-grown bytes read as zeros")
        XCTAssertEqual(ftruncate(fd, 0), 0)
        fstat(fd, &st)
        XCTAssertEqual(st.st_size, 0)
    }

    func testStatfsReportsUsableCapacity() throws {
        let a = try ScratchArray(level: 6, members: 6)
        try a.mount()
        var m = statvfs(), d = statvfs()
        XCTAssertEqual(statvfs(a.mountpoint, &m), 0)
        XCTAssertEqual(statvfs(a.members[0], &d), 0)
        let mountBytes = Double(m.f_blocks) * Double(m.f_frsize)
        let memberBytes = Double(d.f_blocks) * Double(d.f_frsize)
        XCTAssertEqual(mountBytes / memberBytes, 4.0, accuracy: 0.01, "RAID 6 over 6 members holds 4 members' worth")
    }

    func testUnmountAndSigtermLeaveSuperblocksClean() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        try writeFile(a.path("x"), randomBytes(100_000, seed: 3))
        var sb = try runTool("raidctl", ["examine", "--json", a.members[0]])
        XCTAssertTrue(sb.stdout.contains("\"clean\" : false"), sb.stdout)
        kill(a.daemon!.processIdentifier, SIGTERM)
        a.daemon!.waitUntilExit()
        a.unmount()
        for m in a.members {
            sb = try runTool("raidctl", ["examine", "--json", m])
            XCTAssertTrue(sb.stdout.contains("\"clean\" : true"), sb.stdout)
        }
        try a.mount()
        XCTAssertEqual(try readFile(a.path("x")), randomBytes(100_000, seed: 3))
    }
}
