import Foundation
import XCTest
import RAIDCore

/// A file in the mount used as a block device: losetup, mkfs.ext4, mount,
/// write files, unmount, fail a member of the raidfs array, e2fsck clean.
final class BlockDeviceTests: XCTestCase {
    func testExt4OnALoopDeviceSurvivesAFailedMember() throws {
        guard FileManager.default.fileExists(atPath: "/dev/loop-control"), geteuid() == 0,
              FileManager.default.isExecutableFile(atPath: "/usr/sbin/mkfs.ext4") else {
            throw XCTSkip("loop devices or mkfs.ext4 unavailable here (needs root, /dev/loop-control and e2fsprogs)")
        }
        let a = try ScratchArray(level: 6, members: 5, chunk: "64K")
        try a.mount()
        let image = a.path("disk.img")
        XCTAssertEqual(try runTool("/usr/bin/truncate", ["-s", "64M", image]).status, 0)
        let setup = try runTool("/usr/sbin/losetup", ["--find", "--show", image])
        guard setup.status == 0 else { throw XCTSkip("losetup failed here: \(setup.stderr)") }
        let loop = setup.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let inner = a.root + "/ext4"
        try FileManager.default.createDirectory(atPath: inner, withIntermediateDirectories: true)
        defer {
            _ = try? runTool("/usr/bin/umount", [inner])
            _ = try? runTool("/usr/sbin/losetup", ["-d", loop])
        }
        let mk = try runTool("/usr/sbin/mkfs.ext4", ["-q", "-F", loop])
        XCTAssertEqual(mk.status, 0, mk.stderr)
        XCTAssertEqual(try runTool("/usr/bin/mount", [loop, inner]).status, 0)
        var expected: [String: Data] = [:]
        for i in 0..<20 {
            let d = randomBytes(100_000 + i * 3001, seed: UInt64(i + 70))
            try writeFile(inner + "/f\(i)", d)
            expected["f\(i)"] = d
        }
        XCTAssertEqual(try runTool("/usr/bin/umount", [inner]).status, 0)
        XCTAssertEqual(try runTool("/usr/sbin/losetup", ["-d", loop]).status, 0)
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "3"]).status, 0)
        let again = try runTool("/usr/sbin/losetup", ["--find", "--show", image])
        XCTAssertEqual(again.status, 0, again.stderr)
        let loop2 = again.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? runTool("/usr/sbin/losetup", ["-d", loop2]) }
        let fsck = try runTool("/usr/sbin/e2fsck", ["-fn", loop2])
        XCTAssertEqual(fsck.status, 0, fsck.stdout + fsck.stderr)
        XCTAssertEqual(try runTool("/usr/bin/mount", ["-o", "ro", loop2, inner]).status, 0)
        for (name, d) in expected { XCTAssertEqual(try readFile(inner + "/" + name), d, name) }
        XCTAssertEqual(try runTool("/usr/bin/umount", [inner]).status, 0)
    }
}
