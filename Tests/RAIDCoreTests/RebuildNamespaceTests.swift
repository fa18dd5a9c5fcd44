import Foundation
import XCTest
@testable import RAIDCore
import RAIDSimulation

/// Namespace changes made while a member is being rebuilt, on simulated
/// members with the rebuild stepped by hand: the member being rebuilt holds
/// only part of the tree, and a change must not leave it disagreeing with
/// the others in a way the rebuild does not come back to.
final class RebuildNamespaceTests: XCTestCase {
    /// RAID 1 of three, role 2 failed and a spare taking it: the rebuild is
    /// launched, not yet stepped, so the spare holds only what was made
    /// since.
    func rebuilding() throws -> (RAIDArray, [SimulatedMember], SimulatedMember, EngineEnvironment) {
        let env = EngineEnvironment.simulated(seed: 5)
        let members = (0..<3).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: .raid1, chunkSizeBytes: 4096, members: members, environment: env)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger, environment: env)
        try array.markInUse()
        for i in 0..<4 {
            let f = try array.create("/old\(i)", mode: 0o644, exclusive: true, caller: root)
            try f.write(SeededBytes(seed: UInt64(i + 1)).bytesOnce(20_000), at: 0)
            array.release(f)
        }
        _ = try array.failByAdministrator(2, force: false)
        let spare = SimulatedMember(name: "spare")
        _ = try array.addSpare(member: spare, note: "test spare")
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
