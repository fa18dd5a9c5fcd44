import Foundation
import XCTest

/// The man pages tools/test.sh builds (tools/man/build.sh, into
/// RAIDFS_MAN_DIR): raidctl's has a section for every subcommand raidctl
/// offers and the hand-written sections, and man renders both pages
/// without a warning.
final class ManualTests: XCTestCase {
    func testManPagesCoverEverySubcommandAndRenderCleanly() throws {
        guard let dir = ProcessInfo.processInfo.environment["RAIDFS_MAN_DIR"] else {
            throw XCTSkip("RAIDFS_MAN_DIR is unset: tools/test.sh builds the man pages and sets it")
        }
        let help = try runTool("raidctl", ["--help"]).stdout
        // "SUBCOMMANDS:" then each name indented by two spaces (its
        // description's continuation lines by more).
        let subcommands = help.components(separatedBy: "SUBCOMMANDS:").last!.split(separator: "\n")
            .compactMap { $0.hasPrefix("  ") && !$0.hasPrefix("   ") ? $0.split(separator: " ").first.map(String.init) : nil }
            .filter { $0 != "help" && $0 != "See" }
        XCTAssertTrue(subcommands.contains("metrics") && subcommands.contains("status"), help)
        let page = try String(contentsOfFile: dir + "/raidctl.8", encoding: .utf8)
        for s in subcommands { XCTAssertTrue(page.contains(".It Em \(s)\n"), "raidctl.8 has no section for \(s)") }
        for section in ["EXIT STATUS", "FILES", "EXAMPLES", "SEE ALSO"] {
            XCTAssertTrue(page.contains(".Sh \"\(section)\"") || page.contains(".Sh \(section)\n"), "raidctl.8 lacks \(section)")
        }
        for name in ["raidctl.8", "raidfs.8"] {
            let r = try runTool("/bin/sh", ["-c", "MANWIDTH=80 man --warnings -l '\(dir)/\(name)' 2>&1 >/dev/null"])
            XCTAssertEqual(r.status, 0, name)
            XCTAssertEqual(r.stdout, "", "\(name): man warns")
            let text = try runTool("/bin/sh", ["-c", "MANWIDTH=80 man -l '\(dir)/\(name)'"]).stdout
            XCTAssertTrue(text.contains("EXIT STATUS"), name)
        }
    }
}
