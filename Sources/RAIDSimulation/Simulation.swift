import Foundation
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// What one simulation run does.
public struct SimulationOptions: Sendable {
    public var level: RAIDLevel
    public var members: Int
    public var seed: UInt64
    public var ops: Int
    /// Faults within the level's redundancy: bit rot, EIO, vanish, latency;
    /// and fail, add (hot spares, before and after a failure), replace.
    public var faults = true
    /// Process crashes and power cuts (unsynced writes dropped or torn per
    /// member) at any mutation of any member, then remount and resync.
    public var powerCuts = true
    /// Hard links in the workload (link, and renames between two names of
    /// one file).
    public var hardLinks = true
    /// Read faults (bit rot, EIO) also on one role more than the level
    /// tolerates: every read must then be right or fail with EIO, never
    /// return wrong bytes; a write that fails leaves each byte old or new.
    public var beyondRedundancy = false
    /// Faults that come together, all within what redundancy can serve:
    /// rot in the member files of as many roles as the level tolerates
    /// (counting roles being rebuilt), flaky reads (EIO or bit rot on half
    /// of them) on one role more, while rebuilds and replacements run.
    /// Every read must succeed and be right: none may fail with EIO.
    public var combinedFaults = false
    /// Prints every operation to stderr.
    public var trace = false
    /// After every step, also checks the namespace, every file's size, the
    /// active members' headers and that each member holds a file's names
    /// as one file (slower; finds a divergence where it starts).
    public var paranoid = false

    public init(level: RAIDLevel, members: Int, seed: UInt64, ops: Int) {
        self.level = level
        self.members = members
        self.seed = seed
        self.ops = ops
    }

    /// The command that replays this run.
    public var command: String {
        "tools/simulate --level \(level.rawValue) --members \(members) --seed \(seed) --ops \(ops)"
            + " --faults \(faults ? "on" : "off") --power-cuts \(powerCuts ? "on" : "off") --links \(hardLinks ? "on" : "off")"
            + (beyondRedundancy ? " --beyond-redundancy on" : "") + (combinedFaults ? " --combined on" : "")
            + (paranoid ? " --paranoid" : "")
    }
}

/// Where a run left the model: the step, its operation and what differed.
public struct SimulationDivergence: Error, CustomStringConvertible {
    public let step: Int
    public let operation: String
    public let message: String
    public var description: String { "step \(step), \(operation): \(message)" }
}

/// What a run did.
/// The run ends early, rightly (see `SimulationReport.stoppedEarly`).
struct SimulationStop: Error {
    let reason: String
}

public struct SimulationReport: Sendable {
    /// FNV-1a over every operation's outcome and the final state: the same
    /// options give the same digest.
    public var digest: UInt64 = 0xcbf2_9ce4_8422_2325
    public var steps = 0
    /// How often each kind of thing happened (operations, faults, crashes,
    /// rebuilds finished, scrubs, ...).
    public var counts: [String: Int] = [:]
    public var divergence: SimulationDivergence?
    /// Why the run ended before its operations without diverging: after
    /// damage beyond redundancy, a crash left an array the daemon refuses
    /// to mount (dirty and degraded) until an operator says `-o force`.
    public var stoppedEarly: String?

    mutating func mix(_ s: String) {
        for b in s.utf8 { digest = (digest ^ UInt64(b)) &* 0x100_0000_01b3 }
        digest = (digest ^ 0xff) &* 0x100_0000_01b3
    }
    mutating func count(_ what: String) { counts[what, default: 0] += 1 }

    public var summary: String {
        counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}

/// The whole engine over simulated members, on one thread: a seeded
/// workload checked against an in-memory model, with faults, member
/// changes, maintenance steps, process crashes and power cuts drawn from
/// the same seed. Background jobs run only when the simulation steps them
/// (`JobRunner.stepped`), the clock is logical and identifiers are seeded,
/// so one seed gives one exact sequence and one digest.
public final class Simulation {
    let options: SimulationOptions
    var rng: SeededGenerator
    let env: SimulatedEnvironment
    let crash = SimulatedCrash()
    var array: RAIDArray!
    /// Files the workload keeps open across operations, as programs keep
    /// files open: a file's open state (its checksum table cache among it)
    /// then outlives the writes, truncates, rebuilds and scrubs between.
    var held: [ArrayFile] = []
    /// Every member that may hold a part of the array (roles, spares; a
    /// failed one until it is replaced), by name.
    var disks: [String: SimulatedMember] = [:]
    var memberSerial = 0
    var model = Model()
    var report = SimulationReport()
    var step = 0
    var operation = ""
    /// Roles with a fault injected since the faults were last cleared.
    var faulty = Set<Int>()
    /// --combined: the members whose files have rotted (by name: a member
    /// that takes the role brings none of it), and the one with flaky reads.
    var rottedMembers = Set<String>()
    var flakyMember: String?
    /// How many rots so far, and how many there had been when the last
    /// whole scrub started (nil: none since).
    var rots = 0
    var rotsAtScrubStart: Int?
    /// Files an operation failed on beyond redundancy: each byte is the old
    /// one or a new one (or the file is unreadable) until the faults go and
    /// they are read back (`settleTainted`).
    var tainted = Set<Int>()
    var monitorTicks = 0
    /// The engine's log goes to stderr with --trace, else nowhere.
    lazy var logger: Logger = {
        let trace = options.trace
        return Logger(label: "raidfs-simulate", factory: { label -> LogHandler in
            trace ? StreamLogHandler.standardError(label: label) : SwiftLogNoOpLogHandler()
        })
    }()
    let root = Caller(uid: 0, gid: 0)

    // MARK: the model

    /// A file's contents as the workload knows them.
    struct Inode {
        var current: [UInt8] = []
        /// As of the last moment every byte was known durable.
        var durable: [UInt8] = []
        /// Changes since then, oldest first: after a power cut each byte is
        /// the durable one or one of these.
        var pending: [Change] = []
        enum Change { case write(Int, [UInt8]), truncate(Int) }

        mutating func apply(_ c: Change) {
            Inode.apply(c, to: &current)
            pending.append(c)
        }
        static func apply(_ c: Change, to buf: inout [UInt8]) {
            switch c {
            case .write(let off, let bytes):
                if buf.count < off + bytes.count { buf += [UInt8](repeating: 0, count: off + bytes.count - buf.count) }
                buf.replaceSubrange(off..<(off + bytes.count), with: bytes)
            case .truncate(let size):
                if size < buf.count { buf.removeLast(buf.count - size) } else { buf += [UInt8](repeating: 0, count: size - buf.count) }
            }
        }
        mutating func synced() { durable = current; pending = [] }

        /// Nil when every byte of `actual` is the durable one or one a later
        /// change wrote (or a zero a truncation or extension could leave).
        func explain(_ actual: [UInt8]) -> String? {
            if actual == current || actual == durable { return nil }
            if pending.isEmpty {
                let k = (0..<min(actual.count, durable.count)).first { actual[$0] != durable[$0] } ?? min(actual.count, durable.count)
                let end = (k..<min(actual.count, durable.count)).last { actual[$0] != durable[$0] } ?? k
                return "content differs from the synced content (size \(actual.count), expected \(durable.count)): bytes \(k)–\(end) differ"
                    + (k < actual.count ? ", byte \(k) is \(actual[k])" + (k < durable.count ? " not \(durable[k])" : "") : "")
            }
            var sizes = Set([durable.count, current.count])
            var buf = durable
            for c in pending { Inode.apply(c, to: &buf); sizes.insert(buf.count) }
            let truncated = pending.contains { if case .truncate = $0 { return true } else { return false } }
            if !truncated && actual.count < durable.count { return "size \(actual.count) below the synced \(durable.count)" }
            let maxSize = sizes.max()!
            if actual.count > maxSize { return "size \(actual.count) above any written (\(maxSize))" }
            var written = [Set<UInt8>?](repeating: nil, count: actual.count)
            for c in pending {
                guard case .write(let off, let bytes) = c else { continue }
                for (i, v) in bytes.enumerated() where off + i < actual.count {
                    if written[off + i] == nil { written[off + i] = [] }
                    written[off + i]!.insert(v)
                }
            }
            for (k, a) in actual.enumerated() {
                if k < durable.count && a == durable[k] { continue }
                if written[k]?.contains(a) ?? false { continue }
                if a == 0 && (truncated || k >= durable.count) { continue }
                return "byte \(k) is \(a): neither the synced value nor a later write"
                    + " (synced size \(durable.count), current \(current.count) [\(k < current.count ? String(current[k]) : "-")], changes since: "
                    + pending.map { c -> String in
                        switch c {
                        case .write(let o, let b): return "w\(o)+\(b.count)" + (o <= k && k < o + b.count ? "[\(b[k - o])]" : "")
                        case .truncate(let n): return "t\(n)"
                        }
                    }.joined(separator: " ") + ")"
            }
            return nil
        }
    }

    struct Model {
        var names: [String: Int] = [:]
        var inodes: [Int: Inode] = [:]
        var dirs: Set<String> = ["/"]
        var nextInode = 1
        var files: [String] { names.keys.sorted() }
    }

    public init(_ options: SimulationOptions) {
        self.options = options
        // Spread the seed (SeededGenerator keeps only odd states).
        var z = options.seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        rng = SeededGenerator(seed: z ^ (z >> 31))
        env = SimulatedEnvironment(seed: rng.next())
    }

    func below(_ n: Int) -> Int { Int(rng.next() % UInt64(max(n, 1))) }
    func chance(_ percent: Int) -> Bool { below(100) < percent }
    func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        out.withUnsafeMutableBytes { p in
            var i = 0
            while i + 8 <= n { p.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self); i += 8 }
            while i < n { p[i] = UInt8(truncatingIfNeeded: rng.next()); i += 1 }
        }
        return out
    }

    var redundancy: Int { options.level.redundancy(memberCount: options.members) }
    /// More roles have been compromised than the level tolerates (only with
    /// --beyond-redundancy): from then on a read may fail with EIO, and so
    /// may a write, for what was lost then (a rebuild that could not
    /// rebuild a stripe leaves it unreadable, and a scrub may not get it
    /// back before another member fails). Never wrong bytes.
    var mayLose: Bool {
        noteIfBeyond()
        return wentBeyond
    }
    var wentBeyond = false
    func noteIfBeyond() {
        if options.beyondRedundancy && !wentBeyond && compromised.count > redundancy { wentBeyond = true }
    }

    /// Roles not serving in full: failed, missing, rebuilding, or with a
    /// fault injected.
    var compromised: Set<Int> {
        Set((0..<options.members).filter { r in
            array.roleState(r) != .active || array.member(r).map { rottedMembers.contains($0.name) } == true
        }).union(faulty)
    }

    func newMember() -> SimulatedMember {
        memberSerial += 1
        let m = SimulatedMember(name: "sim-\(memberSerial)")
        m.crash = crash
        m.clock = { [env] in env.wallClockSeconds() }
        disks[m.name] = m
        return m
    }

    func fail(_ message: String) -> SimulationDivergence {
        SimulationDivergence(step: step, operation: operation, message: message)
    }

    // MARK: running

    /// Runs the whole workload; the report says whether it diverged.
    public func run() -> SimulationReport {
        do {
            try setUp()
            while step < options.ops {
                try runStep()
                step += 1
            }
            operation = "final check"
            try finish()
        } catch let d as SimulationDivergence {
            report.divergence = d
        } catch let stop as SimulationStop {
            report.stoppedEarly = stop.reason
            report.mix("stopped: \(stop.reason)")
        } catch {
            report.divergence = fail("unexpected error: \(error)")
        }
        report.steps = step
        held = []
        if let a = array { a.shutdown() }
        env.jobs.runUntilIdle()
        return report
    }

    func setUp() throws {
        let members = (0..<options.members).map { _ in newMember() }
        // Odd seeds keep file headers in attributes, even ones in the
        // member files (an array with a member that takes no attributes).
        _ = try RAIDCore.ArrayCreator.initialize(level: options.level, chunkSizeBytes: 4096, members: members,
                                                 metadata: options.seed % 2 == 0 ? .file : .attribute, environment: env)
        try mount()
        try array.mkdir("/d", mode: 0o755, caller: root)
        model.dirs.insert("/d")
    }

    /// Assembles the array from the members it may hold, runs the crash
    /// resync if one is due, and keeps only the members it took.
    func mount() throws {
        var configuration = ArrayConfiguration()
        configuration.scrubIntervalSeconds = 3_600
        let (a, _) = try RAIDArray.assemble(members: disks.keys.sorted().map { disks[$0]! }, configuration: configuration,
                                            logger: logger, environment: env)
        if a.needsResync && a.state != .clean {   // raidfs refuses it without -o force
            // Beyond redundancy a rebuild or a write may fail a member in
            // the very step a crash comes: refusing is then right, and where
            // an operator takes over, the run ends.
            guard wentBeyond else { throw fail("the array is dirty and \(a.state.rawValue) at mount: the daemon would refuse it") }
            throw SimulationStop(reason: "after damage beyond redundancy a crash left the array dirty and \(a.state.rawValue): the daemon refuses it without -o force")
        }
        try a.markInUse()
        a.seedFileIds(rng.next())
        // Every event counted (what the maintenance finished), and traced.
        _ = a.eventLog.follow { [unowned self] e in
            report.count("event:" + e.kind)
            // --combined: a whole repair scrub that started after the last
            // rot and lost nothing has rewritten every rotted sector.
            if e.eventKind == .scrubStarted && e.message.contains("of every file") { rotsAtScrubStart = rots }
            if e.eventKind == .scrubFinished && e.message.contains("(repair) of every file") && e.message.hasSuffix(" 0 beyond redundancy")
                && rotsAtScrubStart == rots {
                rottedMembers = []
            }
            if options.trace {
                FileHandle.standardError.write("  event: \(e.kind)\(e.member.map { " member \($0)" } ?? ""): \(e.message)\n".data(using: .utf8)!)
            }
        }
        array = a
        faulty = []
        // A replacement the last mount left running goes on (the daemon
        // does this as it starts its background work).
        a.resumeMaintenance()
        let kept = Set((0..<options.members).compactMap { a.member($0)?.name } + a.spares.map { $0.name }
                       + a.membership.shadowRoles.compactMap { a.shadowMember($0)?.name })
        disks = disks.filter { kept.contains($0.key) }
    }

    func runStep() throws {
        env.advance(by: Double(below(400)) / 1000)
        // A crash lands only while the array is whole: a dirty array that
        // is also degraded is refused at mount (as md refuses one), since
        // its missing members' chunks would be rebuilt from parity a crash
        // may have left behind. So a crash is armed only with every role
        // active and no fault injected, and put off when that changes.
        if !compromised.isEmpty { putOffCrash() }
        if options.powerCuts && !crashArmed && compromised.isEmpty && chance(1) {
            crashArmed = true
            crash.arm(after: below(40))
        }
        let before = model
        let rebuildsBefore = report.counts["event:rebuild-finished", default: 0]
        var touched = Set<String>()
        noteIfBeyond()
        do {
            try performRandomOperation(&touched)
        } catch let d as SimulationDivergence {
            if !crashed { throw d }
        } catch let e as FSError where e.errno == EIO && !crashed && mayLose && isDataOperation {
            report.count("eio-beyond-redundancy")
            if options.trace { FileHandle.standardError.write("  failed beyond redundancy: \(e)\n".data(using: .utf8)!) }
            for path in touched { if let id = model.names[path] { tainted.insert(id) } }
        } catch {
            if !crashed { throw fail("failed: \(error)") }
        }
        if !crashed && options.paranoid {
            let (files, dirs) = try actualNamespace()
            if files != Set(model.names.keys) || dirs != model.dirs {
                throw fail(namespaceDifference(files, dirs))
            }
            for r in 0..<options.members where array.isActive(r) {
                guard let m = disks[array.memberName(r)] else { continue }   // below the fault layer: checking draws no fault
                var inodeOf: [Int: (String, ino_t)] = [:]
                for (path, id) in model.names.sorted(by: { $0.key < $1.key }) {
                    guard let st = try? m.lstat(path) else { continue }
                    if let (other, ino) = inodeOf[id], ino != st.st_ino { throw fail("member \(r) holds \(path) and \(other) as two files") }
                    inodeOf[id] = (path, st.st_ino)
                }
            }
            for (path, id) in model.names where !tainted.contains(id) {
                let want = model.inodes[id]!.current.count
                let got = Int(try array.getattr(path).st_size)
                if got != want { throw fail("\(path): size \(got), expected \(want)") }
                for r in 0..<options.members {
                    guard array.isActive(r), let m = disks[array.memberName(r)], let f = try? m.open(path, flags: O_RDONLY, mode: 0) else { continue }
                    defer { f.close() }
                    if let h = (try? array.layout.readAttribute(f))?.header, Int(h.size) > want { throw fail("\(path): member \(r) header says \(h.size), expected \(want)") }
                }
            }
        }
        // A rebuild that finished in this step: its member must agree with
        // the rest. Every run checks (a stale chunk on a rebuilt member is
        // found here, not when a later failure reads it); only with no
        // fault injected, which the check's reads would draw on and find.
        // (Beyond redundancy a rebuild may have left stripes it could not
        // rebuild: the final check repairs what it can first.)
        if !crashed && faulty.isEmpty && !wentBeyond && rottedMembers.isEmpty
            && report.counts["event:rebuild-finished", default: 0] > rebuildsBefore {
            try checkRedundancy("after a rebuild finished")
        }
        if crashed {
            try recoverFromCrash(before: before, touched: touched)
        } else if array.state == .failed {
            throw fail("the array failed with \(compromised.count) of \(options.members) members compromised (redundancy \(redundancy))")
        }
    }
    var crashArmed = false
    /// The armed crash fired in this step.
    var crashed: Bool { crashArmed && crash.fired }

    func note(_ what: String, _ outcome: String = "") {
        operation = what
        report.count(String(what.split(separator: " ").first ?? ""))
        report.mix("\(step) \(what) \(outcome)")
        if options.trace { FileHandle.standardError.write("\(step) \(what)\n".data(using: .utf8)!) }
    }

    /// Closes the files kept open.
    func letGo() {
        for af in held { array.release(af) }
        held = []
    }

    func randomFile() -> String? {
        let f = model.files
        return f.isEmpty ? nil : f[below(f.count)]
    }
    func randomDir() -> String {
        let d = model.dirs.sorted()
        return d[below(d.count)]
    }
    func newName(in dir: String, _ prefix: String) -> String? {
        let p = (dir == "/" ? "/" : dir + "/") + prefix + String(below(10))
        return model.names[p] == nil && !model.dirs.contains(p) ? p : nil
    }

    func performRandomOperation(_ touched: inout Set<String>) throws {
        // While a background job runs, a fifth of the steps are its.
        let r = !env.jobs.pending.isEmpty && chance(20) ? 800 : below(1000)
        switch r {
        case 0..<60:     // create
            guard model.names.count < 40, let path = newName(in: randomDir(), "f") else { return }
            note("create \(path)")
            touched.insert(path)
            model.names[path] = model.nextInode
            model.inodes[model.nextInode] = Inode()
            model.nextInode += 1
            do {
                array.release(try array.create(path, mode: 0o644, exclusive: true, caller: root))
            } catch let e as FSError where e.errno == EIO && mayLose && !crashed {
                // Made on the members, its header unreadable: there or not.
                // (A crash's EIO is the crash's: its check decides.)
                report.count("eio-beyond-redundancy")
                if !listed(path) { model.names[path] = nil; dropUnnamedInodes() } else { tainted.insert(model.names[path]!) }
            }
        case 60..<380:   // write
            guard let path = randomFile() else { return }
            let size = model.inodes[model.names[path]!]!.current.count
            let offset = chance(30) ? size : below(min(size + 8_192, 70_000))
            let data = bytes(1 + below([64, 4_096, 20_000][below(3)]))
            note("write \(path) \(offset)+\(data.count)")
            touched.insert(path)
            let id = model.names[path]!
            model.inodes[id]!.apply(.write(offset, data))
            let af = try array.open(path)
            defer { array.release(af) }
            try data.withUnsafeBytes { try af.write(from: $0.baseAddress!, count: data.count, at: UInt64(offset)) }
            if chance(15) || model.inodes[id]!.pending.count > 24 {
                try af.sync(dataOnly: chance(50))
                acknowledgeSync(id)
            }
        case 380..<430:  // truncate
            guard let path = randomFile() else { return }
            let size = below(70_000)
            note("truncate \(path) \(size)")
            touched.insert(path)
            model.inodes[model.names[path]!]!.apply(.truncate(size))
            let af = try array.open(path)
            defer { array.release(af) }
            try af.truncate(to: UInt64(size))
        case 430..<660:  // read a range
            guard let path = randomFile() else { return }
            let want = model.inodes[model.names[path]!]!.current
            let offset = below(want.count + 1), count = 1 + below(16_384)
            note("read \(path) \(offset)+\(count)")
            let got: [UInt8]
            do {
                got = try read(path, offset: offset, count: count)
            } catch let e as FSError where e.errno == EIO && mayLose {
                report.count("read-eio-beyond-redundancy")
                return
            }
            // Each byte old or new: checked whole when the faults are gone.
            if tainted.contains(model.names[path]!) { return }
            let expect = Array(want[min(offset, want.count)..<min(offset + count, want.count)])
            if got != expect { throw fail("\(path) at \(offset)+\(count): " + difference(got, expect)) }
            report.mix(String(crc(got)))
        case 660..<680:  // keep a file open, or close one kept
            if held.count < 3, let path = randomFile() {
                note("hold \(path)")
                do {
                    held.append(try array.open(path))
                } catch let e as FSError where e.errno == EIO && mayLose {
                    report.count("open-eio-beyond-redundancy")
                }
            } else if !held.isEmpty {
                note("let go \(held[0].displayPath)")
                array.release(held.removeFirst())
            }
        case 680..<720:  // rename
            guard let from = randomFile() else { return }
            let target = chance(30) ? randomFile() : newName(in: randomDir(), "r")
            guard let to = target, to != from else { return }
            note("rename \(from) \(to)")
            letGo()   // (no open file loses its last name here)
            touched.formUnion([from, to])
            // Two names of one file: rename(2) does nothing.
            if model.names[to] != model.names[from] {
                model.names[to] = model.names.removeValue(forKey: from)!
                dropUnnamedInodes()
            }
            try array.rename(from, to, flags: 0)
        case 720..<750:  // unlink
            guard let path = randomFile() else { return }
            note("unlink \(path)")
            letGo()
            touched.insert(path)
            model.names[path] = nil
            dropUnnamedInodes()
            try array.unlink(path)
        case 750..<770:  // link
            guard options.hardLinks, let from = randomFile(), let to = newName(in: randomDir(), "l") else { return }
            note("link \(from) \(to)")
            touched.formUnion([from, to])
            model.names[to] = model.names[from]
            try array.link(from, to)
        case 770..<785:  // mkdir
            guard model.dirs.count < 6, let path = newName(in: randomDir(), "d") else { return }
            note("mkdir \(path)")
            touched.insert(path)
            model.dirs.insert(path)
            try array.mkdir(path, mode: 0o755, caller: root)
        case 785..<795:  // rmdir
            let empty = model.dirs.filter { d in
                d != "/" && !model.dirs.contains { $0.hasPrefix(d + "/") } && !model.names.keys.contains { $0.hasPrefix(d + "/") }
            }.sorted()
            guard !empty.isEmpty else { return }
            let path = empty[below(empty.count)]
            note("rmdir \(path)")
            touched.insert(path)
            model.dirs.remove(path)
            try array.rmdir(path)
        case 795..<880:  // a background job's next step
            guard let job = env.jobs.pending.first else { return }
            note("step \(job)")
            report.count(job.contains("rebuild") ? "step-rebuild" : job.contains("scrub") ? "step-scrub" : "step-failover")
            env.jobs.step()
        case 880..<905:  // the monitor's tick
            monitorTicks += 1
            note("monitor \(monitorTicks)")
            array.monitorTick(monitorTicks)
        case 905..<960:
            guard options.faults else { return }
            try memberChange()
        case 960..<972:  // scrub
            note("scrub")
            do { _ = try array.startScrub(repair: true) } catch let e as FSError where e.errno == EBUSY {}
        case 972..<990:  // fsync a file
            guard let path = randomFile() else { return }
            note("fsync \(path)")
            let af = try array.open(path)
            defer { array.release(af) }
            try af.sync(dataOnly: false)
            acknowledgeSync(model.names[path]!)
        default:         // clean unmount and mount
            note("remount")
            letGo()
            array.shutdown()
            env.jobs.runUntilIdle()
            // A crash inside the unmount: nothing is known durable.
            if crashed { return }
            try mount()
            try settleTainted()
            for id in model.inodes.keys where !tainted.contains(id) { model.inodes[id]!.synced() }
            try checkEverything(strict: true)
        }
    }

    /// Roles that may not give a sector right (--combined): rotted, or not
    /// active (failed, missing, being rebuilt).
    var unreliableRoles: Set<Int> {
        Set((0..<options.members).filter { r in
            array.roleState(r) != .active || array.member(r).map { rottedMembers.contains($0.name) } ?? true
        })
    }

    /// --combined: rot on up to the level's redundancy, flaky reads on one
    /// more, a member failed (rebuilt by a spare), spares added, a
    /// replacement; never more than redundancy can serve.
    func combinedChange() throws {
        let unreliable = unreliableRoles
        let flakyRole = (0..<options.members).first { array.member($0)?.name == flakyMember }
        if flakyRole == nil { flakyMember = nil }
        let others = (0..<options.members).filter { !unreliable.contains($0) && $0 != flakyRole }
        switch below(10) {
        case 0..<3:
            guard unreliable.count < redundancy, !others.isEmpty else { return }
            let role = others[below(others.count)]
            guard let name = array.member(role)?.name, let disk = disks[name] else { return }
            let n = 1 + below(40)
            note("rot \(role) \(n)")
            putOffCrash()
            disk.rot(count: n, rng: &rng)
            rottedMembers.insert(name)
            rots += 1
        case 3..<5:
            guard flakyRole == nil, !others.isEmpty else { return }
            let role = others[below(others.count)]
            let fault = InjectedFault(kind: chance(50) ? .eioRead : .bitrot, rate: 0.5)
            note("flaky \(role) \(fault)")
            putOffCrash()
            flakyMember = array.member(role)?.name
            faulty.insert(role)
            _ = try array.injectFault(String(role), fault)
        case 5:
            note("clear-faults")
            _ = try array.clearFaults(nil)
            faulty = []
            flakyMember = nil
        case 6:
            guard unreliable.count < redundancy, !others.isEmpty else { return }
            try failOne(of: others)
        case 7..<9:
            try addSpare()
        default:
            guard unreliable.isEmpty else { return }
            try replaceOne()
        }
    }

    /// Fails one of `candidates`, as an administrator would.
    func failOne(of candidates: [Int]) throws {
        let role = candidates[below(candidates.count)]
        note("fail \(role)")
        putOffCrash()
        _ = try array.failByAdministrator(role, force: false)
    }

    /// A spare: before any failure (a hot spare) as well as after.
    func addSpare() throws {
        guard array.spares.count < 2 else { return }
        let m = newMember()
        note("add \(m.name)")
        _ = try array.addSpare(member: m, note: "simulated spare")
    }

    /// A role replaced onto a new member, while nothing else runs.
    func replaceOne() throws {
        guard env.jobs.pending.isEmpty, !array.rebuildStatus.running else { return }
        let role = below(options.members)
        let m = newMember()
        note("replace \(role) \(m.name)")
        do { try array.replace(role: role, with: m) } catch let e as FSError where e.errno == EBUSY {}
    }

    /// Faults and membership: inject, clear, fail, add a spare, replace.
    /// (A pending crash is put off first: injecting or failing makes the
    /// array degraded, where a crash would make it one the daemon refuses.)
    func memberChange() throws {
        if options.combinedFaults { return try combinedChange() }
        let lost = compromised
        switch below(10) {
        case 0..<4:
            // Beyond redundancy: read faults only, on one role more.
            guard lost.count < redundancy + (options.beyondRedundancy ? 1 : 0) else { return }
            let candidates = (0..<options.members).filter { !lost.contains($0) }
            let role = candidates[below(candidates.count)]
            // With read errors on every role, a member vanishing or failing
            // a write as well fails the array, rightly. So beyond
            // redundancy the run injects read faults only.
            let kinds: [FaultKind] = lost.count < redundancy && !options.beyondRedundancy
                ? [.bitrot, .eioRead, .eioWrite, .vanish, .latency] : [.bitrot, .eioRead]
            let kind = kinds[below(kinds.count)]
            let fault = InjectedFault(kind: kind, rate: [1, 0.5, 0.1][below(3)],
                                      count: chance(50) ? nil : 1 + below(20),
                                      latencyMilliseconds: kind == .latency ? 0 : nil)
            note("inject \(role) \(fault)")
            putOffCrash()
            faulty.insert(role)
            _ = try array.injectFault(String(role), fault)
        case 4..<6:
            note("clear-faults")
            _ = try array.clearFaults(nil)
            faulty = []
            try settleTainted()
        case 6:
            guard lost.count < redundancy else { return }
            try failOne(of: (0..<options.members).filter { !lost.contains($0) })
        case 7..<9:
            try addSpare()
        default:
            guard lost.isEmpty else { return }
            try replaceOne()
        }
    }

    func putOffCrash() {
        if crashArmed && !crash.fired { crash.disarm(); crashArmed = false }
    }

    /// The step's operation reads or writes a file's data (open, read,
    /// write, truncate, fsync) rather than changing the namespace.
    var isDataOperation: Bool {
        ["write", "truncate", "read", "fsync"].contains(String(operation.split(separator: " ").first ?? ""))
    }

    /// The faults are gone: every file a failed write left uncertain must
    /// read back as old or new bytes (`Inode.explain`), and the model takes
    /// what it holds.
    func settleTainted() throws {
        for id in tainted.sorted() where model.inodes[id] != nil {
            guard let path = model.names.filter({ $0.value == id }).keys.sorted().first else { continue }
            let got: [UInt8]
            do { got = try readAll(path) } catch let e as FSError where e.errno == EIO { continue }   // lost: stays tainted
            if let why = model.inodes[id]!.explain(got) {
                let fid = (try? array.open(path)).map { f -> UInt64 in defer { array.release(f) }; return f.fileId } ?? 0
                throw fail("\(path) (file id \(fid)) after a write failed beyond redundancy: \(why)")
            }
            model.inodes[id]!.current = got
            tainted.remove(id)
            report.mix("settled \(path) \(crc(got))")
        }
    }

    /// An fsync returned: its file is durable, unless the process "died"
    /// during it (a kill -9 answers nothing; the simulated one lets the
    /// engine run on with every mutation failing).
    func acknowledgeSync(_ id: Int) {
        // A tainted file's model is not what it holds until it is settled.
        if !crashed && !tainted.contains(id) { model.inodes[id]!.synced() }
    }

    func dropUnnamedInodes() {
        let named = Set(model.names.values)
        model.inodes = model.inodes.filter { named.contains($0.key) }
    }

    func read(_ path: String, offset: Int, count: Int) throws -> [UInt8] {
        let af = try array.open(path)
        defer { array.release(af) }
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try af.read(into: $0.baseAddress!, count: count, at: UInt64(offset)) }
        out.removeLast(count - n)
        return out
    }

    func readAll(_ path: String) throws -> [UInt8] {
        let size = Int(try array.getattr(path).st_size)
        return try read(path, offset: 0, count: size + 1)
    }

    func crc(_ b: [UInt8]) -> UInt32 { b.withUnsafeBytes { crc32c($0.baseAddress!, count: b.count) } }

    func difference(_ got: [UInt8], _ want: [UInt8]) -> String {
        let i = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
        return "read \(got.count) bytes, expected \(want.count); first difference at byte \(i)"
    }

    /// Whether the array lists `path`: a file whose header cannot be read
    /// still has its name.
    func listed(_ path: String) -> Bool {
        let cut = path.lastIndex(of: "/")!
        let dir = cut == path.startIndex ? "/" : String(path[..<cut])
        let name = path[path.index(after: cut)...]
        return ((try? array.list(dir)) ?? []).contains { $0.name == name }
    }

    /// What the array shows that the model lacks, and the reverse.
    func namespaceDifference(_ files: Set<String>, _ dirs: Set<String>) -> String {
        let names = Set(model.names.keys)
        return "namespace differs: the array has files \(files.subtracting(names).sorted()) and directories "
            + "\(dirs.subtracting(model.dirs).sorted()) the model lacks, and lacks files \(names.subtracting(files).sorted()) "
            + "and directories \(model.dirs.subtracting(dirs).sorted())"
    }

    /// The namespace as the array shows it.
    func actualNamespace() throws -> (files: Set<String>, dirs: Set<String>) {
        var files = Set<String>(), dirs: Set<String> = ["/"]
        try array.walk { path, type in
            // The orphan area, which the FUSE adapter hides.
            if path.hasPrefix("/" + RAIDArray.reservedPrefix) { return true }
            if type == UInt8(DT_DIR) { dirs.insert(path) } else { files.insert(path) }
            return true
        }
        return (files, dirs)
    }

    /// Every name and every byte against the model. `strict`: each file
    /// must hold exactly what was written; else (after a power cut) what
    /// the durable content and later changes explain, which the model then
    /// adopts.
    func checkEverything(strict: Bool, uncertain: Set<Int> = []) throws {
        let (files, dirs) = try actualNamespace()
        if files != Set(model.names.keys) || dirs != model.dirs {
            throw fail(namespaceDifference(files, dirs))
        }
        var seen: [Int: [UInt8]] = [:]
        for path in model.files {
            let id = model.names[path]!
            let got: [UInt8]
            do {
                got = try readAll(path)
            } catch let e as FSError where e.errno == EIO && mayLose {
                report.count("lost-beyond-redundancy")
                tainted.insert(id)
                continue
            }
            if let other = seen[id] {
                if other != got { throw fail("\(path) and another name of its file read differently") }
                continue
            }
            seen[id] = got
            let inode = model.inodes[id]!
            if strict && !uncertain.contains(id) && !tainted.contains(id) {
                if got != inode.current { throw fail("\(path): " + difference(got, inode.current)) }
            } else if let why = inode.explain(got) {
                throw fail("\(path): \(why)")
            }
            report.mix("\(path) \(crc(got))")
        }
        // From here the model is what the array holds, all of it durable.
        array.syncAllMembers()
        for (id, content) in seen {
            model.inodes[id]!.current = content
            model.inodes[id]!.synced()
            tainted.remove(id)
        }
    }

    /// The process died at a mutation inside the step (`before` is the
    /// model as the step began): perhaps a power cut too. Restart, resync,
    /// and check that the namespace is the one before the step or after it,
    /// and every byte explained.
    func recoverFromCrash(before: Model, touched: Set<String>) throws {
        let after = model
        let what = operation
        // Reap the dead process's jobs: every mutation fails from here, so
        // nothing they do reaches a member. Its open files go with it.
        held = []
        array.shutdown()
        env.jobs.runUntilIdle()
        array = nil
        let power = chance(60)
        let tear = chance(50)
        for name in disks.keys.sorted() where power { disks[name]!.powerCut(tear: tear, rng: &rng) }
        crash.disarm()
        crashArmed = false
        note("crash during \(what)" + (power ? (tear ? ", power cut, torn" : ", power cut") : ""))
        report.count(power ? "power-cut" : "process-crash")
        do { try mount() } catch let d as SimulationDivergence { throw d } catch let stop as SimulationStop { throw stop } catch { throw fail("no mount after the crash: \(error)") }
        let (files, dirs) = try actualNamespace()
        let matchesAfter = files == Set(after.names.keys) && dirs == after.dirs
        let matchesBefore = files == Set(before.names.keys) && dirs == before.dirs
        guard matchesAfter || matchesBefore else {
            func delta(_ model: Model) -> String {
                let names = Set(model.names.keys)
                return "missing \(names.subtracting(files).sorted() + model.dirs.subtracting(dirs).sorted()), "
                    + "extra \(files.subtracting(names).sorted() + dirs.subtracting(model.dirs).sorted())"
            }
            throw fail("after a crash during \(what): the namespace is neither the one before nor after it: "
                       + "against before, \(delta(before)); against after, \(delta(after))")
        }
        model = matchesAfter ? after : before
        if matchesAfter && !matchesBefore { report.count("crash-kept-change") }
        // The step's own file may hold its change in part.
        let ids = Set(touched.compactMap { before.names[$0] ?? after.names[$0] })
        if !matchesAfter {
            // The change did not land: the content the step wrote may have.
            for id in ids where model.inodes[id] != nil { model.inodes[id] = after.inodes[id] ?? model.inodes[id] }
        }
        try checkEverything(strict: !power, uncertain: ids)
        if options.paranoid { try checkRedundancy("after the crash during \(what)") }
    }

    /// Every stripe's mirrors or parity agree with its data: what a crash
    /// resync must leave behind, and the run's last word.
    func checkRedundancy(_ when: String) throws {
        var findings: [String] = []
        let summary = try array.checkAll(mode: .check) { findings.append($0.description) }
        if summary.problems != 0 || summary.unrecoverable != 0 {
            throw fail("\(when): the check found \(summary.problems) problems, \(summary.unrecoverable) beyond redundancy: "
                       + findings.prefix(3).joined(separator: "; "))
        }
    }

    func finish() throws {
        crash.disarm()   // a crash still armed has not happened
        crashArmed = false
        env.jobs.runUntilIdle()
        _ = try array.clearFaults(nil)
        faulty = []
        try settleTainted()
        try checkEverything(strict: true)
        if wentBeyond {
            // What the faults left repairable is repaired; what was lost
            // stays lost (every read of it EIO), and only that may remain.
            _ = try array.checkAll(mode: .repair) { _ in }
            var repairable: [String] = []
            let summary = try array.checkAll(mode: .check) { if !$0.unrecoverable { repairable.append($0.description) } }
            if !repairable.isEmpty {
                throw fail("final check after a repair: \(repairable.count) problems within redundancy: " + repairable.prefix(3).joined(separator: "; "))
            }
            report.mix("lost \(summary.unrecoverable)")
        } else {
            // --combined: the rot left is repaired first; all of it is
            // within redundancy, so nothing may be left after.
            if !rottedMembers.isEmpty { _ = try array.checkAll(mode: .repair) { _ in } }
            try checkRedundancy("final check")
        }
        for r in 0..<options.members { report.mix("\(r) \(array.roleState(r).rawValue)") }
    }
}
