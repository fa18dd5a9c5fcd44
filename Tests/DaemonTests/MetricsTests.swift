import Foundation
import XCTest
import RAIDControl
import RAIDCore

/// `raidctl metrics`, read by the Prometheus text-format parser
/// (prometheus_client's), must give node_exporter's md names the meanings
/// dashboards and alerts give them, on a clean, a degraded and a
/// rebuilding array, beside what `status` says at the same moment.
final class MetricsTests: XCTestCase {
    struct Exposition {
        let types: [String: String]
        let samples: [(name: String, labels: [String: String], value: Double)]

        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { s in s.name == name && labels.allSatisfy { k, v in s.labels[k] == v } }?.value
        }
    }

    /// Runs `raidctl metrics` and parses what it printed.
    func metrics(_ mountpoints: [String], expectExit: Int32 = 0) throws -> Exposition {
        let r = try runTool("raidctl", ["metrics"] + mountpoints)
        XCTAssertEqual(r.status, expectExit, r.stderr)
        let parser = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/conformance/parse_metrics.py").path
        let input = NSTemporaryDirectory() + "raidfs-metrics-\(UUID().uuidString.prefix(8)).prom"
        try Data(r.stdout.utf8).write(to: URL(fileURLWithPath: input))
        defer { try? FileManager.default.removeItem(atPath: input) }
        let parsed = try runTool("/bin/sh", ["-c", "python3 '\(parser)' < '\(input)'"])
        guard parsed.status == 0, let json = try JSONSerialization.jsonObject(with: Data(parsed.stdout.utf8)) as? [String: Any],
              let types = json["types"] as? [String: String], let samples = json["samples"] as? [[Any]] else {
            throw FSError.io("the exposition does not parse: \(parsed.stderr)\n\(r.stdout)")
        }
        return Exposition(types: types, samples: samples.map { ($0[0] as! String, $0[1] as! [String: String], ($0[2] as! NSNumber).doubleValue) })
    }

    func mdState(_ e: Exposition, _ device: String) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: ["active", "inactive", "recovering", "resync", "check"].map {
            ($0, e.value("node_md_state", ["device": device, "state": $0]) ?? -1)
        })
    }

    func testMdNamesOnACleanADegradedAndARebuildingArray() throws {
        let a = try ScratchArray(level: 5, members: 4, chunk: "16K")
        try a.mount(options: ["rebuild_rate=1"])
        for i in 0..<10 { try writeFile(a.path("f\(i)"), randomBytes(1 << 20, seed: UInt64(i))) }
        a.unmount()   // (reads below reach the members, not the page cache)
        try a.mount(options: ["rebuild_rate=1"])
        let d = absolutePath(a.mountpoint)
        var vfs = statvfs()
        XCTAssertEqual(statvfs(a.mountpoint, &vfs), 0)
        let blocks = (Double(vfs.f_blocks) * Double(vfs.f_frsize) / 1024).rounded(.down)

        var e = try metrics([a.mountpoint])
        XCTAssertEqual(e.types["node_md_state"], "gauge")
        XCTAssertEqual(e.types["raidfs_member_read_errors"], "counter")
        XCTAssertEqual(mdState(e, d), ["active": 1, "inactive": 0, "recovering": 0, "resync": 0, "check": 0])
        XCTAssertEqual(e.value("node_md_disks", ["device": d, "state": "active"]), 4)
        XCTAssertEqual(e.value("node_md_disks", ["device": d, "state": "failed"]), 0)
        XCTAssertEqual(e.value("node_md_disks", ["device": d, "state": "spare"]), 0)
        XCTAssertEqual(e.value("node_md_disks_required", ["device": d]), 4)
        XCTAssertEqual(e.value("node_md_blocks", ["device": d]), blocks)
        XCTAssertEqual(e.value("node_md_blocks_synced", ["device": d]), blocks)
        XCTAssertEqual(e.value("raidfs_up", ["device": d]), 1)
        XCTAssertEqual(e.value("raidfs_array_info", ["device": d, "level": "5"]), 1)
        XCTAssertNil(e.value("raidfs_rebuild_progress_ratio"))

        // Rot read through member 1: its CKSUM counter, as status counts it.
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "1", "bitrot"]).status, 0)
        for i in 0..<10 { XCTAssertEqual(try readFile(a.path("f\(i)")).count, 1 << 20) }
        XCTAssertEqual(try a.ctl(["inject", a.mountpoint, "1", "clear"]).status, 0)
        let st = try a.status()
        e = try metrics([a.mountpoint])
        XCTAssertGreaterThan(st.members[1].checksumErrors, 0)
        for m in st.members {
            let l = ["device": d, "member": "\(m.index)", "path": m.path]
            XCTAssertEqual(e.value("raidfs_member_checksum_errors_total", l), Double(m.checksumErrors), "member \(m.index)")
            XCTAssertEqual(e.value("raidfs_member_read_errors_total", l), Double(m.readErrors), "member \(m.index)")
            XCTAssertEqual(e.value("raidfs_member_write_errors_total", l), Double(m.writeErrors), "member \(m.index)")
            XCTAssertEqual(e.value("raidfs_member_state", l.merging(["state": m.state]) { a, _ in a }), 1, "member \(m.index)")
            // The system call counters, no lower than status gave just before.
            let opens = e.value("raidfs_member_syscalls_total", l.merging(["kind": "open"]) { a, _ in a }) ?? -1
            XCTAssertGreaterThanOrEqual(opens, Double(m.io?.opens ?? 1), "member \(m.index)")
            XCTAssertGreaterThanOrEqual(e.value("raidfs_member_read_bytes_total", l) ?? -1, Double(m.io?.readBytes ?? 1), "member \(m.index)")
        }

        // Degraded: md calls the array active, one disk failed; the
        // degraded alert (required − active > 0) fires.
        XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "2"]).status, 0)
        e = try metrics([a.mountpoint])
        XCTAssertEqual(mdState(e, d), ["active": 1, "inactive": 0, "recovering": 0, "resync": 0, "check": 0])
        XCTAssertEqual(e.value("node_md_disks", ["device": d, "state": "active"]), 3)
        XCTAssertEqual(e.value("node_md_disks", ["device": d, "state": "failed"]), 1)
        XCTAssertEqual(e.value("raidfs_member_state", ["device": d, "member": "2", "state": "faulty"]), 1)

        // Rebuilding onto a spare, throttled: recovering, the synced
        // blocks short of the total, the lost role neither active nor failed.
        let spare = a.root + "/spare"
        try FileManager.default.createDirectory(atPath: spare, withIntermediateDirectories: true)
        XCTAssertEqual(try a.ctl(["add", a.mountpoint, spare]).status, 0)
        XCTAssertEqual(try a.status().state, "rebuilding")
        e = try metrics([a.mountpoint])
        XCTAssertEqual(mdState(e, d), ["active": 0, "inactive": 0, "recovering": 1, "resync": 0, "check": 0])
        XCTAssertEqual(e.value("node_md_disks", ["device": d, "state": "active"]), 3)
        XCTAssertEqual(e.value("node_md_disks", ["device": d, "state": "failed"]), 0)
        XCTAssertEqual(e.value("raidfs_member_state", ["device": d, "member": "2", "state": "rebuilding"]), 1)
        let synced = try XCTUnwrap(e.value("node_md_blocks_synced", ["device": d]))
        XCTAssertLessThan(synced, blocks)
        let ratio = try XCTUnwrap(e.value("raidfs_rebuild_progress_ratio", ["device": d]))
        XCTAssertTrue((0..<1).contains(ratio), "\(ratio)")

        // A mount point with no daemon: raidfs_up 0 beside the live one,
        // exit 4, and the exposition still parses.
        let none = a.root + "/nothing-mounted"
        try FileManager.default.createDirectory(atPath: none, withIntermediateDirectories: true)
        e = try metrics([a.mountpoint, none], expectExit: 4)
        XCTAssertEqual(e.value("raidfs_up", ["device": none]), 0)
        XCTAssertEqual(e.value("raidfs_up", ["device": d]), 1)
        XCTAssertNil(e.value("node_md_state", ["device": none]))
        a.unmount()
    }

    /// A mount point whose name holds a double quote and a backslash is a
    /// valid label value once escaped.
    func testLabelValuesAreEscaped() throws {
        let a = try ScratchArray(level: 1, members: 2, chunk: "16K")
        let odd = a.root + "/mnt \"quoted\" back\\slash"
        try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binDir + "/raidfs")
        p.arguments = [a.memberSpec, odd, "-f", "-o", "auto_unmount"]
        try p.run()
        defer {
            _ = try? runTool("/usr/bin/fusermount3", ["-u", odd])
            p.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(20)
        while (try? runTool("raidctl", ["status", odd]).status) != 0 && Date() < deadline { usleep(50_000) }
        let e = try metrics([odd])
        XCTAssertEqual(e.value("raidfs_up", ["device": odd]), 1)
        XCTAssertEqual(e.value("node_md_disks_required", ["device": odd]), 2)
    }
}
