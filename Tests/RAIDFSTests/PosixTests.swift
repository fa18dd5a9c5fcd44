import Foundation
import XCTest
import CLinux
import RAIDCore

/// Local-filesystem behaviours beyond the basic data path.
final class PosixTests: XCTestCase {
    func testHardLinksShareInodeAndDataAcrossRemount() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        try writeFile(a.path("one"), Data("first".utf8))
        XCTAssertEqual(link(a.path("one"), a.path("two")), 0)
        var s1 = stat(), s2 = stat()
        XCTAssertEqual(lstat(a.path("one"), &s1), 0)
        XCTAssertEqual(lstat(a.path("two"), &s2), 0)
        XCTAssertEqual(s1.st_ino, s2.st_ino)
        XCTAssertEqual(s1.st_nlink, 2)
        let fd = open(a.path("two"), O_WRONLY | O_APPEND)
        XCTAssertEqual(write(fd, "+more", 5), 5)
        close(fd)
        XCTAssertEqual(try readFile(a.path("one")), Data("first+more".utf8))
        a.unmount()
        try a.mount()
        var s3 = stat()
        XCTAssertEqual(lstat(a.path("one"), &s3), 0)
        XCTAssertEqual(s3.st_ino, s1.st_ino, "inode numbers are stable across remounts")
        XCTAssertEqual(unlink(a.path("one")), 0)
        XCTAssertEqual(try readFile(a.path("two")), Data("first+more".utf8))
        XCTAssertEqual(lstat(a.path("two"), &s3), 0)
        XCTAssertEqual(s3.st_nlink, 1)
    }

    func testOpenUnlinkedFileStaysReadableAndWritable() throws {
        let a = try ScratchArray(level: 6, members: 4)
        try a.mount()
        let fd = open(a.path("tmp"), O_CREAT | O_RDWR, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let d = [UInt8](randomBytes(200_000, seed: 4))
        XCTAssertEqual(pwrite(fd, d, d.count, 0), d.count)
        XCTAssertEqual(unlink(a.path("tmp")), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: a.path("tmp")))
        XCTAssertEqual(pwrite(fd, d, 1000, 300_000), 1000)
        var buf = [UInt8](repeating: 0, count: 200_000)
        XCTAssertEqual(pread(fd, &buf, buf.count, 0), buf.count)
        XCTAssertEqual(buf, d)
        var st = stat()
        XCTAssertEqual(fstat(fd, &st), 0)
        XCTAssertEqual(st.st_size, 301_000)
    }

    func testExtendedAttributesAreReplicated() throws {
        let a = try ScratchArray(level: 1, members: 2)
        try a.mount()
        try writeFile(a.path("f"), Data("x".utf8))
        let value = Array("blue".utf8)
        guard setxattr(a.path("f"), "user.color", value, value.count, 0) == 0 else {
            if errno == EOPNOTSUPP || errno == ENOTSUP { throw XCTSkip("member filesystem has no user xattrs") }
            XCTFail("setxattr: errno \(errno)")
            return
        }
        var buf = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(getxattr(a.path("f"), "user.color", &buf, 64), 4)
        XCTAssertEqual(Array(buf[0..<4]), value)
        XCTAssertEqual(getxattr(a.path("f"), "user.color", &buf, 2), -1)
        XCTAssertEqual(errno, ERANGE)
        XCTAssertEqual(getxattr(a.path("f"), "user.none", &buf, 64), -1)
        XCTAssertEqual(errno, ENODATA)
        XCTAssertEqual(setxattr(a.path("f"), "user.color", value, value.count, Int32(XATTR_CREATE)), -1)
        XCTAssertEqual(errno, EEXIST)
        // Survives losing either mirror.
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "0"]).status, 0)
        XCTAssertEqual(getxattr(a.path("f"), "user.color", &buf, 64), 4)
        XCTAssertEqual(removexattr(a.path("f"), "user.color"), 0)
        XCTAssertEqual(listxattr(a.path("f"), nil, 0), 0)
    }

    func testReadOnlyMountAndUnknownOption() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        try writeFile(a.path("f"), Data("keep".utf8))
        a.unmount()
        try a.mount(options: ["ro"])
        XCTAssertEqual(try readFile(a.path("f")), Data("keep".utf8))
        XCTAssertEqual(open(a.path("g"), O_CREAT | O_WRONLY, 0o644), -1)
        XCTAssertEqual(errno, EROFS)
        XCTAssertEqual(mkdir(a.path("d"), 0o755), -1)
        XCTAssertEqual(errno, EROFS)
        a.unmount()
        let r = try runTool("raidfs", [a.memberSpec, a.mountpoint, "-f", "-o", "nosuchoption"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("nosuchoption"), r.stderr)
        XCTAssertFalse(isMounted(a.mountpoint))
    }

    func testSharedWritableMmapPersists() throws {
        let a = try ScratchArray(level: 5, members: 4)
        try a.mount()
        let size = 1 << 20
        try writeFile(a.path("m"), Data(count: size))
        let fd = open(a.path("m"), O_RDWR)
        XCTAssertGreaterThanOrEqual(fd, 0)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            XCTFail("mmap: errno \(errno)")
            return
        }
        let want = randomBytes(size, seed: 77)
        want.withUnsafeBytes { _ = memcpy(p, $0.baseAddress!, size) }
        XCTAssertEqual(msync(p, size, MS_SYNC), 0)
        munmap(p, size)
        close(fd)
        let expected = a.root + "/expected"
        try writeFile(expected, want)
        // Another process sees it, and it survives a remount.
        XCTAssertEqual(try runTool("/usr/bin/cmp", [expected, a.path("m")]).status, 0)
        a.unmount()
        try a.mount()
        XCTAssertEqual(try readFile(a.path("m")), want)
    }

    func testPermissionsAndOwnershipForAnotherUser() throws {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            throw XCTSkip("needs root and setpriv to act as another user")
        }
        let a = try ScratchArray(level: 6, members: 4)
        try a.mount(options: ["allow_other"])
        XCTAssertEqual(chmod(a.mountpoint, 0o1777), 0)
        try writeFile(a.path("secret"), Data("root only".utf8))
        XCTAssertEqual(chmod(a.path("secret"), 0o600), 0)
        func asNobody(_ args: [String]) throws -> RunResult {
            try runTool("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups"] + args)
        }
        XCTAssertEqual(try asNobody(["/usr/bin/touch", a.path("mine")]).status, 0)
        var st = stat()
        XCTAssertEqual(lstat(a.path("mine"), &st), 0)
        XCTAssertEqual(st.st_uid, 65534, "a file created by a user is owned by that user")
        XCTAssertEqual(st.st_gid, 65534)
        let denied = try asNobody(["/bin/cat", a.path("secret")])
        XCTAssertNotEqual(denied.status, 0)
        XCTAssertTrue(denied.stderr.contains("Permission denied"), denied.stderr)
        // Sticky directory: nobody may not remove root's file.
        let rm = try asNobody(["/bin/rm", "-f", a.path("secret")])
        XCTAssertNotEqual(rm.status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: a.path("secret")))
    }

    func testFallocateAndPunchHoleKeepParityConsistent() throws {
        let a = try ScratchArray(level: 6, members: 5, chunk: "16K")
        try a.mount()
        var data = randomBytes(1_000_000, seed: 21)
        try writeFile(a.path("f"), data)
        // Allocate past the end: the size grows, the new bytes read as zeros.
        XCTAssertEqual(try runTool("/usr/bin/fallocate", ["-o", "1000000", "-l", "200000", a.path("f")]).status, 0)
        data.append(Data(count: 200_000))
        XCTAssertEqual(try readFile(a.path("f")), data)
        // Keep-size allocation leaves the size alone.
        XCTAssertEqual(try runTool("/usr/bin/fallocate", ["-n", "-o", "1200000", "-l", "500000", a.path("f")]).status, 0)
        XCTAssertEqual(try readFile(a.path("f")).count, 1_200_000)
        // Punch across partial and whole stripes.
        let r = try runTool("/usr/bin/fallocate", ["-p", "-o", "12345", "-l", "700000", a.path("f")])
        XCTAssertEqual(r.status, 0, r.stderr)
        data.replaceSubrange(12_345..<712_345, with: Data(count: 700_000))
        XCTAssertEqual(try readFile(a.path("f")), data)
        // Unsupported modes say so.
        let z = try runTool("/usr/bin/fallocate", ["-c", "-o", "0", "-l", "65536", a.path("f")])
        XCTAssertNotEqual(z.status, 0)
        XCTAssertTrue(z.stderr.contains("not supported"), z.stderr)
        // Data and parity agree: any two members missing, same bytes.
        a.unmount()
        XCTAssertEqual(try runTool("raidctl", ["check"] + a.members).status, 0)
        try a.mount([a.members[0], a.members[2], a.members[4]])
        XCTAssertEqual(try readFile(a.path("f")), data)
    }

    func testOrphansOfOpenUnlinkedFilesAreRemovedAfterACrash() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        try writeFile(a.path("keep"), Data("k".utf8))
        let fd = open(a.path("gone"), O_CREAT | O_RDWR, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(pwrite(fd, "data", 4, 0), 4)
        XCTAssertEqual(unlink(a.path("gone")), 0)
        let hidden = { (try? FileManager.default.contentsOfDirectory(atPath: a.members[0] + "/data"))?.filter { $0.hasPrefix(".fuse_hidden") } ?? [] }
        XCTAssertEqual(hidden().count, 1, "libfuse keeps the open file under a hidden name")
        kill(a.daemon!.processIdentifier, SIGKILL)
        a.daemon!.waitUntilExit()
        close(fd)
        a.unmount()
        try a.mount()
        // The first operation waits for the daemon's init, which cleans up.
        XCTAssertEqual(try readFile(a.path("keep")), Data("k".utf8))
        XCTAssertEqual(hidden(), [], "the orphan is removed at the next mount")
    }
}
