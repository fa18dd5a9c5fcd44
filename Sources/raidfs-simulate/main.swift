import ArgumentParser
import CLinux
import Foundation
import RAIDCore
import RAIDSimulation

/// `tools/simulate`: the deterministic simulation as a command, for soak
/// runs. Each seed runs the engine over simulated members on one thread;
/// the same options print the same digest.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raidfs-simulate",
        abstract: "Run the engine over simulated members with a seeded workload, faults and power cuts.")

    enum Switch: String, ExpressibleByArgument { case on, off }

    @Option(help: "RAID level: 1, 5 or 6.") var level: Int
    @Option(help: "Members (default: 3 for RAID 1, 4 for RAID 5, 6 for RAID 6).") var members: Int?
    @Option(help: "The first seed.") var seed: UInt64
    @Option(help: "How many seeds to run, from --seed on.") var seeds: Int = 1
    @Option(help: "Operations per seed.") var ops: Int
    @Option(help: "Faults within redundancy, and fail, add, replace: on or off.") var faults: Switch = .on
    @Option(name: .customLong("power-cuts"), help: "Process crashes and power cuts: on or off.") var powerCuts: Switch = .on
    @Option(help: "Hard links in the workload: on or off.") var links: Switch = .on
    @Option(name: .customLong("beyond-redundancy"),
            help: "Read faults on one role more than the level tolerates (reads right or EIO, never wrong): on or off.")
    var beyondRedundancy: Switch = .off
    @Option(help: "Rot on as many members as the level tolerates, flaky reads on one more, rebuilds and replacements running: every read must succeed. On or off.")
    var combined: Switch = .off
    @Flag(help: "Print every operation to stderr.") var trace = false
    @Flag(name: .customLong("keep-going"), help: "Run every seed even after a divergence; exit 1 at the end if any diverged.")
    var keepGoing = false
    @Flag(help: "Check the namespace, sizes, headers and hard links after every operation.") var paranoid = false

    func validate() throws {
        guard let l = RAIDLevel(rawValue: level) else { throw ValidationError("--level \(level): must be 1, 5 or 6") }
        if let m = members, m < l.minimumMemberCount || m > 16 {
            throw ValidationError("--members \(m): RAID \(level) needs \(l.minimumMemberCount) to 16")
        }
        if combined == .on && (beyondRedundancy == .on || faults == .off) {
            throw ValidationError("--combined on: needs --faults on, and excludes --beyond-redundancy on")
        }
        guard ops > 0 else { throw ValidationError("--ops \(ops): must be at least 1") }
        guard seeds > 0 else { throw ValidationError("--seeds \(seeds): must be at least 1") }
    }

    func run() throws {
        let l = RAIDLevel(rawValue: level)!
        let n = members ?? [1: 3, 5: 4, 6: 6][level]!
        var totalOps = 0
        var diverged: [UInt64] = []
        var stopped: [UInt64] = []
        let start = Date()
        for s in seed..<(seed + UInt64(seeds)) {
            var o = SimulationOptions(level: l, members: n, seed: s, ops: ops)
            o.faults = faults == .on
            o.powerCuts = powerCuts == .on
            o.hardLinks = links == .on
            o.beyondRedundancy = beyondRedundancy == .on
            o.combinedFaults = combined == .on
            o.trace = trace
            o.paranoid = paranoid
            let t0 = Date()
            let r = Simulation(o).run()
            totalOps += r.steps
            let head = "seed \(s) RAID \(level) x\(n): \(r.steps) ops, digest \(String(format: "%016llx", r.digest))"
            if let d = r.divergence {
                print("\(head): DIVERGED at step \(d.step), \(d.operation): \(d.message)")
                print("replay: \(o.command) --trace")
                diverged.append(s)
                if keepGoing { continue }
                throw ExitCode(1)
            }
            if let why = r.stoppedEarly {
                print("\(head), stopped: \(why) (\(r.summary))")
                stopped.append(s)
                continue
            }
            print("\(head), clean in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s (\(r.summary))")
        }
        if seeds > 1 {
            var outcome = diverged.isEmpty ? "no divergence" : "\(diverged.count) diverged (seeds \(diverged.map(String.init).joined(separator: " ")))"
            if !stopped.isEmpty { outcome += ", \(stopped.count) stopped where the daemon refuses the array (seeds \(stopped.map(String.init).joined(separator: " ")))" }
            print("\(seeds) seeds, \(totalOps) operations, \(outcome), \(String(format: "%.0f", Date().timeIntervalSince(start))) s")
        }
        if !diverged.isEmpty { throw ExitCode(1) }
    }
}

raidfs_line_buffered_stdout()
Simulate.main()
