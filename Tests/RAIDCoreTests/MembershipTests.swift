import Foundation
import XCTest
@testable import RAIDCore

/// A membership change is one transaction: the superblocks take it and it
/// is published, or it fails with a clear error and nothing changes — in
/// memory, in the superblocks or in what the next assembly finds.
final class MembershipTests: XCTestCase {
    private func states(_ a: RAIDArray) -> [RoleState] { a.membership.states }

    private func recorded(_ dirs: [String]) throws -> Superblock {
        try Superblock.decode(DirectoryMember(root: dirs[0]).readSuperblock(), source: dirs[0])
    }

    /// Every member refuses its superblock: adding, removing and replacing
    /// are refused with the reason, and leave the array as it was.
    func testRefusedChangesChangeNothing() throws {
        let tmp = TempDir()
        let (array, dirs) = try makeArray(tmp, level: .raid5, members: 4)
        defer { array.shutdown() }
        let spareDir = tmp.make("spare")
        let newDir = tmp.make("new")

        // A failure is a fact: it takes effect though no superblock takes it.
        for d in dirs { _ = try array.injectFault(d, InjectedFault(kind: .eioWrite)) }
        _ = try array.failByAdministrator(3, force: false)
        XCTAssertEqual(states(array), [.active, .active, .active, .faulty])
        let onDisk = try recorded(dirs)

        XCTAssertThrowsError(try array.addSpare(directory: spareDir)) { e in
            XCTAssertTrue("\(e)".contains("no member accepted its superblock"), "\(e)")
        }
        XCTAssertTrue(array.spares.isEmpty, "a spare the superblocks do not list is not held")
        XCTAssertEqual(states(array), [.active, .active, .active, .faulty])

        XCTAssertThrowsError(try array.removeMember("3", force: false)) { e in
            XCTAssertTrue("\(e)".contains("no member accepted its superblock"), "\(e)")
        }
        XCTAssertEqual(array.member(3)?.name, dirs[3], "the faulty member is still attached")

        XCTAssertThrowsError(try array.replace("0", directory: newDir)) { e in
            XCTAssertTrue("\(e)".contains("no member accepted its superblock"), "\(e)")
        }
        XCTAssertEqual(array.membership.shadowRoles, [], "no replacement attached")
        XCTAssertNil(array.currentSuperblock.replacement, "no replacement recorded")
        XCTAssertEqual(array.currentSuperblock.roles.map { $0.state }, [.active, .active, .active, .active],
                       "the failure no superblock took is not recorded as if it had been")

        // The disks say what they said before, but for the event counter.
        var after = try recorded(dirs)
        after.events = onDisk.events
        after.updatedAt = onDisk.updatedAt
        XCTAssertEqual(after, onDisk)

        // With the members answering again, the same change goes through,
        // whole: the spare is listed and takes the lost role.
        _ = try array.clearFaults(nil)
        XCTAssertEqual(try array.addSpare(member: DirectoryMember(root: spareDir), note: "spare"), 3)
        XCTAssertEqual(array.member(3)?.name, spareDir)
        XCTAssertEqual(try recorded(dirs).roles[3].state, .rebuilding)
    }

    /// One member refuses its superblock during a change: it is failed at
    /// once (with an event), the others record the change, and a spare
    /// added in that change takes the role it leaves.
    func testMemberRefusingItsSuperblockFailsAndTheChangeGoesOn() throws {
        let tmp = TempDir()
        let (array, dirs) = try makeArray(tmp, level: .raid6, members: 5)
        defer { array.shutdown() }
        let spareDir = tmp.make("spare")
        _ = try array.injectFault(dirs[1], InjectedFault(kind: .eioWrite))

        let took = try array.addSpare(directory: spareDir)
        XCTAssertEqual(took, "\(spareDir) added; rebuilding role 1 onto it")
        XCTAssertEqual(states(array)[1], .rebuilding)
        XCTAssertTrue(array.eventLog.history().contains { $0.kind == "member-failed" && $0.member == 1 && $0.message.contains("superblock write failed") })
        let sb = try recorded(dirs)
        XCTAssertEqual(sb.roles.map { $0.state }, [.active, .rebuilding, .active, .active, .active])
        XCTAssertEqual(sb.spares, [], "the spare holds a role now")
        XCTAssertEqual(array.currentSuperblock.roles, sb.roles, "the array holds what its members say")
        XCTAssertEqual(array.currentSuperblock.events, sb.events)
    }
}
