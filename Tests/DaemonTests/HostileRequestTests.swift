import Foundation
import XCTest

/// The short run of tools/conformance/hostile.py: extreme arguments, huge
/// sizes and xattrs, long names, deep trees, a large directory, many
/// descriptors and removed-while-open files, through a mount and on a
/// tmpfs, compared call by call; the daemon's memory stays bounded. (The
/// hour-long runs are the tool's own, by hand.)
final class HostileRequestTests: XCTestCase {
    private func run(level: Int, seed: Int) throws {
        guard geteuid() == 0 else { throw XCTSkip("the tool mounts a tmpfs: needs root") }
        let tool = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/conformance/hostile.py").path
        // Request times are the tool's to report, not this test's to judge
        // (a debug build on a loaded machine).
        let r = try runTool("/usr/bin/env", ["RAIDFS_BIN_DIR=" + binDir, "python3", tool, "--level", "\(level)", "--seed", "\(seed)", "--ops", "4000",
                                                 "--dir-entries", "5000", "--fds", "1500", "--slowest-limit-ms", "0"],
                            timeoutSeconds: 600)
        XCTAssertEqual(r.status, 0, "RAID \(level): \(r.stdout.suffix(3000)) \(r.stderr.suffix(2000))")
        XCTAssertTrue(r.stdout.contains("0 unexplained differences"), r.stdout)
    }

    func testRaid5AnswersHostileRequestsAsTmpfsDoes() throws { try run(level: 5, seed: 11) }

    func testRaid6AnswersHostileRequestsAsTmpfsDoes() throws { try run(level: 6, seed: 12) }
}
