import Foundation
import XCTest
@testable import RAIDCore
import RAIDSimulation

extension RAIDArray {
    /// Fails `role` and adds a simulated spare, which takes it; the
    /// rebuild is launched, to be stepped.
    func spareTakes(_ role: Int) throws -> SimulatedMember {
        _ = try failByAdministrator(role, force: false)
        let spare = SimulatedMember(name: "spare")
        _ = try addSpare(member: spare, note: "test spare")
        return spare
    }
}

/// Namespace changes made while a member is being rebuilt, on simulated
/// members with the rebuild stepped by hand: the member being rebuilt holds
/// only part of the tree, and a change must not leave it disagreeing with
/// the others in a way the rebuild does not come back to.
final class RebuildNamespaceTests: XCTestCase {
    /// RAID 1 of three, role 2 failed and a spare taking it: the rebuild is
    /// launched, not yet stepped, so the spare holds only what was made
    /// since.
    func rebuilding() throws -> (RAIDArray, [SimulatedMember], SimulatedMember, SimulatedEnvironment) {
        let env = SimulatedEnvironment(seed: 5)
        let members = (0..<3).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: .raid1, chunkSizeBytes: 4096, members: members, environment: env)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger, environment: env)
        try array.markInUse()
        for i in 0..<4 {
            let f = try array.create("/old\(i)", mode: 0o644, exclusive: true, caller: root)
            try f.write(SeededBytes(seed: UInt64(i + 1)).bytesOnce(20_000), at: 0)
            array.release(f)
        }
        let spare = try array.spareTakes(2)
        XCTAssertEqual(array.roleState(2), .rebuilding)
        XCTAssertFalse(env.jobs.pending.isEmpty, "the rebuild is launched and waits to be stepped")
        return (array, members, spare, env)
    }

    /// Renaming one name of a file onto another name of the same file does
    /// nothing (POSIX). The member being rebuilt holds the source name but
    /// not yet the target's: had the rename reached it, it would have moved
    /// the source there while the other members kept both names.
    func testRenameOntoAnotherNameOfTheSameFileChangesNoMember() throws {
        let (array, members, spare, env) = try rebuilding()
        let f = try array.create("/a", mode: 0o644, exclusive: true, caller: root)
        try f.write(SeededBytes(seed: 9).bytesOnce(10_000), at: 0)
        array.release(f)
        try array.link("/a", "/b")
        // The spare has not got /b yet (as when the link was made before it
        // held /a, and the walk has not come to /b).
        try spare.unlink("/b")
        try array.rename("/a", "/b", flags: 0)
        for m in members.prefix(2) + [spare] {   // sim2 is the failed member
            XCTAssertNoThrow(try m.lstat("/a"), "\(m.name) lost /a")
        }
        XCTAssertEqual(try array.getattr("/a").st_nlink, 2)
        XCTAssertThrowsError(try array.rename("/a", "/b", flags: 1)) { e in
            XCTAssertEqual((e as? FSError)?.errno, EEXIST, "RENAME_NOREPLACE onto another name of the file: \(e)")
        }
        env.jobs.runUntilIdle()
        XCTAssertEqual(array.roleState(2), .active)
        XCTAssertEqual(try spare.lstat("/a").st_ino, try spare.lstat("/b").st_ino, "the rebuild settles /b on the file's inode")
        let summary = try array.checkAll(mode: .check) { XCTFail("after the rebuild: \($0)") }
        XCTAssertEqual(summary.problems, 0)
    }
}

extension RebuildNamespaceTests {
    /// A file the rebuild did under its one name, then linked into a
    /// directory the walk has not reached on the target: meeting the new
    /// name the walk links it to the file's inode there, not a copy; and a
    /// file opened on another inode of the target than the one the walk
    /// finished is done again, for a replacement as for a spare. The
    /// simulation's RAID 5 seed 92 (a replacement, step 39,694) found
    /// both: the walk copied the file apart, a write through the first
    /// name missed the copy, the name went, and the copy stayed stale.
    func testALinkIntoADirectoryTheWalkHasNotReachedStaysOneFile() throws {
        for replacing in [false, true] {
            let env = SimulatedEnvironment(seed: 7)
            let members = (0..<3).map { SimulatedMember(name: "sim\($0)") }
            _ = try ArrayCreator.initialize(level: .raid1, chunkSizeBytes: 4096, members: members, environment: env)
            let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger, environment: env)
            try array.markInUse()
            try array.mkdir("/a", mode: 0o755, caller: root)
            try array.mkdir("/z", mode: 0o755, caller: root)
            for name in ["/a/f"] + (0..<6).map({ "/m\($0)" }) + ["/z/keep"] + (0..<3).map({ "/z/n\($0)" }) {
                let f = try array.create(name, mode: 0o644, exclusive: true, caller: root)
                try f.write(SeededBytes(seed: UInt64(name.count)).bytesOnce(9000), at: 0)
                array.release(f)
            }
            let target: SimulatedMember
            if replacing {
                target = SimulatedMember(name: "target")
                try array.replace(role: 2, with: target)
            } else {
                target = try array.spareTakes(2)
            }
            // Step the walk past /a/f, short of /z.
            while (try? target.lstat("/m2")) == nil { XCTAssertTrue(env.jobs.step(), "the walk reaches /m2") }
            XCTAssertThrowsError(try target.lstat("/z"), "the walk has not made /z yet")
            try array.link("/a/f", "/z/l")
            // The walk meets /z/l and finishes it: it has gone on to /z/n0.
            while (try? target.lstat("/z/n0")) == nil { XCTAssertTrue(env.jobs.step(), "the walk reaches /z/n0") }
            let what = replacing ? "replacement" : "rebuild"
            XCTAssertEqual(try target.lstat("/a/f").st_ino, try target.lstat("/z/l").st_ino, "\(what): /z/l is linked, not copied")
            // A write through the first name, which then goes; the walk's
            // next pass finds only /z/l.
            let f = try array.open("/a/f")
            let data = SeededBytes(seed: 99).bytesOnce(9000)
            try f.write(data, at: 0)
            array.release(f)
            try array.unlink("/a/f")
            env.jobs.runUntilIdle()
            XCTAssertEqual(array.roleState(2), .active, "\(what) finished")
            // Only the target's copy is read.
            _ = try array.failByAdministrator(0, force: false)
            _ = try array.failByAdministrator(1, force: true)
            let g = try array.open("/z/l")
            XCTAssertTrue(try g.readAll() == data, "\(what): /z/l on the target holds the last write")
            array.release(g)
        }
    }
}

/// Sectors a rebuild could not rebuild are poisoned on its target: lost,
/// read as EIO. A crash resync over them must leave them so — not keep
/// what the member holds there (zeros) as data, as it keeps a torn write —
/// and the array must still mount.
final class PoisonedResyncTests: XCTestCase {
    func testCrashResyncLeavesPoisonedChunksLostAndMounts() throws {
        let members = (0..<4).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: .raid5, chunkSizeBytes: 4096, members: members)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
        try array.markInUse()
        let data = SeededBytes(seed: 3).bytesOnce(30_000)   // stripes 0, 1 and 2 (12 KiB each), the last short
        let f = try array.create("/f", mode: 0o644, exclusive: true, caller: root)
        try f.write(data, at: 0)
        try f.sync(dataOnly: false)
        // Two chunks of stripes 0 and 2 lost, as two rebuilds that met
        // them beyond redundancy leave them.
        for m in members.prefix(2) {
            let mf = try m.open("/f", flags: O_RDWR, mode: 0)
            let owner = try XCTUnwrap(array.layout.readAttribute(mf).header)
            try array.layout.poison(mf, stripe: 0, owner: owner)
            try array.layout.poison(mf, stripe: 2, owner: owner)
            mf.close()
        }
        // Killed inside a write to stripe 1: the intent log still names the
        // file's region.
        try f.write([UInt8](repeating: 7, count: 100), at: 12_288 + 50)
        let (again, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
        XCTAssertTrue(again.needsResync, "the write left its region in the intent log")
        try again.markInUse()   // the resync: must not refuse the array for a lost stripe
        let g = try again.open("/f")
        defer { again.release(g) }
        var buf = [UInt8](repeating: 0, count: 12_288)
        // Stripe 0 lies wholly inside the file: two of its chunks lost is
        // more than RAID 5 can rebuild.
        XCTAssertThrowsError(try buf.withUnsafeMutableBytes { try g.read(into: $0.baseAddress!, count: 12_288, at: 0) },
                             "stripe 0 is lost on two members: EIO, not what they hold") { e in
            XCTAssertEqual((e as? FSError)?.errno, EIO)
        }
        // Stripe 2, the short last one: right or EIO, never other bytes.
        do {
            let n = try buf.withUnsafeMutableBytes { try g.read(into: $0.baseAddress!, count: 12_288, at: 24_576) }
            XCTAssertEqual(Array(buf[0..<n]), Array(data[24_576...]), "stripe 2")
        } catch let e as FSError {
            XCTAssertEqual(e.errno, EIO, "\(e)")
        }
        var want = Array(data[12_288..<24_576])
        want.replaceSubrange(50..<150, with: [UInt8](repeating: 7, count: 100))
        let n = try buf.withUnsafeMutableBytes { try g.read(into: $0.baseAddress!, count: 12_288, at: 12_288) }
        XCTAssertEqual(n, 12_288)
        XCTAssertEqual(buf, want, "stripe 1 as written")
    }
}

/// A file whose header no active member can read (every copy failing at
/// once, beyond redundancy) is lost for as long as that lasts, and no
/// longer: nothing may cut its data to fit a header made up meanwhile, and
/// the member that lacks it must not be failed for lacking it.
final class UnreadableHeaderTests: XCTestCase {
    let data = SeededBytes(seed: 11).bytesOnce(20_000)

    /// RAID 1 of three holding `path` as `fill` leaves it, synced (/f
    /// holding `data` by default).
    func mirrored(_ path: String = "/f", configuration: ArrayConfiguration = ArrayConfiguration(),
                  _ fill: ((ArrayFile) throws -> Void)? = nil) throws -> (RAIDArray, [SimulatedMember], SimulatedEnvironment) {
        let env = SimulatedEnvironment(seed: 6)
        let members = (0..<3).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: .raid1, chunkSizeBytes: 4096, members: members, environment: env)
        let (array, _) = try RAIDArray.assemble(members: members, configuration: configuration, logger: quietLogger, environment: env)
        try array.markInUse()
        let f = try array.create(path, mode: 0o644, exclusive: true, caller: root)
        try fill.map { try $0(f) } ?? f.write(data, at: 0)
        try f.sync(dataOnly: false)
        array.release(f)
        return (array, members, env)
    }

    /// Rot on `m`'s disk in the header of `path` (its file id, in the
    /// member file's attribute), synced.
    func rotHeader(_ m: Member, _ path: String) throws {
        let mf = try m.open(path, flags: O_RDWR, mode: 0)
        defer { mf.close() }
        var value = [UInt8](repeating: 0, count: FileAttribute.encodedBytes)
        XCTAssertEqual(try value.withUnsafeMutableBytes { try mf.readAttribute(into: $0.baseAddress!, capacity: $0.count) }, value.count)
        for i in 4..<12 { value[i] = 0xA5 }
        try value.withUnsafeBytes { try mf.writeAttribute(from: $0.baseAddress!, count: $0.count) }
        try mf.sync(dataOnly: false)
    }

    func unreadable(_ array: RAIDArray, roles: [Int]) throws {
        for r in roles { _ = try array.injectFault(String(r), InjectedFault(kind: .bitrot, rate: 1)) }
    }

    func assertWhole(_ array: RAIDArray, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let f = try array.open("/f")
        defer { array.release(f) }
        var buf = [UInt8](repeating: 0, count: data.count + 1)
        let n = try buf.withUnsafeMutableBytes { try f.read(into: $0.baseAddress!, count: $0.count, at: 0) }
        XCTAssertTrue(Array(buf[0..<n]) == data, "\(what): read \(n) bytes, not the \(data.count) written", file: file, line: line)
        _ = try array.checkAll(mode: .repair) { _ in }
        let summary = try array.checkAll(mode: .check) { XCTFail("\(what), after a repair: \($0)", file: file, line: line) }
        XCTAssertEqual(summary.problems, 0, what, file: file, line: line)
    }

    /// A file with no data on its members (truncated up, never written)
    /// whose header will not read anywhere: the rebuild's copy of it is
    /// still damage after a crash — EIO, not a create cut short finished as
    /// an empty file (the simulation's RAID 1 seed 8 of 20,000 beyond
    /// redundancy read such a synced file back empty).
    func testDamagedCopyOfAFileWithNoDataStaysDamagedAfterACrash() throws {
        let (array, members, env) = try mirrored("/s") { try $0.truncate(to: 47_591) }
        XCTAssertEqual(try members[1].lstat("/s").st_size, 0, "no data on the members: a header alone, in the attribute")
        // The spare takes role 0 while no other header of /s reads.
        let spare = try array.spareTakes(0)
        try unreadable(array, roles: [1, 2])
        env.jobs.runUntilIdle()
        XCTAssertEqual(array.roleState(0), .active, "the rebuild finished")
        array.release(try array.create("/t", mode: 0o644, exclusive: true, caller: root))   // the intent log names /
        _ = try array.failByAdministrator(2, force: true)
        // Member 1's header stays unreadable for good (rot on its disk).
        try rotHeader(members[1], "/s")
        // A crash: no shutdown. The spare, now the first member, is the
        // authority the crash recovery brings member 1 in line with.
        let (again, _) = try RAIDArray.assemble(members: [spare, members[1]], logger: quietLogger, environment: env)
        XCTAssertEqual(again.recovery.pendingNamespace, ["/"], "the crash recovery compares /")
        try again.markInUse()
        XCTAssertThrowsError(try again.open("/s"), "/s is lost beyond redundancy") { e in
            XCTAssertEqual((e as? FSError)?.errno, EIO, "\(e)")
        }
    }

    /// Every member's header of /f rots while its data is whole: after a
    /// crash the recovery leaves /f as it is (EIO), never finishes it as an
    /// empty file, which would throw its data away.
    func testRottedHeadersAreNotTakenForACreateCutShort() throws {
        let (array, members, env) = try mirrored()
        array.release(try array.create("/t", mode: 0o644, exclusive: true, caller: root))   // the intent log names /
        for m in members { try rotHeader(m, "/f") }
        let sizes = try members.map { try $0.lstat("/f").st_size }
        let (again, _) = try RAIDArray.assemble(members: members, logger: quietLogger, environment: env)
        XCTAssertTrue(again.needsResync)
        try again.markInUse()
        XCTAssertThrowsError(try again.open("/f"), "no header of /f reads") { e in
            XCTAssertEqual((e as? FSError)?.errno, EIO, "\(e)")
        }
        XCTAssertEqual(try members.map { try $0.lstat("/f").st_size }, sizes, "every member keeps /f's data")
    }

    /// A member lacking /f while the others' headers of it will not read:
    /// the repair gives it a damaged copy and leaves the others' as they are.
    func testDivergenceRepairLeavesAFileWhoseHeaderWillNotRead() throws {
        let (array, members, _) = try mirrored()
        try members[2].unlink("/f")
        try unreadable(array, roles: [0, 1])
        XCTAssertThrowsError(try array.open("/f"), "no header of /f reads") { e in
            XCTAssertEqual((e as? FSError)?.errno, EIO, "\(e)")
        }
        XCTAssertEqual(array.roleState(2), .active, "the member lacking /f was given it, not failed")
        _ = try array.clearFaults(nil)
        try assertWhole(array, "/f once its headers read again")
    }

    /// A rebuild that meets /f with no header readable gives the target its
    /// name all the same, so the target agrees with the others and is kept.
    func testRebuildGivesAFileWhoseHeaderWillNotReadItsName() throws {
        let (array, _, env) = try mirrored()
        let spare = try array.spareTakes(2)
        try unreadable(array, roles: [0, 1])
        env.jobs.runUntilIdle()
        XCTAssertEqual(array.roleState(2), .active, "the rebuild finished")
        XCTAssertNoThrow(try spare.lstat("/f"), "the target has the name")
        XCTAssertThrowsError(try array.open("/f"), "no header of /f reads")
        XCTAssertEqual(array.roleState(2), .active, "the target agrees with the others: nothing to repair or fail")
        _ = try array.clearFaults(nil)
        try assertWhole(array, "/f once its headers read again")
    }

    /// Two names of one file: the rebuild meets the first while its header
    /// reads and the second once it no longer does. The target must hold
    /// one file under both names, as the others do, not a damaged copy
    /// beside it: a truncate through one name would miss the other there.
    func testRebuildKeepsTheNamesOfAFileWhoseHeaderStopsReadingAsOneFile() throws {
        var configuration = ArrayConfiguration()
        configuration.maxReadErrorsPerHour = 0   // the sources stay, however often they fail
        let (array, _, env) = try mirrored(configuration: configuration)
        let a = try array.create("/a", mode: 0o644, exclusive: true, caller: root)
        try a.write(SeededBytes(seed: 12).bytesOnce(100_000), at: 0)   // 25 stripes: two batches
        try a.sync(dataOnly: false)
        array.release(a)
        try array.link("/a", "/z")
        let spare = try array.spareTakes(2)
        // Stepped to the end of /a's first batch.
        var steps = 0
        while (try? spare.lstat("/a")) == nil && env.jobs.step() { steps += 1 }
        XCTAssertNoThrow(try spare.lstat("/a"), "the walk is inside /a after \(steps) steps")
        try unreadable(array, roles: [0, 1])
        env.jobs.runUntilIdle()
        XCTAssertEqual(try spare.lstat("/a").st_ino, try spare.lstat("/z").st_ino, "/a and /z are one file on the target")
    }

    /// The same in a namespace repair: a member lacking both names of a
    /// file whose header will not read gets one damaged file, linked.
    func testDivergenceRepairKeepsTheNamesOfAFileWhoseHeaderWillNotReadAsOneFile() throws {
        let (array, members, _) = try mirrored()
        try array.link("/f", "/g")
        try members[2].unlink("/f")
        try members[2].unlink("/g")
        try unreadable(array, roles: [0, 1])
        XCTAssertThrowsError(try array.open("/f"), "no header of /f reads")
        XCTAssertEqual(array.roleState(2), .active, "the member lacking /f was given it, not failed")
        XCTAssertEqual(try members[2].lstat("/f").st_ino, try members[2].lstat("/g").st_ino, "/f and /g are one file there")
        _ = try array.clearFaults(nil)
        try assertWhole(array, "/f once its headers read again")
    }
}
