import Foundation
import XCTest
import RAIDCore

/// `raidctl inject` on a mounted array: each fault does what it says, the
/// array answers as md or ZFS would, and no reader ever sees a wrong byte.
final class InjectTests: XCTestCase {
    func testBitrotAndReadErrorsAreMaskedAndCounted() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        let data = randomBytes(700_000, seed: 31)
        try writeFile(a.path("f"), data)
        let onDisk = try readFile(a.members[1] + "/data/f")

        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "1", "bitrot"]).status, 0)
        XCTAssertEqual(try a.status().members[1].faults, ["bitrot"])
        XCTAssertEqual(try readFile(a.path("f")), data, "flipped bits must never reach a reader")
        XCTAssertGreaterThan(try a.status().members[1].checksumErrors, 0)
        XCTAssertEqual(try a.status().state, "clean", "bit rot is repaired, not a reason to fail the member")
        XCTAssertEqual(try readFile(a.members[1] + "/data/f"), onDisk, "the repair writes back the same bytes")

        // A limited number of read errors on another member.
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, a.members[0], "clear"]).status, 0)
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "1", "clear"]).status, 0)
        XCTAssertNil(try a.status().members[1].faults)
        XCTAssertEqual(try a.ctl(["inject", "--count", "3", a.mountpoint, a.members[0], "eio-read"]).status, 0)
        // Read until the three are spent (how many member reads one pass
        // makes depends on the kernel's cache), each time right.
        for _ in 0..<10 where try a.status().members[0].faults != nil {
            let fd = open(a.path("f"), O_RDONLY)
            XCTAssertEqual(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0)   // the next pass reads the members
            close(fd)
            XCTAssertEqual(try readFile(a.path("f")), data)
        }
        let s = try a.status()
        XCTAssertEqual(s.members[0].readErrors, 3)
        XCTAssertNil(s.members[0].faults, "a fault with --count ends after that many hits")
        XCTAssertEqual(s.state, "clean")

        // Usage errors say why and exit 64; a bad member is a plain error.
        let bad = try a.ctl(["inject", a.mountpoint, "1", "frobnicate"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("unknown fault frobnicate"), bad.stderr)
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "1", "latency=x"]).status, 64)
        XCTAssertEqual(try a.ctl(["inject", "--rate", "2", a.mountpoint, "1", "bitrot"]).status, 64)
        let role = try a.ctl(["inject", a.mountpoint, "7", "bitrot"])
        XCTAssertEqual(role.status, 1)
        XCTAssertTrue(role.stderr.contains("no such role"), role.stderr)
        let events = try a.ctl(["events", a.mountpoint]).stdout
        XCTAssertTrue(events.contains("fault-injected") && events.contains("faults-cleared"), events)
    }

    func testWriteErrorsFailTheMemberAndVanishIsNoticed() throws {
        let a = try ScratchArray(level: 6, members: 5, chunk: "16K")
        try a.mount()
        let first = randomBytes(300_000, seed: 32)
        try writeFile(a.path("a"), first)

        // md: a failed write fails the member; the write itself succeeds.
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "2", "eio-write"]).status, 0)
        let second = randomBytes(400_000, seed: 33)
        try writeFile(a.path("b"), second)
        var s = try a.status()
        XCTAssertEqual(s.members[2].state, "faulty")
        XCTAssertGreaterThan(s.members[2].writeErrors, 0)
        XCTAssertEqual(s.state, "degraded")

        // An unplugged member is found by the health monitor.
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "4", "vanish"]).status, 0)
        s = try a.waitFor(state: "degraded", seconds: 30)
        let deadline = Date().addingTimeInterval(30)
        while try a.status().members[4].state != "faulty" && Date() < deadline { usleep(100_000) }
        XCTAssertEqual(try a.status().members[4].state, "faulty")
        XCTAssertEqual(try readFile(a.path("a")), first)
        XCTAssertEqual(try readFile(a.path("b")), second)

        // Latency slows a member but changes nothing else.
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "0", "latency=5"]).status, 0)
        XCTAssertEqual(try a.status().members[0].faults, ["latency=5"])
        XCTAssertEqual(try readFile(a.path("b")), second)
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "clear"]).status, 0)
        XCTAssertTrue(try a.status().members.allSatisfy { $0.faults == nil })
    }
}
