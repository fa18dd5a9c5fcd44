import ArgumentParser
import Foundation
import RAIDControl
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// `raidctl iostat`: what the daemon asks of each member, as `zpool iostat
/// -v` shows a pool's devices.
struct IOStat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iostat",
        abstract: "Show the system calls a mounted array makes on each member: operations, bandwidth, flushes, latency.",
        discussion: """
            Without INTERVAL, one report of the counts since the daemon started. With it, a \
            report every INTERVAL seconds of the rates over that interval (per second), COUNT \
            times or until interrupted. Latency is the time a call took in the member's \
            filesystem: the mean, and the upper bound of the slowest calls' power-of-two bucket.
            """)
    @Argument(help: "The mount point.") var mountpoint: String
    @Argument(help: "Seconds between reports.") var interval: Double?
    @Argument(help: "How many reports (default: until interrupted).") var count: Int?

    func validate() throws {
        if let i = interval, !(i >= 0.1 && i <= 86_400) { throw ValidationError("INTERVAL must be 0.1 to 86400 seconds, not \(i)") }
        if let c = count, c < 1 { throw ValidationError("COUNT must be at least 1, not \(c)") }
        if count != nil && interval == nil { throw ValidationError("COUNT needs an INTERVAL") }
    }

    func run() throws {
        let mp = absolutePath(mountpoint)
        func sample() throws -> ArrayStatus { try ControlClient.request(mountpoint, ControlRequest(command: .status)).status! }
        var last = try sample()
        guard let interval else {
            print(iostatReport(last, since: nil, seconds: nil, mountpoint: mp), terminator: "")
            return
        }
        var printed = 0
        var then = Date()
        while count.map({ printed < $0 }) ?? true {
            usleep(useconds_t(interval * 1_000_000))
            let now = try sample(), at = Date()
            print(iostatReport(now, since: last, seconds: at.timeIntervalSince(then), mountpoint: mp), terminator: "")
            fflush(nil)   // all output streams: `stdout` is a C global Swift 6 cannot check
            (last, then) = (now, at)
            printed += 1
        }
    }
}

/// A count or rate in four characters or so: 950, 9.5K, 12M.
func compact(_ v: Double) -> String {
    if v < 9.95 && v != v.rounded() { return String(format: "%.1f", v) }
    if v < 999.5 { return String(format: "%.0f", v) }
    for (unit, scale) in [("K", 1e3), ("M", 1e6), ("G", 1e9)] where v < scale * 999.5 {
        return v < scale * 9.95 ? String(format: "%.1f%@", v / scale, unit) : String(format: "%.0f%@", v / scale, unit)
    }
    return String(format: "%.0fT", v / 1e12)
}

/// Microseconds as 850us, 4.2ms, 1.3s.
func latencyText(_ us: Double?) -> String {
    guard let us else { return "-" }
    if us < 999.5 { return String(format: "%.0fus", us) }
    if us < 999_500 { return String(format: us < 9_950 ? "%.1fms" : "%.0fms", us / 1000) }
    return String(format: "%.1fs", us / 1e6)
}

/// One report: the counts of `st` (less those of `since`, as rates over
/// `seconds`, when given), a line for the array and one per member.
func iostatReport(_ st: ArrayStatus, since: ArrayStatus?, seconds: Double?, mountpoint: String) -> String {
    let columns = ["read", "write", "flush", "open", "xattr", "rename", "other", "rMB", "wMB", "mean", "high"]
    let widths = [7, 7, 7, 7, 7, 7, 7, 8, 8, 7, 7]
    func row(_ io: MemberIOStatus?) -> String {
        guard let io else { return columns.indices.map { padLeft("-", widths[$0]) }.joined() }
        let scale = seconds.map { 1 / max($0, 1e-9) } ?? 1
        let counts = [io.reads, io.writes, io.flushes, io.opens, io.xattrs, io.renames, io.other].map { compact(Double($0) * scale) }
        let mb = [io.readBytes, io.writeBytes].map { String(format: "%.1f", Double($0) * scale / 1e6) }
        let mean = io.operations > 0 ? Double(io.latencyMicroseconds) / Double(io.operations) : nil
        let cells = counts + mb + [latencyText(mean), latencyText(io.highLatencyMicroseconds.map { Double($0) })]
        return cells.enumerated().map { padLeft($1, widths[$0]) }.joined()
    }
    let per = st.members.map { m -> MemberIOStatus? in
        guard let io = m.io else { return nil }
        guard let before = since?.members.first(where: { $0.index == m.index && $0.path == m.path })?.io else {
            return since == nil ? io : nil   // a member that changed meanwhile has no rate yet
        }
        return io.since(before)
    }
    let total = per.compactMap { $0 }.reduce(MemberIOStatus()) { $0.adding($1) }
    var out = seconds.map { String(format: "%@: per second over the last %.1f s\n", mountpoint, $0) }
        ?? "\(mountpoint): since the daemon started\n"
    out += pad("", 6) + columns.enumerated().map { padLeft($1, widths[$0]) }.joined() + "  MEMBER\n"
    out += pad("", 6) + row(total) + "  raid\(st.level) array (\(st.members.count) members)\n"
    for (m, io) in zip(st.members, per) {
        out += padLeft("\(m.index)", 4) + "  " + row(io) + "  " + (m.path.isEmpty ? "-" : m.path) + "\n"
    }
    return out
}
