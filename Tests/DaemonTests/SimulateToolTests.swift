import Foundation
import XCTest

/// `tools/simulate`'s binary: the same command in two processes prints the
/// same digest, with rebuilds, replacements and scrubs in the run. Swift
/// seeds its hashing per process, so this also holds the engine and the
/// simulation to nothing that depends on a Set's or a Dictionary's order.
final class SimulateToolTests: XCTestCase {
    func testSameCommandSameDigestInTwoProcesses() throws {
        let args = ["--level", "6", "--seed", "10", "--ops", "2000", "--faults", "on", "--power-cuts", "off", "--links", "off"]
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_DETERMINISTIC_HASHING"] = nil   // as a user runs it
        let a = try runSimulate(args, env), b = try runSimulate(args, env)
        XCTAssertEqual(a.status, 0, a.out)
        XCTAssertEqual(a.out, b.out)
        let digest = a.out.range(of: #"digest [0-9a-f]{16}"#, options: .regularExpression).map { String(a.out[$0]) }
        XCTAssertNotNil(digest, a.out)
        for what in ["event:rebuild-finished", "event:scrub-finished", "event:member-replaced", "clean"] {
            XCTAssertTrue(a.out.contains(what), "no \(what) in: \(a.out)")
        }
    }

    private func runSimulate(_ args: [String], _ env: [String: String]) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binDir + "/raidfs-simulate")
        p.arguments = args
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        // The time it took differs from run to run; the rest may not.
        let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: #"in [0-9.]+ s"#, with: "", options: .regularExpression)
        return (p.terminationStatus, text)
    }
}
