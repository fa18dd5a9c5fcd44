import ArgumentParser
import Foundation
import RAIDControl
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// `raidctl metrics`: the Prometheus text format (version 0.0.4), for
/// node_exporter's textfile collector. The md names node_exporter's mdadm
/// collector gives (dashboards and alerts written for md read raidfs
/// arrays unchanged, `device` being the mount point), then raidfs's own.
struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print mounted arrays' state in the Prometheus text format (node_exporter's md names and raidfs_*).",
        discussion: "Exit 4 when a daemon did not answer; its raidfs_up is then 0 and it has no other series.")
    @Argument(help: "The mount points.") var mountpoints: [String]

    func validate() throws {
        guard !mountpoints.isEmpty else { throw ValidationError("give at least one mount point") }
    }

    func run() throws {
        var out = MetricsText()
        var unreachable = false
        for mp in mountpoints {
            let device = absolutePath(mp)
            do {
                let st = try ControlClient.request(mp, ControlRequest(command: .status)).status!
                out.add(device: device, st, capacityKiB: capacityKiB(device))
            } catch let e as DaemonUnreachable {
                FileHandle.standardError.write(Data("raidctl: \(e.message)\n".utf8))
                out.sample("raidfs_up", ["device": device], 0)
                unreachable = true
            }
        }
        print(out.text, terminator: "")
        if unreachable { throw ExitCode(DaemonUnreachable.exitCode) }
    }

    /// The array's size as `df` shows it, in 1 KiB blocks (node_md_blocks'
    /// unit, /proc/mdstat's).
    private func capacityKiB(_ mountpoint: String) -> Double? {
        var s = statvfs()
        guard statvfs(mountpoint, &s) == 0 else { return nil }
        return Double(s.f_blocks) * Double(s.f_frsize) / 1024
    }
}

extension Dictionary where Key == String, Value == String {
    /// These labels and `more`.
    func adding(_ more: [String: String]) -> [String: String] { merging(more) { old, _ in old } }
}

/// Samples grouped by metric family, each family once with its HELP and
/// TYPE, as the text format requires.
struct MetricsText {
    private struct Family {
        let help: String
        let type: String
        var lines: [String] = []
    }
    private var order: [String] = []
    private var families: [String: Family] = [:]

    private static let described: [String: (help: String, type: String)] = [
        "node_md_state": ("Indicates the state of md-device.", "gauge"),
        "node_md_disks": ("Number of active/failed/spare disks of device.", "gauge"),
        "node_md_disks_required": ("Total number of disks of device.", "gauge"),
        "node_md_blocks": ("Total number of blocks on device.", "gauge"),
        "node_md_blocks_synced": ("Number of blocks synced on device.", "gauge"),
        "raidfs_up": ("1 when the array's daemon answered raidctl.", "gauge"),
        "raidfs_array_info": ("The array's UUID and RAID level.", "gauge"),
        "raidfs_member_state": ("1 for the state of each role's member (active, degraded, faulty, rebuilding, missing).", "gauge"),
        "raidfs_member_read_errors_total": ("Read errors of the member (READ), since raidctl clear.", "counter"),
        "raidfs_member_write_errors_total": ("Write errors of the member (WRITE), since raidctl clear.", "counter"),
        "raidfs_member_checksum_errors_total": ("Checksum errors of the member (CKSUM), since raidctl clear.", "counter"),
        "raidfs_member_syscalls_total": ("System calls the daemon made on the member since it started, by kind (raidctl iostat).", "counter"),
        "raidfs_member_read_bytes_total": ("Bytes the daemon read from the member since it started.", "counter"),
        "raidfs_member_written_bytes_total": ("Bytes the daemon wrote to the member since it started.", "counter"),
        "raidfs_member_syscall_seconds_total": ("Time the member's system calls took since the daemon started.", "counter"),
        "raidfs_scrub_running": ("1 while a scrub runs.", "gauge"),
        "raidfs_scrub_problems": ("Problems found by the scrub running, or the last one.", "gauge"),
        "raidfs_scrub_repaired": ("Problems repaired by the scrub running, or the last one.", "gauge"),
        "raidfs_scrub_unrecoverable": ("Stripes damaged beyond redundancy found by the scrub running, or the last one.", "gauge"),
        "raidfs_scrub_last_finished_timestamp_seconds": ("When the last complete scrub ended.", "gauge"),
        "raidfs_rebuild_progress_ratio": ("Progress of the rebuild or replacement running, 0 to 1.", "gauge"),
    ]

    static let memberStates = ["active", "degraded", "faulty", "rebuilding", "missing"]

    mutating func sample(_ name: String, _ labels: [String: String], _ value: Double) {
        if families[name] == nil {
            let d = MetricsText.described[name]!
            families[name] = Family(help: d.help, type: d.type)
            order.append(name)
        }
        let keys = labels.keys.sorted { a, b in a == "device" ? b != "device" : b == "device" ? false : a < b }
        let body = keys.map { "\($0)=\"\(MetricsText.escape(labels[$0]!))\"" }.joined(separator: ",")
        families[name]!.lines.append("\(name){\(body)} \(MetricsText.number(value))")
    }

    mutating func add(device: String, _ st: ArrayStatus, capacityKiB: Double?) {
        let d = ["device": device]
        sample("raidfs_up", d, 1)
        let mdState: String
        if st.state == "failed" { mdState = "inactive" }
        else if st.rebuild.running { mdState = "recovering" }
        else if st.scrub.running { mdState = st.scrub.mode == "check" ? "check" : "resync" }
        else { mdState = "active" }
        for s in ["active", "inactive", "recovering", "resync", "check"] {
            sample("node_md_state", d.adding(["state": s]), s == mdState ? 1 : 0)
        }
        let serving = st.members.filter { $0.state == "active" || $0.state == "degraded" }.count
        let lost = st.members.filter { $0.state == "faulty" || $0.state == "missing" }.count
        sample("node_md_disks", d.adding(["state": "active"]), Double(serving))
        sample("node_md_disks", d.adding(["state": "failed"]), Double(lost))
        sample("node_md_disks", d.adding(["state": "spare"]), Double(st.spares.count))
        sample("node_md_disks_required", d, Double(st.members.count))
        if let blocks = capacityKiB?.rounded(.down) {
            sample("node_md_blocks", d, blocks)
            let syncing = st.rebuild.running ? st.rebuild : st.scrub.running ? st.scrub : nil
            sample("node_md_blocks_synced", d, syncing.map { (blocks * max(0, min(1, $0.progress))).rounded(.down) } ?? blocks)
        }
        sample("raidfs_array_info", d.adding(["uuid": st.arrayUUID, "level": "\(st.level)"]), 1)
        for m in st.members {
            let ml = d.adding(["member": "\(m.index)", "path": m.path])
            for s in MetricsText.memberStates {
                sample("raidfs_member_state", ml.adding(["state": s]), m.state == s ? 1 : 0)
            }
            sample("raidfs_member_read_errors_total", ml, Double(m.readErrors))
            sample("raidfs_member_write_errors_total", ml, Double(m.writeErrors))
            sample("raidfs_member_checksum_errors_total", ml, Double(m.checksumErrors))
        }
        for m in st.members {
            guard let io = m.io else { continue }
            let ml = d.adding(["member": "\(m.index)", "path": m.path])
            for (kind, n) in [("open", io.opens), ("read", io.reads), ("write", io.writes), ("flush", io.flushes),
                              ("xattr", io.xattrs), ("rename", io.renames), ("other", io.other)] {
                sample("raidfs_member_syscalls_total", ml.adding(["kind": kind]), Double(n))
            }
            sample("raidfs_member_read_bytes_total", ml, Double(io.readBytes))
            sample("raidfs_member_written_bytes_total", ml, Double(io.writeBytes))
            sample("raidfs_member_syscall_seconds_total", ml, Double(io.latencyMicroseconds) / 1e6)
        }
        sample("raidfs_scrub_running", d, st.scrub.running ? 1 : 0)
        // Status gives the running scrub's counts, else the last one's;
        // before any scrub, no problems count (and zeros for the others).
        if let n = st.scrub.problems {
            sample("raidfs_scrub_problems", d, Double(n))
            sample("raidfs_scrub_repaired", d, Double(st.scrub.repaired ?? 0))
            sample("raidfs_scrub_unrecoverable", d, Double(st.scrub.unrecoverable ?? 0))
        }
        if let at = st.scrub.lastFinishedAt { sample("raidfs_scrub_last_finished_timestamp_seconds", d, at) }
        if st.rebuild.running { sample("raidfs_rebuild_progress_ratio", d, max(0, min(1, st.rebuild.progress))) }
    }

    var text: String {
        order.map { name in
            let f = families[name]!
            return "# HELP \(name) \(f.help)\n# TYPE \(name) \(f.type)\n" + f.lines.joined(separator: "\n") + "\n"
        }.joined()
    }

    /// A label value as the text format writes it: backslash, double quote
    /// and line feed escaped.
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }
}
