import ArgumentParser
import Foundation
import RAIDCore
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// No daemon answers at a mount point: exit 4 (mdadm --detail's "cannot
/// get information"), apart from status's 1 (degraded) and 2 (failed).
struct DaemonUnreachable: Error {
    static let exitCode: Int32 = 4
    let message: String
}

/// A connection to a mounted array's control socket.
struct ControlClient {
    let mountpoint: String
    let fd: Int32
    var buffer: [UInt8] = []

    init(mountpoint: String) throws {
        let mp = absolutePath(mountpoint)
        self.mountpoint = mp
        let path = ControlProtocol.socketPath(mountpoint: mp)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FSError.system("socket", path) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw DaemonUnreachable(message: "\(mp): no raidfs control socket (\(path): \(why)); is a raidfs array mounted there?")
        }
        self.fd = fd
    }

    func send(_ req: ControlRequest) throws {
        guard ControlWire.send(req, fd: fd) else { throw FSError.system("send", mountpoint) }
    }

    mutating func receive() throws -> ControlResponse? {
        guard let line = ControlWire.receiveLine(fd: fd, buffer: &buffer) else { return nil }
        let resp = try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        if !resp.ok { throw FSError(EINVAL, "\(mountpoint): \(resp.error ?? "request refused")") }
        return resp
    }

    /// Sends a command and prints the daemon's one-line answer.
    static func run(_ mountpoint: String, _ req: ControlRequest) throws {
        print(try request(mountpoint, req).message ?? "")
    }

    /// One request, one answer.
    static func request(_ mountpoint: String, _ req: ControlRequest) throws -> ControlResponse {
        var c = try ControlClient(mountpoint: mountpoint)
        defer { close(c.fd) }
        try c.send(req)
        guard let r = try c.receive() else { throw FSError.io("\(mountpoint): the daemon closed the control connection") }
        return r
    }
}

/// A role index as given; a directory made absolute (the daemon runs in /).
func memberArgument(_ m: String) -> String { Int(m) != nil ? m : absolutePath(m) }

func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
func padLeft(_ s: String, _ width: Int) -> String { s.count >= width ? s : String(repeating: " ", count: width - s.count) + s }

func bar(_ fraction: Double, width: Int = 20) -> String {
    let f = max(0, min(1, fraction))
    let done = Int(f * Double(width))
    return "[" + String(repeating: "=", count: done) + (done < width ? ">" : "") + String(repeating: ".", count: max(0, width - done - 1)) + "]"
}

func duration(_ s: Double?) -> String {
    guard let s, s.isFinite else { return "?" }
    let t = Int(s)
    return String(format: "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60)
}

func timestamp(_ t: Double) -> String {
    let f = DateFormatter()
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return f.string(from: Date(timeIntervalSince1970: t))
}

func render(_ st: ArrayStatus, mountpoint: String) -> String {
    var out = "\(mountpoint): raid\(st.level) array \(st.arrayUUID) (chunk \(st.chunkSizeBytes / 1024)K, events \(st.events))\n"
    out += "   state: \(st.state)\n"
    for (name, p) in [("rebuild", st.rebuild), ("scrub", st.scrub)] where p.running {
        out += String(format: "   %@: %@ %5.1f%%  %.1f MB/s  eta %@", name, bar(p.progress), p.progress * 100,
                      p.bytesPerSecond / 1e6, duration(p.etaSeconds))
        if let r = p.role { out += "  (role \(r) → \(p.target ?? "?"))" }
        out += "\n"
    }
    if !st.scrub.running, let mode = st.scrub.mode, st.scrub.stopped == true {
        out += "   scrub (\(mode)) stopped: \(st.scrub.problems ?? 0) problems, "
            + "\(st.scrub.repaired ?? 0) repaired, \(st.scrub.unrecoverable ?? 0) beyond redundancy\n"
    }
    if let at = st.scrub.lastFinishedAt, let r = st.scrub.lastResult {
        out += "   last scrub (\(r.mode)): finished \(timestamp(at)), \(r.bytes / 1_000_000) MB checked, \(r.problems) problems, "
            + "\(r.repaired) repaired, \(r.unrecoverable) beyond redundancy\n"
    } else {
        out += "   last scrub: none yet\n"
    }
    if let after = st.scrub.resumesAfter { out += "   scrub interrupted: resumes after \(after.isEmpty ? "the start" : after) when the array is clean and idle\n" }
    if let due = st.scrub.nextDueAt, !st.scrub.running { out += "   next scrub due: \(timestamp(due))\n" }
    out += "\n   ROLE  STATE         READ  WRITE  CKSUM  MEMBER\n"
    for m in st.members {
        out += "   " + padLeft("\(m.index)", 4) + "  " + pad(m.state, 10) + " " + padLeft("\(m.readErrors)", 6)
            + " " + padLeft("\(m.writeErrors)", 6) + " " + padLeft("\(m.checksumErrors)", 6) + "  " + (m.path.isEmpty ? "-" : m.path)
            + (m.faults.map { "  [injected: " + $0.joined(separator: ", ") + "]" } ?? "") + "\n"
        if let why = m.reason { out += "         " + why + "\n" }
    }
    if !st.spares.isEmpty { out += "   spares: " + st.spares.joined(separator: ", ") + "\n" }
    return out
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a mounted array's state (exit 0 clean, 1 degraded or rebuilding, 2 failed, 4 no daemon answers).")
    @Flag(name: .long, help: "Print JSON.") var json = false
    @Flag(name: .long, help: "Redraw every second until interrupted.") var watch = false
    @Argument(help: "The mount point.") var mountpoint: String

    func run() throws {
        if watch {
            while true {
                let st = try ControlClient.request(mountpoint, ControlRequest(command: .status)).status!
                print("\u{1B}[H\u{1B}[2J" + (json ? jsonText(st) : render(st, mountpoint: absolutePath(mountpoint))), terminator: "")
                fflush(nil)   // all output streams: `stdout` is a C global Swift 6 cannot check
                sleep(1)
            }
        }
        let st = try ControlClient.request(mountpoint, ControlRequest(command: .status)).status!
        print(json ? jsonText(st) : render(st, mountpoint: absolutePath(mountpoint)), terminator: json ? "\n" : "")
        throw ExitCode(st.exitCode)
    }
}

func jsonText<T: Encodable>(_ v: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: (try? enc.encode(v)) ?? Data(), as: UTF8.self)
}

struct Fail: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mark a member faulty now (the array goes degraded).")
    @Flag(name: .long, help: "Fail it even if that loses data.") var force = false
    @Argument(help: "The mount point.") var mountpoint: String
    @Argument(help: "Role index or member directory.") var member: String
    func run() throws {
        try ControlClient.run(mountpoint, ControlRequest(command: .fail, member: memberArgument(member), force: force))
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Detach a faulty member or a spare.")
    @Flag(name: .long, help: "Remove an active member (fails it first).") var force = false
    @Argument(help: "The mount point.") var mountpoint: String
    @Argument(help: "Role index, member directory or spare directory.") var member: String
    func run() throws {
        try ControlClient.run(mountpoint, ControlRequest(command: .remove, member: memberArgument(member), force: force))
    }
}

struct Add: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Add an empty directory as a hot spare; used at once if degraded.")
    @Argument(help: "The mount point.") var mountpoint: String
    @Argument(help: "An empty directory (or a former member, which is started over).") var directory: String
    func run() throws {
        try ControlClient.run(mountpoint, ControlRequest(command: .add, directory: absolutePath(directory)))
    }
}

struct Monitor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run PROGRAM for each new event of a mounted array (as mdadm --monitor --program).",
        discussion: "PROGRAM runs under /bin/sh -c with the event as a JSON line on stdin and RAIDFS_EVENT, RAIDFS_MEMBER, RAIDFS_PATH, RAIDFS_MESSAGE and RAIDFS_MOUNTPOINT in its environment. Runs until the mount goes away.")
    @Argument(help: "The mount point.") var mountpoint: String
    @Option(name: .long, help: "The program to run per event.") var exec: String
    func run() throws {
        var c = try ControlClient(mountpoint: mountpoint)
        defer { close(c.fd) }
        try c.send(ControlRequest(command: .events, follow: true))
        let program = EventProgram(program: exec, mountpoint: c.mountpoint)
        var first = true
        while let r = try c.receive() {
            // The first answer is the history: only what happens from now on.
            if first { first = false; continue }
            for e in r.events ?? [] {
                do { try program.run(e) } catch { FileHandle.standardError.write(Data("raidctl: \(error)\n".utf8)) }
            }
        }
    }
}

struct Clear: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reset the READ, WRITE and CKSUM counters (of one member, or all).")
    @Argument(help: "The mount point.") var mountpoint: String
    @Argument(help: "Role index or member directory (default: every member).") var member: String?
    func run() throws {
        try ControlClient.run(mountpoint, ControlRequest(command: .clear, member: member.map(memberArgument)))
    }
}

struct Replace: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Rebuild onto DIR while MEMBER still serves, then retire MEMBER.")
    @Argument(help: "The mount point.") var mountpoint: String
    @Argument(help: "Role index or member directory.") var member: String
    @Argument(help: "An empty directory.") var directory: String
    func run() throws {
        try ControlClient.run(mountpoint, ControlRequest(command: .replace, member: memberArgument(member), directory: absolutePath(directory)))
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the array's event log.")
    @Flag(name: .long, help: "Keep printing new events.") var follow = false
    @Flag(name: .long, help: "Print JSON lines.") var json = false
    @Argument(help: "The mount point.") var mountpoint: String
    func run() throws {
        var c = try ControlClient(mountpoint: mountpoint)
        defer { close(c.fd) }
        try c.send(ControlRequest(command: .events, follow: follow))
        while let r = try c.receive() {
            for e in r.events ?? [] {
                print(json ? String(decoding: (try? JSONEncoder().encode(e)) ?? Data(), as: UTF8.self) : e.line)
            }
            fflush(nil)   // all output streams: `stdout` is a C global Swift 6 cannot check
            if !follow { return }
        }
    }
}

struct Scrub: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify every stripe of a mounted array in the background, repairing what redundancy can.",
        discussion: "With --wait: exit 0 clean, 1 problems found (repaired with --repair), 2 damage beyond redundancy.")
    @Flag(name: .long, help: "Rewrite bad chunks and parity from redundancy (the default).") var repair = false
    @Flag(name: .long, help: "Only count and report problems.") var check = false
    @Flag(name: .long, help: "Wait for the scrub to finish, showing progress.") var wait = false
    @Flag(name: .long, help: "Stop a running scrub.") var stop = false
    @Argument(help: "The mount point.") var mountpoint: String

    func validate() throws {
        if repair && check { throw ValidationError("--repair and --check exclude each other") }
        if stop && (repair || check || wait) { throw ValidationError("--stop takes no other option") }
    }

    func run() throws {
        if stop {
            try ControlClient.run(mountpoint, ControlRequest(command: .scrub, mode: .stop))
            return
        }
        try ControlClient.run(mountpoint, ControlRequest(command: .scrub, mode: check ? .check : .repair))
        guard wait else { return }
        let tty = isatty(STDOUT_FILENO) != 0
        while true {
            let p = try ControlClient.request(mountpoint, ControlRequest(command: .status)).status!.scrub
            if !p.running {
                if tty { print("") }
                print("scrub (\(p.mode ?? "?")) \(p.stopped == true ? "stopped" : "finished"): \(p.problems ?? 0) problems, "
                      + "\(p.repaired ?? 0) repaired, \(p.unrecoverable ?? 0) beyond redundancy")
                if p.stopped == true { throw ExitCode(1) }
                throw ExitCode((p.unrecoverable ?? 0) > 0 ? 2 : ((p.problems ?? 0) > 0 ? 1 : 0))
            }
            if tty {
                print(String(format: "\r   scrub: %@ %5.1f%%  %.1f MB/s  eta %@ ", bar(p.progress), p.progress * 100,
                             p.bytesPerSecond / 1e6, duration(p.etaSeconds)), terminator: "")
                fflush(nil)   // all output streams: `stdout` is a C global Swift 6 cannot check
            }
            usleep(200_000)
        }
    }
}

struct Inject: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inject a fault into a member of a mounted array, or clear injected faults.",
        discussion: """
            FAULT is bitrot (reads return flipped bits), eio-read, eio-write, latency=MS or vanish \
            (the member behaves as unplugged), or clear. `raidctl inject MOUNTPOINT clear` clears \
            every member's faults.
            """)
    @Option(name: .long, help: "Probability that an operation is hit, (0, 1] (default 1).") var rate: Double?
    @Option(name: .long, help: "Stop after this many hits (default: until cleared).") var count: Int?
    @Argument(help: "The mount point.") var mountpoint: String
    @Argument(help: "Role index or member directory (or clear).") var member: String
    @Argument(help: "bitrot, eio-read, eio-write, latency=MS, vanish or clear.") var fault: String?

    func validate() throws {
        if fault == nil && member != "clear" { throw ValidationError("missing FAULT (bitrot, eio-read, eio-write, latency=MS, vanish or clear)") }
        if (fault == nil || fault == "clear") && (rate != nil || count != nil) {
            throw ValidationError("--rate and --count go with a fault, not with clear")
        }
        if let f = fault, f != "clear" {
            do { _ = try InjectedFault.parse(f, rate: rate, count: count) } catch let e as FSError { throw ValidationError(e.message) }
        }
    }

    func run() throws {
        if fault == nil {
            try ControlClient.run(mountpoint, ControlRequest(command: .inject, fault: "clear"))
        } else {
            try ControlClient.run(mountpoint, ControlRequest(command: .inject, member: memberArgument(member),
                                                             fault: fault, rate: rate, count: count))
        }
    }
}
