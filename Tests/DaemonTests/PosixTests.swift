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
        let (fd, d) = createFilled(a.path("tmp"), 200_000, seed: 4)
        defer { close(fd) }
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
        let a = try arrayForAnotherUser(level: 6, members: 4)
        try writeFile(a.path("secret"), Data("root only".utf8))
        XCTAssertEqual(chmod(a.path("secret"), 0o600), 0)
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

    /// A write, a truncate (by size or by O_TRUNC) and a chown drop what
    /// they drop on Linux's own filesystems: set-user-ID, and
    /// set-group-ID with group execute, when the caller lacks CAP_FSETID;
    /// a file capability whoever writes. raidfs does it itself (the kernel
    /// leaves it to the filesystem under FUSE_HANDLE_KILLPRIV_V2), on
    /// every member, and the kernel sees the new mode at once.
    func testWriteTruncateAndChownDropSetidBitsAndCapabilities() throws {
        let a = try arrayForAnotherUser(level: 5, members: 3)
        func nobodyRuns(_ script: String) throws {
            let r = try asNobody(["/bin/sh", "-c", script])
            XCTAssertEqual(r.status, 0, "\(script): \(r.stderr)")
        }
        func appendFile(_ path: String, _ data: Data) throws {
            let h = try XCTUnwrap(FileHandle(forWritingAtPath: path))
            defer { try? h.close() }
            try h.seekToEnd()
            try h.write(contentsOf: data)
        }
        func mode(_ name: String) -> mode_t {
            var st = stat()
            XCTAssertEqual(lstat(a.path(name), &st), 0, name)
            return st.st_mode & 0o7777
        }
        for name in ["w", "t", "o", "c", "r", "g", "k"] {
            try writeFile(a.path(name), Data("x".utf8))
            XCTAssertEqual(chown(a.path(name), 65534, 65534), 0)
            XCTAssertEqual(chmod(a.path(name), 0o6755), 0)
        }
        XCTAssertEqual(chmod(a.path("g"), 0o2745), 0)
        XCTAssertEqual(mode("w"), 0o6755)
        try nobodyRuns("echo more >> \(a.path("w"))")
        XCTAssertEqual(mode("w"), 0o755, "a write by a user without CAP_FSETID drops setuid and setgid")
        try nobodyRuns("truncate -s 1 \(a.path("t"))")
        XCTAssertEqual(mode("t"), 0o755, "so does a truncate")
        try nobodyRuns("echo new > \(a.path("o"))")
        XCTAssertEqual(mode("o"), 0o755, "and an open with O_TRUNC")
        XCTAssertEqual(chown(a.path("c"), 0, 0), 0)
        XCTAssertEqual(mode("c"), 0o755, "a chown drops them whoever makes it")
        try appendFile(a.path("r"), Data("root".utf8))
        XCTAssertEqual(mode("r"), 0o6755, "root (CAP_FSETID) keeps them")
        try nobodyRuns("echo more >> \(a.path("g"))")
        XCTAssertEqual(mode("g"), 0o2745, "setgid without group execute is not a privilege and stays")
        for m in a.members {
            var st = stat()
            XCTAssertEqual(lstat(m + "/data/w", &st), 0)
            XCTAssertEqual(st.st_mode & 0o7777, 0o755, "\(m) keeps the mode the array shows")
        }
        // A capability (cap_net_raw, permitted and effective) goes with any
        // write or truncate, root's included.
        let caps: [UInt8] = [0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00] + [UInt8](repeating: 0, count: 12)
        let name = "security.capability"
        for (file, change) in [("k", { try appendFile(a.path("k"), Data("root".utf8)) }),
                               ("w", { XCTAssertEqual(truncate(a.path("w"), 0), 0) })] as [(String, () throws -> Void)] {
            XCTAssertEqual(setxattr(a.path(file), name, caps, caps.count, 0), 0, "setxattr: errno \(errno)")
            XCTAssertEqual(getxattr(a.path(file), name, nil, 0), caps.count)
            try change()
            XCTAssertEqual(getxattr(a.path(file), name, nil, 0), -1, "\(file) lost its capability")
            XCTAssertEqual(errno, ENODATA)
            for m in a.members { XCTAssertEqual(getxattr(m + "/data/" + file, name, nil, 0), -1, "\(m): \(file)'s capability") }
        }
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
        try a.assertChecksClean()
        try a.mount([a.members[0], a.members[2], a.members[4]])
        XCTAssertEqual(try readFile(a.path("f")), data)
    }

    /// The last unlink of an open file takes its name away at once (the
    /// directory empties, other names' link counts drop), its data stays
    /// readable and writable through the handle with redundancy kept, the
    /// last close deletes it, and after a crash the next mount does.
    func testOpenUnlinkedFilesBehaveAsOnExt4AndAreReclaimedAfterACrash() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        let orphans = { (m: String) in (try? FileManager.default.contentsOfDirectory(atPath: m + "/data/.raidfs-orphans")) ?? [] }
        try writeFile(a.path("keep"), Data("k".utf8))
        XCTAssertEqual(mkdir(a.path("d"), 0o755), 0)
        let (fd, data) = createFilled(a.path("d/gone"), 200_000, seed: 41)
        XCTAssertEqual(link(a.path("d/gone"), a.path("other")), 0)
        XCTAssertEqual(unlink(a.path("d/gone")), 0)
        var st = stat()
        XCTAssertEqual(lstat(a.path("other"), &st), 0)
        XCTAssertEqual(st.st_nlink, 1, "the remaining name's link count")
        XCTAssertEqual(unlink(a.path("other")), 0)
        XCTAssertEqual(rmdir(a.path("d")), 0, "the directory is empty once its last file is unlinked")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: a.mountpoint), ["keep"])
        XCTAssertEqual(fstat(fd, &st), 0)
        XCTAssertEqual(st.st_nlink, 0)
        XCTAssertEqual(st.st_size, off_t(data.count))
        XCTAssertEqual(pwrite(fd, "tail", 4, off_t(data.count)), 4)
        var back = [UInt8](repeating: 0, count: data.count + 4)
        XCTAssertEqual(pread(fd, &back, back.count, 0), back.count)
        XCTAssertTrue(back == data + Array("tail".utf8), "the bytes read back through the handle differ")
        for m in a.members { XCTAssertEqual(orphans(m).count, 1, "\(m) keeps the open file in its orphan area") }
        // A second file, closed normally: the last close deletes it.
        let fd2 = open(a.path("brief"), O_CREAT | O_RDWR, 0o600)
        XCTAssertEqual(unlink(a.path("brief")), 0)
        XCTAssertEqual(close(fd2), 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: a.mountpoint), ["keep"])
        for m in a.members { XCTAssertEqual(orphans(m).count, 1, "\(m): the closed one is gone") }
        kill(a.daemon!.processIdentifier, SIGKILL)
        a.daemon!.waitUntilExit()
        close(fd)
        a.unmount()
        try a.mount()
        // The first operation waits for the daemon's init, which reclaims.
        XCTAssertEqual(try readFile(a.path("keep")), Data("k".utf8))
        for m in a.members { XCTAssertEqual(orphans(m), [], "\(m): the orphan is deleted at the next mount") }
        XCTAssertTrue(try a.ctl(["events", a.mountpoint]).stdout.contains("orphans-reclaimed"))
        a.unmount()
        try a.assertChecksClean()
    }

    /// An open-unlinked file lives in the orphan area, which the rebuild
    /// covers: after a member is replaced, losing another still leaves
    /// every byte readable through the handle.
    func testOpenUnlinkedFileStaysRedundantThroughARebuild() throws {
        let a = try ScratchArray(level: 5, members: 4)
        try a.mount()
        let (fd, data) = createFilled(a.path("f"), 1_000_000, seed: 42)
        defer { close(fd) }
        XCTAssertEqual(unlink(a.path("f")), 0)
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "1"]).status, 0)
        let spare = a.root + "/spare"
        try FileManager.default.createDirectory(atPath: spare, withIntermediateDirectories: true)
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spare]).status, 0)
        _ = try a.waitFor(state: "clean", seconds: 60)
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "2"]).status, 0)
        var back = [UInt8](repeating: 0, count: data.count)
        XCTAssertEqual(pread(fd, &back, back.count, 0), back.count, "errno \(errno)")
        XCTAssertTrue(back == data, "the bytes read back through the handle differ")
    }

    /// A path inside the mount may be as long as the kernel passes (PATH_MAX
    /// from the mount root), however deep the member directories are:
    /// members are reached relative to their data directory, walking long
    /// paths a few components at a time.
    func testPathsNearPathMaxWork() throws {
        let a = try ScratchArray(level: 6, members: 4)
        try a.mount()
        var root = open(a.mountpoint, O_RDONLY | O_DIRECTORY)
        XCTAssertGreaterThanOrEqual(root, 0)
        // 19 directories of 200 characters: relative paths just under 4096.
        var dirs: [String] = []
        for i in 0..<19 {
            let name = String(repeating: Character(UnicodeScalar(UInt8(ascii: "a") + UInt8(i))), count: 200)
            dirs.append(dirs.isEmpty ? name : dirs.last! + "/" + name)
            XCTAssertEqual(mkdirat(root, dirs.last!, 0o755), 0, "mkdir at depth \(i): errno \(errno)")
        }
        let file = dirs.last! + "/" + String(repeating: "f", count: 250)
        XCTAssertGreaterThan(file.utf8.count, 4000)
        let data = [UInt8](randomBytes(300_000, seed: 40))
        let fd = openat(root, file, O_CREAT | O_RDWR, 0o640)
        XCTAssertGreaterThanOrEqual(fd, 0, "create: errno \(errno)")
        XCTAssertEqual(pwrite(fd, data, data.count, 0), data.count)
        close(fd)
        var st = stat()
        XCTAssertEqual(fstatat(root, file, &st, AT_SYMLINK_NOFOLLOW), 0)
        XCTAssertEqual(st.st_size, 300_000)
        XCTAssertEqual(st.st_mode & 0o7777, 0o640)
        XCTAssertEqual(fchmodat(root, file, 0o600, 0), 0)
        let renamed = dirs.last! + "/g"
        XCTAssertEqual(renameat(root, file, root, renamed), 0, "rename: errno \(errno)")
        XCTAssertEqual(linkat(root, renamed, root, file, 0), 0, "link: errno \(errno)")
        XCTAssertEqual(symlinkat("g", root, dirs.last! + "/s"), 0)
        var buf = [UInt8](repeating: 0, count: data.count)
        let rfd = openat(root, file, O_RDONLY)
        XCTAssertEqual(pread(rfd, &buf, buf.count, 0), data.count)
        close(rfd)
        XCTAssertEqual(buf, data)
        // The deepest names exceed PATH_MAX from the member's own root, so
        // this is also what a rebuild and a check must reach.
        close(root)
        a.unmount()
        try a.assertChecksClean()
        try a.mount([a.members[1], a.members[3]])
        root = open(a.mountpoint, O_RDONLY | O_DIRECTORY)
        let dfd = openat(root, file, O_RDONLY)
        XCTAssertGreaterThanOrEqual(dfd, 0, "degraded open: errno \(errno)")
        XCTAssertEqual(pread(dfd, &buf, buf.count, 0), data.count)
        close(dfd)
        XCTAssertEqual(buf, data)
        XCTAssertEqual(unlinkat(root, dirs.last! + "/s", 0), 0)
        // Descriptors closed before the unmount (ARC may end `a` at its last
        // use, and a busy mount would only detach lazily).
        close(root)
        a.unmount()
    }

    /// Times behave as on the member filesystem: every write moves mtime
    /// even when its chunks and parity miss the member getattr reads; stat
    /// never moves atime; a read moves it as the host's atime policy would.
    func testWritesMoveMtimeAndOnlyReadsMoveAtime() throws {
        let a = try ScratchArray(level: 6, members: 6, chunk: "16K")
        try a.mount()
        try writeFile(a.path("f"), randomBytes(2 << 20, seed: 9))
        func times(_ p: String) -> (atime: timespec, mtime: timespec) {
            var st = stat()
            XCTAssertEqual(stat(p, &st), 0)
            return (st.st_atim, st.st_mtim)
        }
        func ns(_ t: timespec) -> Int { t.tv_sec * 1_000_000_000 + t.tv_nsec }
        let fd = open(a.path("f"), O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        // One 4 KiB write into each of 12 chunks: each stripe's write lands
        // on three of six members, often not the first.
        var last = ns(times(a.path("f")).mtime)
        for i in 0..<12 {
            usleep(20_000)
            XCTAssertEqual(pwrite(fd, "0123", 4, off_t(i * 16_384 + 100)), 4)
            let m = ns(times(a.path("f")).mtime)
            XCTAssertGreaterThan(m, last, "write \(i) moved mtime")
            last = m
        }
        // Times set by hand between two writes of one clock tick: the
        // second write still moves mtime to now.
        for _ in 0..<20 {
            XCTAssertEqual(pwrite(fd, "ab", 2, 0), 2)
            var future = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2), timespec(tv_sec: 1_950_000_000, tv_nsec: 0)]   // UTIME_OMIT
            XCTAssertEqual(futimens(fd, &future), 0)
            XCTAssertEqual(pwrite(fd, "cd", 2, 0), 2)
            XCTAssertLessThan(times(a.path("f")).mtime.tv_sec, 1_950_000_000, "a write after times were set moves mtime to now")
        }
        close(fd)
        // The host's policy, seen on a plain file beside the members.
        let plain = a.root + "/plain"
        try writeFile(plain, Data("x".utf8))
        var set = [timespec(tv_sec: 1_900_000_000, tv_nsec: 0), timespec(tv_sec: 1_950_000_000, tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, plain, &set, 0), 0)
        XCTAssertEqual(utimensat(AT_FDCWD, a.path("f"), &set, 0), 0)
        for _ in 0..<5 { XCTAssertEqual(times(a.path("f")).atime.tv_sec, 1_900_000_000, "stat does not move atime") }
        XCTAssertEqual(try readFile(plain).count, 1)
        XCTAssertEqual(try readFile(a.path("f")).count, 2 << 20)
        let hostMoved = times(plain).atime.tv_sec != 1_900_000_000
        XCTAssertEqual(times(a.path("f")).atime.tv_sec != 1_900_000_000, hostMoved,
                       "a read moves atime exactly when the host's policy does (host moved: \(hostMoved))")
        XCTAssertEqual(times(a.path("f")).mtime.tv_sec, 1_950_000_000, "a read leaves mtime alone")
    }
}

/// What make, rsync's quick check and backup tools rely on: every append,
/// every size change and every open with O_TRUNC moves mtime and ctime, on
/// files whose chunks land on any member (the member getattr reads holds
/// the size only in an attribute, which moves ctime alone); and a write
/// right after a stat moves mtime exactly when the host's does.
final class TimestampTests: XCTestCase {
    private func ns(_ t: timespec) -> Int { t.tv_sec * 1_000_000_000 + t.tv_nsec }

    private func times(_ p: String) -> (mtime: Int, ctime: Int) {
        var st = stat()
        XCTAssertEqual(stat(p, &st), 0, p)
        return (ns(st.st_mtim), ns(st.st_ctim))
    }

    private func checkChangesMoveTimes(level: Int, members: Int) throws {
        let a = try ScratchArray(level: level, members: members, chunk: "16K")
        try a.mount()
        // Files of different ids start their stripes on different members.
        for i in 0..<8 {
            let p = a.path("f\(i)")
            try writeFile(p, randomBytes(100 + i * 5_000, seed: UInt64(i + 1)))
            func changes(_ what: String, _ change: () -> Void) {
                let before = times(p)
                usleep(15_000)   // past the host clock's tick
                change()
                let after = times(p)
                XCTAssertGreaterThan(after.mtime, before.mtime, "RAID \(level) f\(i): \(what) moves mtime")
                XCTAssertGreaterThan(after.ctime, before.ctime, "RAID \(level) f\(i): \(what) moves ctime")
            }
            changes("an append") {
                let fd = open(p, O_WRONLY | O_APPEND)
                XCTAssertEqual(write(fd, "tail", 4), 4)
                close(fd)
            }
            changes("open(O_TRUNC) of a file with data") { close(open(p, O_WRONLY | O_TRUNC)) }
            changes("open(O_TRUNC) of an empty file") { close(open(p, O_WRONLY | O_TRUNC)) }
            changes("truncate(2) growing it") { XCTAssertEqual(truncate(p, 300_000), 0) }
            changes("ftruncate shrinking it") {
                let fd = open(p, O_WRONLY)
                XCTAssertEqual(ftruncate(fd, 1000), 0)
                close(fd)
            }
            changes("an extending write through an open handle") {
                let fd = open(p, O_WRONLY)
                XCTAssertEqual(pwrite(fd, "x", 1, 40_000), 1)
                close(fd)
            }
        }
        // Within one tick of the clock: a write after a stat. The member
        // filesystem's own answer (multigrain timestamps give a later one)
        // is what raidfs must give.
        let plain = a.root + "/plain"
        try writeFile(plain, Data("x".utf8))
        var hostMoved = 0, arrayMoved = 0
        let fdPlain = open(plain, O_WRONLY), fdArray = open(a.path("f0"), O_WRONLY)
        defer { close(fdPlain); close(fdArray) }
        for _ in 0..<20 {
            XCTAssertEqual(pwrite(fdPlain, "a", 1, 0), 1)
            XCTAssertEqual(pwrite(fdArray, "a", 1, 0), 1)
            let h0 = times(plain).mtime, a0 = times(a.path("f0")).mtime
            XCTAssertEqual(pwrite(fdPlain, "b", 1, 0), 1)
            XCTAssertEqual(pwrite(fdArray, "b", 1, 0), 1)
            if times(plain).mtime > h0 { hostMoved += 1 }
            if times(a.path("f0")).mtime > a0 { arrayMoved += 1 }
        }
        if hostMoved >= 18 {
            XCTAssertGreaterThanOrEqual(arrayMoved, 18, "a write after a stat moves mtime, as on the host (\(hostMoved) of 20)")
        }
    }

    func testRaid5ChangesMoveMtimeAndCtime() throws { try checkChangesMoveTimes(level: 5, members: 4) }

    func testRaid6ChangesMoveMtimeAndCtime() throws { try checkChangesMoveTimes(level: 6, members: 6) }
}

/// st_blocks, which du, cp --sparse and tar -S read to find holes: what
/// the file holds, not its size.
final class BlockCountTests: XCTestCase {
    private func blocks(_ p: String) -> Int {
        var st = stat()
        XCTAssertEqual(stat(p, &st), 0, p)
        return Int(st.st_blocks)
    }

    private func check(level: Int, members: Int) throws {
        let a = try ScratchArray(level: level, members: members)
        try a.mount()
        let sparse = a.path("sparse"), dense = a.path("dense"), small = a.path("small")
        let fd = open(sparse, O_CREAT | O_RDWR, 0o644)
        XCTAssertEqual(ftruncate(fd, 10 << 30), 0)
        var st = stat()
        XCTAssertEqual(fstat(fd, &st), 0)
        XCTAssertLessThanOrEqual(st.st_blocks, 64, "RAID \(level): a 10 GiB hole holds nothing")
        let mib = [UInt8](randomBytes(1 << 20, seed: 3))
        XCTAssertEqual(pwrite(fd, mib, mib.count, 5 << 30), mib.count)
        XCTAssertEqual(fstat(fd, &st), 0)
        let written = (1 << 20) / 512
        XCTAssertGreaterThanOrEqual(st.st_blocks, written * 9 / 10, "RAID \(level): 1 MiB written (open)")
        XCTAssertLessThanOrEqual(st.st_blocks, written * 3 / 2, "RAID \(level): 1 MiB written (open)")
        close(fd)
        try writeFile(dense, randomBytes(5_000_000, seed: 4))
        try writeFile(small, Data("tiny".utf8))
        for pass in ["mounted", "remounted"] {
            let b = blocks(sparse)
            XCTAssertGreaterThanOrEqual(b, written * 9 / 10, "RAID \(level) \(pass): 1 MiB written")
            XCTAssertLessThanOrEqual(b, written * 3 / 2, "RAID \(level) \(pass): 1 MiB written")
            XCTAssertEqual(blocks(dense), (5_000_000 + 4095) / 4096 * 8, "RAID \(level) \(pass): a dense file, its size in 4 KiB blocks")
            XCTAssertEqual(blocks(small), 8, "RAID \(level) \(pass): a 4-byte file, one block")
            let du = try runTool("/usr/bin/du", ["-k", sparse])
            let kib = Int(du.stdout.split(separator: "\t").first ?? "") ?? -1
            XCTAssertTrue((900...1600).contains(kib), "RAID \(level) \(pass): du of the sparse file says \(kib) KiB")
            a.unmount()
            if pass == "mounted" { try a.mount() }
        }
    }

    func testRaid5BlocksCountWrittenData() throws { try check(level: 5, members: 4) }

    func testRaid6BlocksCountWrittenData() throws { try check(level: 6, members: 6) }

    func testRaid1BlocksCountWrittenData() throws { try check(level: 1, members: 2) }
}

/// A directory removed while a descriptor is open on it (or it is a
/// process's working directory) answers fstat, fchmod, fchown, futimens
/// and readdir as ext4 does: its attributes with no link, changed by the
/// calls, and no entries.
final class RemovedDirectoryTests: XCTestCase {
    func testOpenRemovedDirectoryAnswersAsOnExt4() throws {
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        let plain = a.root + "/plain"
        for base in [a.mountpoint, plain] {
            let d = base + "/gone"
            XCTAssertEqual(mkdir(base, 0o755) == 0 || errno == EEXIST, true)
            XCTAssertEqual(mkdir(d, 0o750), 0, d)
            let fd = open(d, O_RDONLY | O_DIRECTORY)
            XCTAssertGreaterThanOrEqual(fd, 0)
            defer { close(fd) }
            XCTAssertEqual(rmdir(d), 0)
            var st = stat()
            XCTAssertEqual(fstat(fd, &st), 0, "\(base): fstat of a removed directory (errno \(errno))")
            XCTAssertEqual(st.st_nlink, 0, base)
            XCTAssertEqual(st.st_mode & S_IFMT, S_IFDIR, base)
            XCTAssertEqual(st.st_mode & 0o7777, 0o750, base)
            XCTAssertEqual(fchmod(fd, 0o700), 0, base)
            XCTAssertEqual(fchown(fd, 12345, 54321), 0, base)
            var times = [timespec(tv_sec: 1_000, tv_nsec: 0), timespec(tv_sec: 2_000, tv_nsec: 0)]
            XCTAssertEqual(futimens(fd, &times), 0, base)
            XCTAssertEqual(fstat(fd, &st), 0, base)
            XCTAssertEqual(st.st_mode & 0o7777, 0o700, base)
            XCTAssertEqual(st.st_uid, 12345, base)
            XCTAssertEqual(st.st_gid, 54321, base)
            XCTAssertEqual(st.st_mtim.tv_sec, 2_000, base)
            XCTAssertEqual(st.st_atim.tv_sec, 1_000, base)
            guard let dir = fdopendir(dup(fd)) else { XCTFail("\(base): fdopendir: errno \(errno)"); continue }
            var names: [String] = []
            while let e = readdir(dir) {
                names.append(withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) })
            }
            closedir(dir)
            XCTAssertEqual(names, [], "\(base): a removed directory lists nothing")
        }
        // A symlink removed while an O_PATH descriptor holds it stays that
        // symlink, whatever later takes its member inode number (the
        // member's filesystem reuses it).
        for i in 0..<20 {
            let link = a.path("link\(i)")
            XCTAssertEqual(symlink("a", link), 0)
            let held = open(link, RAIDFS_O_PATH | O_NOFOLLOW)
            XCTAssertGreaterThanOrEqual(held, 0)
            XCTAssertEqual(unlink(link), 0)
            XCTAssertEqual(symlink(String(repeating: "b", count: 100), a.path("new\(i)")), 0)
            var st = stat()
            XCTAssertEqual(fstat(held, &st), 0)
            XCTAssertEqual(st.st_size, 1, "round \(i): the removed symlink, not a new one")
            XCTAssertEqual(st.st_nlink, 0, "round \(i)")
            close(held)
        }
        // A name made again is another directory.
        XCTAssertEqual(mkdir(a.path("gone"), 0o755), 0)
        var st = stat()
        XCTAssertEqual(stat(a.path("gone"), &st), 0)
        XCTAssertEqual(st.st_nlink, 2)
        XCTAssertEqual(st.st_mode & 0o7777, 0o755)
    }
}

/// A set-group-ID directory gives new entries its group, and new
/// directories its set-group-ID bit, as on the host (the creator's group
/// otherwise).
final class SetgidDirectoryTests: XCTestCase {
    func testSetgidDirectoryGivesNewEntriesItsGroup() throws {
        guard geteuid() == 0 else { throw XCTSkip("chown to another group needs root") }
        let a = try ScratchArray(level: 5, members: 3)
        try a.mount()
        let plain = a.root + "/plain"
        for base in [a.mountpoint, plain] {
            XCTAssertEqual(mkdir(base, 0o755) == 0 || errno == EEXIST, true)
            let d = base + "/shared"
            XCTAssertEqual(mkdir(d, 0o775), 0)
            XCTAssertEqual(chown(d, 0, 4242), 0)
            XCTAssertEqual(chmod(d, 0o2775), 0)
            close(open(d + "/file", O_CREAT | O_WRONLY, 0o644))
            XCTAssertEqual(mkdir(d + "/sub", 0o755), 0)
            XCTAssertEqual(symlink("file", d + "/link"), 0)
            XCTAssertEqual(mkdir(base + "/other", 0o755), 0)
            close(open(base + "/other/file", O_CREAT | O_WRONLY, 0o644))
            var st = stat()
            for (p, group) in [("/shared/file", 4242), ("/shared/sub", 4242), ("/shared/link", 4242), ("/other/file", 0)] {
                XCTAssertEqual(lstat(base + p, &st), 0, base + p)
                XCTAssertEqual(st.st_gid, gid_t(group), "\(base)\(p): group")
            }
            XCTAssertEqual(stat(d + "/sub", &st), 0)
            XCTAssertEqual(st.st_mode & S_ISGID, S_ISGID, "\(base): a new directory in a set-group-ID one is set-group-ID")
        }
        a.unmount()
        try a.mount()
        var st = stat()
        XCTAssertEqual(stat(a.path("shared/file"), &st), 0)
        XCTAssertEqual(st.st_gid, 4242, "after a remount")
    }
}

/// A mounted array other users may use (allow_other, a sticky world-
/// writable root), for tests that act as `nobody` (skipped unless root
/// with setpriv).
private func arrayForAnotherUser(level: Int, members: Int) throws -> ScratchArray {
    guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
        throw XCTSkip("needs root and setpriv to act as another user")
    }
    let a = try ScratchArray(level: level, members: members)
    try a.mount(options: ["allow_other"])
    XCTAssertEqual(chmod(a.mountpoint, 0o1777), 0)
    return a
}

/// Runs `args` as user and group 65534 (nobody), with no other groups.
private func asNobody(_ args: [String]) throws -> RunResult {
    try runTool("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups"] + args)
}
