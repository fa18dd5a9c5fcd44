import Foundation
import XCTest
@testable import RAIDCore

final class AssemblyTests: XCTestCase {
    /// Superblock writes to one member from two threads at once (a spare's
    /// probe and a persist did this) each succeed, and the member is left
    /// with one of them whole: they share a temporary name, so they must
    /// not overlap.
    func testConcurrentSuperblockWritesStayWhole() throws {
        let tmp = TempDir()
        let member = DirectoryMember(root: tmp.make("m"))
        let versions = [[UInt8](repeating: 0xA1, count: 3000), [UInt8](repeating: 0xB2, count: 5000)]
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 2) { t in
            for _ in 0..<300 {
                do { try member.writeSuperblock(versions[t]) } catch { failures.add("\(error)") }
            }
        }
        XCTAssertEqual(Set(failures.all), [])
        XCTAssertTrue(versions.contains(try member.readSuperblock()), "the superblock is one write, whole")
    }

    func snapshot(_ dirs: [String]) -> [String: Data] {
        var out: [String: Data] = [:]
        for d in dirs {
            for f in (try? FileManager.default.subpathsOfDirectory(atPath: d)) ?? [] {
                out[d + "/" + f] = FileManager.default.contents(atPath: d + "/" + f) ?? Data()
            }
        }
        return out
    }

    func testCreateRefusesBadInputAndWritesNothing() throws {
        let tmp = TempDir()
        let dirs = (0..<4).map { tmp.make("d\($0)") }
        func refuses(_ level: RAIDLevel, _ chunk: Int, _ ds: [String], _ fragment: String) {
            let before = snapshot(dirs)
            XCTAssertThrowsError(try ArrayCreator.create(level: level, chunkSizeBytes: chunk, directories: ds)) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(e) should mention \(fragment)")
            }
            XCTAssertEqual(snapshot(dirs), before, "a refused create changed the disk")
        }
        refuses(.raid6, 65536, Array(dirs[0..<3]), "at least 4")
        refuses(.raid5, 65536, Array(dirs[0..<2]), "at least 3")
        refuses(.raid1, 65536, [dirs[0]], "at least 2")
        refuses(.raid5, 3000, Array(dirs[0..<3]), "power of two")
        refuses(.raid5, 65536, [dirs[0], dirs[1], dirs[0]], "named twice")
        refuses(.raid5, 65536, [dirs[0], dirs[1], tmp.path + "/nope"], "nope")
        FileManager.default.createFile(atPath: dirs[3] + "/junk", contents: Data("x".utf8))
        refuses(.raid5, 65536, [dirs[0], dirs[1], dirs[3]], "not empty")
        _ = try ArrayCreator.create(level: .raid1, chunkSizeBytes: 65536, directories: [dirs[0], dirs[1]])
        refuses(.raid5, 65536, [dirs[0], dirs[2], tmp.make("d9")], "already a member")
    }

    /// A member on a filesystem without user extended attributes (ramfs
    /// here): the array keeps file headers in the member files instead,
    /// and works the same; an array that keeps them in attributes refuses
    /// such a directory as a spare, in one line, writing nothing.
    func testAMemberWithoutUserAttributesPutsMetadataInTheFiles() throws {
        let tmp = TempDir()
        let ram = tmp.make("ram")
        guard mount("ramfs", ram, "ramfs", 0, nil) == 0 else {
            throw XCTSkip("cannot mount ramfs here (\(String(cString: strerror(errno))))")
        }
        defer { umount2(ram, 2 /* MNT_DETACH */) }
        for d in ["m0", "spare"] { XCTAssertEqual(mkdir(ram + "/" + d, 0o755), 0) }
        let dirs = [tmp.make("d0"), tmp.make("d1"), ram + "/m0"]
        let sb = try ArrayCreator.create(level: .raid5, chunkSizeBytes: 65536, directories: dirs)
        XCTAssertEqual(sb.metadata, .file)
        let (array, _) = try RAIDArray.assemble(directories: dirs, logger: quietLogger)
        try array.markInUse()
        XCTAssertTrue(array.layout.metadataInFile)
        var rng = SeededBytes(seed: 4)
        var files: [String: [UInt8]] = [:]
        for size in [0, 1, 5000, 40_000, 300_000] {
            let data = rng.bytes(size)
            let f = try array.create("/f\(size)", mode: 0o644, exclusive: true, caller: root)
            try f.write(data, at: 0)
            array.release(f)
            files["/f\(size)"] = data
        }
        let one = try (0..<3).map { r -> Int in
            var st = stat()
            XCTAssertEqual(stat(dirs[r] + "/data/f1", &st), 0)
            return Int(st.st_size)
        }
        XCTAssertEqual(one.sorted(), [56, 8192, 8192], "the header alone, or it and one 4 KiB chunk after the first 4 KiB")
        try array.truncate("/f300000", size: 9000)
        files["/f300000"] = Array(files["/f300000"]![0..<9000])
        for (path, data) in files {
            let f = try array.open(path)
            XCTAssertTrue(try f.readAll() == data, path)
            array.release(f)
        }
        XCTAssertEqual(try array.checkAll(mode: .check) { XCTFail("\($0)") }.problems, 0)
        array.shutdown()

        let plain = (0..<3).map { tmp.make("p\($0)") }
        _ = try ArrayCreator.create(level: .raid5, chunkSizeBytes: 65536, directories: plain)
        let (b, _) = try RAIDArray.assemble(directories: plain, logger: quietLogger)
        try b.markInUse()
        defer { b.shutdown() }
        XCTAssertThrowsError(try b.addSpare(directory: ram + "/spare")) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains(ram + "/spare") && s.contains("extended attributes") && !s.contains("\n"), s)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: ram + "/spare"), [], "a refused spare is left as it was")
    }

    func testMembersOfDifferentArraysAreRefused() throws {
        let tmp = TempDir()
        let a = (0..<3).map { tmp.make("a\($0)") }
        let b = (0..<3).map { tmp.make("b\($0)") }
        _ = try ArrayCreator.create(level: .raid5, chunkSizeBytes: 4096, directories: a)
        _ = try ArrayCreator.create(level: .raid5, chunkSizeBytes: 4096, directories: b)
        let before = snapshot(a + b)
        XCTAssertThrowsError(try RAIDArray.assemble(directories: [a[0], a[1], b[2]], logger: quietLogger)) { e in
            XCTAssertTrue("\(e)".contains("different arrays"), "\(e)")
            XCTAssertTrue("\(e)".contains(b[2]), "\(e)")
        }
        XCTAssertEqual(snapshot(a + b), before)
    }

    func testTooFewMembersIsRefusedNamingThem() throws {
        let tmp = TempDir()
        let d = (0..<4).map { tmp.make("d\($0)") }
        _ = try ArrayCreator.create(level: .raid6, chunkSizeBytes: 4096, directories: d)
        let before = snapshot(d)
        XCTAssertThrowsError(try RAIDArray.assemble(directories: [d[0]], logger: quietLogger)) { e in
            XCTAssertTrue("\(e)".contains("needs at least 2 of 4"), "\(e)")
        }
        XCTAssertEqual(snapshot(d), before)
        let (ok, report) = try RAIDArray.assemble(directories: [d[3], d[1]], logger: quietLogger)
        XCTAssertEqual(ok.state, .degraded)
        XCTAssertEqual(report.missingRoles, [0, 2])
    }

    func testStaleAndDamagedMembersAreLeftOutAndReported() throws {
        let tmp = TempDir()
        let d = (0..<4).map { tmp.make("d\($0)") }
        _ = try ArrayCreator.create(level: .raid6, chunkSizeBytes: 4096, directories: d)
        // Assemble without d3: the others move on to a later event.
        let (a, _) = try RAIDArray.assemble(directories: Array(d[0..<3]), logger: quietLogger)
        try a.markInUse()
        a.shutdown()
        // Damage d1's superblock.
        let sbPath = d[1] + "/raidfs.sb"
        var bytes = [UInt8](FileManager.default.contents(atPath: sbPath)!)
        bytes[bytes.count - 3] ^= 0x40
        FileManager.default.createFile(atPath: sbPath, contents: Data(bytes))
        let (b, report) = try RAIDArray.assemble(directories: d, logger: quietLogger)
        let reasons = Dictionary(uniqueKeysWithValues: report.leftOut.map { ($0.directory, $0.reason) })
        XCTAssertTrue(reasons[d[3]]?.contains("stale") ?? false, "\(reasons)")
        XCTAssertTrue(reasons[d[1]]?.contains("checksum") ?? false, "\(reasons)")
        XCTAssertEqual(b.activeRoles, [0, 2])
        XCTAssertEqual(b.state, .degraded)
    }

    /// A future version is refused by number; formats 1 and 2 (never
    /// released) with what to do, in one line.
    func testOtherFormatVersionsAreRefusedClearly() throws {
        let tmp = TempDir()
        let d = (0..<3).map { tmp.make("d\($0)") }
        _ = try ArrayCreator.create(level: .raid5, chunkSizeBytes: 4096, directories: d)
        for (version, says) in [(UInt8(9), "not supported"), (1, "raidctl create"), (2, "raidctl create")] {
            var bytes = [UInt8](FileManager.default.contents(atPath: d[0] + "/raidfs.sb")!)
            bytes[8] = version
            XCTAssertThrowsError(try Superblock.decode(bytes, source: d[0])) { e in
                let s = "\(e)"
                XCTAssertTrue(s.contains("format version \(version)") && s.contains(says) && !s.contains("\n"), s)
            }
        }
    }

    func testRuntimeFailureMovesEventCounterSoMemberComesBackStale() throws {
        let tmp = TempDir()
        let (array, dirs) = try makeArray(tmp, level: .raid5, members: 3)
        let e0 = array.events
        array.memberFailed(role: 2, reason: "test")
        XCTAssertEqual(array.state, .degraded)
        XCTAssertGreaterThan(array.events, e0)
        array.shutdown()
        let (again, report) = try RAIDArray.assemble(directories: dirs, logger: quietLogger)
        XCTAssertEqual(again.activeRoles, [0, 1])
        XCTAssertEqual(report.leftOut.first?.directory, absolutePath(dirs[2]))
    }

    /// The rebuild checkpoint compares paths component by component, so the
    /// walk must visit a directory's contents before its next sibling.
    func testWalkVisitsInComponentOrder() throws {
        let tmp = TempDir()
        let (array, _) = try makeArray(tmp, level: .raid5, members: 3)
        for d in ["/d", "/d/x", "/b"] { try array.mkdir(d, mode: 0o755, caller: root) }
        for f in ["/e", "/a", "/d/x/y", "/d/z", "/b/c"] {
            array.release(try array.create(f, mode: 0o644, exclusive: true, caller: root))
        }
        var seen: [String] = []
        try array.walk { path, _ in seen.append(path); return true }
        XCTAssertEqual(seen, ["/a", "/b", "/b/c", "/d", "/d/x", "/d/x/y", "/d/z", "/e"])
        let components = seen.map { $0.split(separator: "/").map(String.init) }
        XCTAssertEqual(components, components.sorted { $0.lexicographicallyPrecedes($1) })
    }
}
