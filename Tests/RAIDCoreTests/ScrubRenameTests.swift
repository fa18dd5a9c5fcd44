import Foundation
import XCTest
import RAIDSimulation
@testable import RAIDCore

/// A scrub walks the tree by name: a file renamed from ahead of its walk to
/// a name behind it would escape a "complete" scrub. It is scrubbed after
/// the walk (found by tools/simulate --combined on: RAID 5 seed 16).
final class ScrubRenameTests: XCTestCase {
    /// RAID 5 of four simulated members: /b (small), /m (many stripes, so
    /// that a scrub's first step stops inside it) and /z after them,
    /// rotted on member 1.
    private func arrayWithRotInZ() throws -> (RAIDArray, [SimulatedMember], SimulatedEnvironment) {
        let env = SimulatedEnvironment(seed: 11)
        let members = (0..<4).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: .raid5, chunkSizeBytes: 4096, members: members, environment: env)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger, environment: env)
        try array.markInUse()
        let small = try array.create("/b", mode: 0o644, exclusive: true, caller: root)
        try small.write(SeededBytes(seed: 3).bytesOnce(100), at: 0)
        array.release(small)
        let m = try array.create("/m", mode: 0o644, exclusive: true, caller: root)
        try m.write(SeededBytes(seed: 1).bytesOnce(400_000), at: 0)
        array.release(m)
        let z = try array.create("/z", mode: 0o644, exclusive: true, caller: root)
        try z.write(SeededBytes(seed: 2).bytesOnce(30_000), at: 0)
        try z.sync(dataOnly: false)
        array.release(z)
        let zOnMember1 = try members[1].open("/z", flags: O_RDWR, mode: 0)
        var b: UInt8 = 0
        _ = try withUnsafeMutableBytes(of: &b) { try zOnMember1.read(into: $0.baseAddress!, count: 1, at: 9000) }
        b ^= 0xFF
        try withUnsafeBytes(of: &b) { try zOnMember1.write(from: $0.baseAddress!, count: 1, at: 9000) }
        try zOnMember1.sync(dataOnly: false)
        zOnMember1.close()
        return (array, members, env)
    }

    func testAFileRenamedBehindTheWalkIsScrubbedToo() throws {
        let (array, _, env) = try arrayWithRotInZ()
        _ = try array.startScrub(repair: true)
        for _ in 0..<3 { XCTAssertTrue(env.jobs.step(), "the scrub pauses at each stripe: past /b, inside /m") }
        try array.rename("/z", "/a", flags: 0)   // behind the walk
        env.jobs.runUntilIdle()
        let result = try XCTUnwrap(array.scrubStatus.lastResult)
        XCTAssertGreaterThan(result.problems, 0, "the rot in the renamed file was found")
        XCTAssertEqual(result.problems, result.repaired)
        // Repaired on member 1: a check finds nothing.
        XCTAssertEqual(try array.checkAll(mode: .check) { _ in }.problems, 0)
    }

    /// The same rename while the scrub is paused at a checkpoint (the
    /// unmount stopped it past /b, and the next mount has not resumed it):
    /// the checkpoint moves back before the new name.
    func testAFileRenamedBehindAPausedScrubIsScrubbedWhenItResumes() throws {
        let (array, members, env) = try arrayWithRotInZ()
        _ = try array.startScrub(repair: true)
        for _ in 0..<3 { XCTAssertTrue(env.jobs.step()) }
        array.shutdown()
        env.jobs.runUntilIdle()
        let (again, _) = try RAIDArray.assemble(members: members, logger: quietLogger, environment: env)
        try again.markInUse()
        XCTAssertEqual(again.currentSuperblock.scrub?.checkpoint?.lastPath, "/b", "paused past /b")
        try again.rename("/z", "/a", flags: 0)
        XCTAssertEqual(again.currentSuperblock.scrub?.checkpoint?.lastPath, "", "moved back before /a")
        again.monitorTick(2)   // resumes the scrub
        env.jobs.runUntilIdle()
        let result = try XCTUnwrap(again.scrubStatus.lastResult)
        XCTAssertGreaterThan(result.problems, 0, "the rot in the renamed file was found")
        XCTAssertEqual(try again.checkAll(mode: .check) { _ in }.problems, 0)
        again.shutdown()
    }
}
