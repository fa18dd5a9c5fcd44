import ArgumentParser
import Foundation
import Logging
import RAIDCore

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Offline scrub of an unmounted array: verify every chunk's checksum and every stripe's parity.",
        discussion: "Exit code: 0 clean; 1 damage that redundancy can repair (with --repair: found and repaired); 2 damage beyond redundancy.")

    @Flag(name: .long, help: "Rewrite damaged chunks and parity from redundancy.")
    var repair = false

    @Argument(help: "The array's member directories.")
    var directories: [String] = []

    func validate() throws {
        guard !directories.isEmpty else { throw ValidationError("name the array's member directories") }
    }

    func run() throws {
        var logger = Logger(label: "raidctl")
        logger.logLevel = .critical
        let (array, report) = try RAIDArray.assemble(directories: directories, configuration: ArrayConfiguration(readOnly: !repair), logger: logger)
        for line in report.lines { print("note: \(line)") }
        if array.state != .clean {
            print("note: array is \(array.state.rawValue): \(array.activeRoles.count) of \(array.geometry.memberCount) members")
        }
        let summary = try array.checkAll(mode: repair ? .repair : .check) { finding in
            print(finding.description)
        }
        let verdict: String
        switch summary.exitCode {
        case 0: verdict = "clean"
        case 1: verdict = repair ? "damage found and repaired" : "damage found; redundancy can repair it (run with --repair)"
        default: verdict = "damage beyond redundancy"
        }
        print("checked \(summary.filesChecked) files, \(summary.stripesChecked) stripes, \(summary.bytesChecked) bytes: \(summary.problems) problems, \(summary.unrecoverable) unrecoverable stripes — \(verdict)")
        throw ExitCode(summary.exitCode)
    }
}
