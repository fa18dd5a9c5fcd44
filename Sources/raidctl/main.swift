import ArgumentParser
import Foundation
import RAIDCore

/// raidctl: create and examine arrays (offline), and — through the mount's
/// control socket — operate a mounted one.
struct Raidctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raidctl",
        abstract: "Create, inspect and operate raidfs arrays.",
        subcommands: [Create.self, Status.self, IOStat.self, Fail.self, Remove.self, Add.self, Replace.self, Scrub.self, Inject.self, Clear.self, Events.self, Monitor.self, Metrics.self, Examine.self, Check.self])
}

/// Exit 64 with a one-line reason for usage errors; 4 when no daemon
/// answers at the mount point; 1 with the message for every other failure.
func fail(_ error: Error) -> Never {
    if let e = error as? DaemonUnreachable {
        FileHandle.standardError.write(Data("raidctl: \(e.message)\n".utf8))
        Foundation.exit(DaemonUnreachable.exitCode)
    }
    if let e = error as? FSError {
        FileHandle.standardError.write(Data("raidctl: \(e.message)\n".utf8))
    } else {
        FileHandle.standardError.write(Data("raidctl: \(error)\n".utf8))
    }
    Foundation.exit(1)
}

do {
    var command = try Raidctl.parseAsRoot()
    do {
        try command.run()
    } catch let e as ExitCode {
        Raidctl.exit(withError: e)
    } catch let e as CleanExit {
        Raidctl.exit(withError: e)
    } catch {
        // `raidctl --help` and `raidctl help X` arrive here as a command
        // whose run() asks for help: print it, exit 0.
        if Raidctl.exitCode(for: error) == .success { Raidctl.exit(withError: error) }
        fail(error)
    }
} catch {
    let code = Raidctl.exitCode(for: error)
    if code == .success {
        Raidctl.exit(withError: error)
    }
    let msg = Raidctl.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
    FileHandle.standardError.write(Data("raidctl: \(msg)\n".utf8))
    Foundation.exit(64)
}
