import Foundation
import XCTest
import RAIDCore

/// Members lost or corrupted while mounted, up to the level's redundancy.
final class FailureTests: XCTestCase {
    /// Deletes `lose` member directories while mounted; every byte reads back,
    /// before and after a remount (which leaves the deleted members out).
    func checkSurvivesDeletion(level: Int, members: Int, lose: [Int]) throws {
        let a = try ScratchArray(level: level, members: members)
        try a.mount()
        let data = randomBytes(6 << 20, seed: UInt64(level * 10 + members))
        try writeFile(a.path("big"), data)
        try writeFile(a.path("small"), Data("hello".utf8))
        for i in lose { try FileManager.default.removeItem(atPath: a.members[i]) }
        XCTAssertEqual(try readFile(a.path("big")), data, "RAID \(level) after rm -rf of \(lose)")
        // Writes continue on the remaining members.
        let more = randomBytes(1 << 20, seed: 99)
        try writeFile(a.path("after"), more)
        a.unmount()
        try a.mount()
        XCTAssertTrue(a.log().contains("left out"), a.log())
        XCTAssertEqual(try readFile(a.path("big")), data)
        XCTAssertEqual(try readFile(a.path("small")), Data("hello".utf8))
        XCTAssertEqual(try readFile(a.path("after")), more)
    }

    func testRAID1SurvivesLosingAllButOneMirror() throws { try checkSurvivesDeletion(level: 1, members: 3, lose: [0, 2]) }
    func testRAID5SurvivesLosingOneMember() throws { try checkSurvivesDeletion(level: 5, members: 4, lose: [1]) }
    func testRAID6SurvivesLosingAnyTwoMembers() throws {
        try checkSurvivesDeletion(level: 6, members: 6, lose: [0, 5])
        try checkSurvivesDeletion(level: 6, members: 5, lose: [1, 2])
    }

    /// Flips bytes inside data chunks of two members' copies of the largest
    /// file; the read returns the original bytes and rewrites the damaged
    /// chunks, so the member files match their pre-damage copies again.
    func testFlippedBytesAreRepairedByReading() throws {
        let chunk = 64 * 1024
        let a = try ScratchArray(level: 6, members: 6, chunk: "64K")
        try a.mount()
        let size = 5 * 1024 * 1024 + 12_345
        let data = randomBytes(size, seed: 42)
        try writeFile(a.path("largest"), data)
        try writeFile(a.path("other"), randomBytes(10_000, seed: 1))
        let g = Geometry(level: .raid6, memberCount: 6, chunkSizeBytes: chunk)
        let layout = MemberFileLayout(chunkSizeBytes: chunk)
        let victims = [1, 4]
        var originals: [Int: Data] = [:]
        var flipped = 0
        let shift = try rowShift(a, "largest")
        for v in victims {
            let path = a.members[v] + "/data/largest"
            originals[v] = try readFile(path)
            let fd = open(path, O_RDWR)
            defer { close(fd) }
            var stripe: UInt64 = UInt64(v)
            // Damage a data chunk of every third stripe that lies wholly in the file.
            while (stripe + 1) * UInt64(g.stripeDataBytes) <= UInt64(size) {
                let idx = g.chunkIndex(stripe: stripe + shift, member: v)
                if idx < g.dataChunkCount {
                    var b: UInt8 = 0
                    // Within this chunk (a leading stripe's is 4 KiB): a byte
                    // past it would land in the next chunk, which may be parity
                    // (a read never reads it).
                    let off = off_t(layout.chunkOffset(stripe: stripe)) + off_t((Int(stripe) * 7919) % g.chunkBytes(stripe))
                    pread(fd, &b, 1, off)
                    b ^= 0xA5
                    pwrite(fd, &b, 1, off)
                    flipped += 1
                }
                stripe += 3
            }
        }
        XCTAssertGreaterThan(flipped, 5)
        XCTAssertNotEqual(try readFile(a.members[1] + "/data/largest"), originals[1])
        XCTAssertEqual(try readFile(a.path("largest")), data, "flipped bytes must never reach a reader")
        for v in victims {
            XCTAssertEqual(try readFile(a.members[v] + "/data/largest"), originals[v], "member \(v) not repaired by the read")
        }
        XCTAssertTrue(a.log().contains("checksum mismatch"), a.log())
        XCTAssertEqual(try readFile(a.path("largest")), data)
    }

    /// More damage than RAID 5 can rebuild: EIO, never garbage.
    func testBeyondRedundancyReadIsEIO() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        try writeFile(a.path("f"), randomBytes(200_000, seed: 5))
        // Data chunk 0 of stripe 0 (what the read wants) and P.
        let g = Geometry(level: .raid5, memberCount: 3, chunkSizeBytes: 16384), shift = try rowShift(a, "f")
        for v in [g.member(stripe: shift, chunkIndex: 0), g.member(stripe: shift, chunkIndex: 2)] {
            let fd = open(a.members[v] + "/data/f", O_RDWR)
            var junk = [UInt8](repeating: 0x33, count: 100)
            pwrite(fd, &junk, 100, off_t(MemberFileLayout(chunkSizeBytes: 16384).chunkOffset(stripe: 0)) + 10)
            close(fd)
        }
        let fd = open(a.path("f"), O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        XCTAssertEqual(pread(fd, &buf, 4096, 0), -1)
        XCTAssertEqual(errno, EIO)
    }

    /// A member directory removed while a file is held open is noticed by
    /// the health monitor, not only at the next open.
    func testVanishedMemberIsNoticedWhileFilesStayOpen() throws {
        let a = try ScratchArray(level: 6, members: 5)
        try a.mount()
        let data = randomBytes(2_000_000, seed: 12)
        try writeFile(a.path("held"), data)
        let fd = open(a.path("held"), O_RDWR)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        try FileManager.default.removeItem(atPath: a.members[2])
        let deadline = Date().addingTimeInterval(10)
        var state = ""
        repeat {
            usleep(200_000)
            state = try runTool("raidctl", ["status", "--json", a.mountpoint]).stdout
        } while !state.contains("\"faulty\"") && Date() < deadline
        XCTAssertTrue(state.contains("\"faulty\""), state)
        var buf = [UInt8](repeating: 0, count: data.count)
        XCTAssertEqual(pread(fd, &buf, buf.count, 0), buf.count)
        XCTAssertEqual(Data(buf), data)
        let more = [UInt8](randomBytes(100_000, seed: 13))
        XCTAssertEqual(pwrite(fd, more, more.count, 500_000), more.count)
        close(fd)
        var expected = data
        expected.replaceSubrange(500_000..<600_000, with: more)
        a.unmount()
        try a.mount()
        XCTAssertEqual(try readFile(a.path("held")), expected)
    }
}
