import Foundation
import XCTest

/// A bounded run of tools/crash/harness.py: kill -9 the daemon under a
/// writer, remount, and check fsync'ed data, `raidctl check` and degraded
/// reads. The full 200-round runs are in tools/, by hand.
final class CrashTests: XCTestCase {
    func runHarness(level: Int, rounds: Int, workload: String = "data") throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", root + "/tools/crash/harness.py", "--level", "\(level)", "--rounds", "\(rounds)",
                       "--seed", "\(level)", "--max-size", "\(1 << 20)", "--workload", workload]
        var env = ProcessInfo.processInfo.environment
        env["RAIDFS_BIN_DIR"] = binDir
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("\(rounds) passed, 0 failed"), text)
    }

    func testKillNineRAID5() throws { try runHarness(level: 5, rounds: 3) }
    func testKillNineRAID6() throws { try runHarness(level: 6, rounds: 3) }

    /// kill -9 during create/unlink/rename/link/mkdir/rmdir/symlink churn:
    /// clean after every remount, the tree as acknowledged.
    func testKillNineDuringNamespaceChurnRAID1() throws { try runHarness(level: 1, rounds: 6, workload: "namespace") }
    func testKillNineDuringNamespaceChurnRAID5() throws { try runHarness(level: 5, rounds: 10, workload: "namespace") }
    func testKillNineDuringNamespaceChurnRAID6() throws { try runHarness(level: 6, rounds: 6, workload: "namespace") }
}
