import Foundation
import XCTest
import RAIDCore

/// Real FUSE mounts over temporary directories, driven by plain file
/// operations.
final class MountTests: XCTestCase {
    /// Scripts, fstab units and monitors run `raidfs …; raidctl status …`:
    /// the detached daemon's parent returns only once the control socket
    /// answers, so the status right after it never finds no daemon.
    func testDaemonReturnsOnceItsControlSocketAnswers() throws {
        let a = try ScratchArray(level: 5, members: 3)
        func daemons() -> [pid_t] {
            let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return procs.compactMap { Int32($0) }.filter { pid in
                guard let c = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else { return false }
                let args = c.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                return args.count >= 3 && args[0].hasSuffix("/raidfs") && args[2] == a.mountpoint
            }
        }
        defer {
            if isMounted(a.mountpoint) { _ = try? runTool("/usr/bin/fusermount3", ["-uz", a.mountpoint]) }
            for pid in daemons() { kill(pid, SIGKILL) }
        }
        for i in 0..<20 {
            let m = try runDetaching("raidfs", [a.memberSpec, a.mountpoint])
            XCTAssertEqual(m.status, 0, "round \(i): raidfs: \(m.stderr)")
            let r = try runTool("raidctl", ["status", a.mountpoint])
            XCTAssertEqual(r.status, 0, "round \(i): status right after mounting: \(r.stderr)")
            XCTAssertEqual(try runTool("/usr/bin/fusermount3", ["-u", a.mountpoint]).status, 0)
            let deadline = Date().addingTimeInterval(20)
            while !daemons().isEmpty && Date() < deadline { usleep(10_000) }
            XCTAssertEqual(daemons(), [], "round \(i): the daemon exits after the unmount")
        }
        // A daemon that cannot serve makes raidfs fail, not hang.
        let bad = try runDetaching("raidfs", [a.memberSpec, a.root + "/no-such-dir"])
        XCTAssertNotEqual(bad.status, 0)
    }

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

    /// Members sharing a filesystem count it once: six members on one
    /// disk hold 4/6 of it, not four disks' worth. create warns of it.
    func testStatfsCountsASharedFilesystemOnce() throws {
        let a = try ScratchArray(level: 6, members: 6)
        XCTAssertTrue(a.createOutput.contains("are on one filesystem"), a.createOutput)
        XCTAssertEqual(a.createOutput.split(separator: "\n").count, 1, a.createOutput)
        try a.mount()
        var m = statvfs(), d = statvfs()
        XCTAssertEqual(statvfs(a.mountpoint, &m), 0)
        XCTAssertEqual(statvfs(a.members[0], &d), 0)
        let mountBytes = Double(m.f_blocks) * Double(m.f_frsize)
        let memberBytes = Double(d.f_blocks) * Double(d.f_frsize)
        XCTAssertEqual(mountBytes / memberBytes, 4.0 / 6.0, accuracy: 0.01, "RAID 6 of 6 members on one filesystem")
    }

    /// Members on their own filesystems: the smallest filesystem's share
    /// bounds the array. Two tmpfs of 64 and 128 MiB, three members each:
    /// the first fills after 64 MiB × 4 / 3 of data.
    func testStatfsTakesTheFullestFilesystemsShare() throws {
        var mounted: [String] = []
        defer {
            for m in mounted { _ = try? runTool("/usr/bin/umount", ["-l", m]) }
            // The scratch root, whose cleanup may have run while these were mounted.
            if let m = mounted.first { _ = try? runTool("/bin/rm", ["-rf", (m as NSString).deletingLastPathComponent]) }
        }
        let a = try ScratchArray(level: 6, members: 6, paths: ["a/d0", "a/d1", "a/d2", "b/d3", "b/d4", "b/d5"]) { base in
            for (fs, size) in [("a", "64m"), ("b", "128m")] {
                try FileManager.default.createDirectory(atPath: base + "/" + fs, withIntermediateDirectories: true)
                XCTAssertEqual(try runTool("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", base + "/" + fs]).status, 0)
                mounted.append(base + "/" + fs)
            }
        }
        XCTAssertEqual(a.createOutput.split(separator: "\n").count, 2, "one warning per shared filesystem: \(a.createOutput)")
        try a.mount()
        defer { a.unmount() }
        var m = statvfs()
        XCTAssertEqual(statvfs(a.mountpoint, &m), 0)
        let mountBytes = Double(m.f_blocks) * Double(m.f_frsize)
        XCTAssertEqual(mountBytes / Double(64 << 20), 4.0 / 3.0, accuracy: 0.02)
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
