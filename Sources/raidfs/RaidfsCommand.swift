import Logging
import RAIDCore
import RAIDFS
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// `raidfs DIR[:DIR...] MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]`
///
/// The mount helper's argument shape is fixed by mount(8) and libfuse, so
/// this parses by hand instead of with ArgumentParser.
enum RaidfsCommand {
    static let usage = "usage: raidfs DIR[:DIR...] MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]"

    /// Options raidfs itself consumes; everything else goes to libfuse,
    /// which rejects what it does not know.
    struct Options {
        var members: [String] = []
        var mountpoint = ""
        var foreground = false
        var debug = false
        var readOnly = false
        var intentLog = true
        var force = false
        var rebuildRateBytesPerSecond: Double? = nil
        var maxReadErrorsPerHour = 20
        var eventProgram: String? = nil
        var scrubIntervalSeconds: Double = 7 * 86_400
        var scrubRateBytesPerSecond: Double? = nil
        var writebackCache = false
        var fuseOptions: [String] = []
    }

    static func parse(_ args: [String]) throws -> Options {
        var o = Options()
        var positional: [String] = []
        var i = 1
        while i < args.count {
            let a = args[i]
            switch a {
            case "-f": o.foreground = true
            case "-d": o.debug = true; o.foreground = true
            case "-o":
                i += 1
                guard i < args.count else { throw UsageError("-o needs an argument") }
                for opt in args[i].split(separator: ",").map(String.init) where !opt.isEmpty {
                    switch opt {
                    case "ro": o.readOnly = true; o.fuseOptions.append(opt)
                    // Benchmarks only: measure what the write-intent log costs.
                    case "intent_log=off": o.intentLog = false
                    case "intent_log=on": o.intentLog = true
                    // As mdadm --force: serve a dirty, degraded array.
                    case "force": o.force = true
                    case "writeback_cache": o.writebackCache = true
                    case "rw", "defaults", "auto", "noauto", "nofail", "user", "nouser", "_netdev": break
                    default:
                        // fstab conventions: our own names, and x-* options meant for other tools (systemd).
                        if opt.hasPrefix("fsname=") || opt.hasPrefix("subtype=") || opt.hasPrefix("x-") { break }
                        if try parseValueOption(opt, into: &o) { break }
                        o.fuseOptions.append(opt)
                    }
                }
            case "-h", "--help": throw UsageError(nil)
            default:
                if a.hasPrefix("-o") && a.count > 2 {
                    return try parse(Array(args[0..<i]) + ["-o", String(a.dropFirst(2))] + Array(args[(i + 1)...]))
                }
                if a.hasPrefix("-") { throw UsageError("unknown flag \(a)") }
                positional.append(a)
            }
            i += 1
        }
        guard positional.count == 2 else {
            throw UsageError(positional.count < 2 ? "member directories and a mount point are required"
                                                  : "unexpected argument \(positional[2])")
        }
        o.members = positional[0].split(separator: ":").map(String.init).filter { !$0.isEmpty }
        guard !o.members.isEmpty else { throw UsageError("no member directories in \(positional[0])") }
        o.mountpoint = absolutePath(positional[1])
        return o
    }

    /// raidfs's own KEY=VALUE options; false for one that is libfuse's.
    static func parseValueOption(_ opt: String, into o: inout Options) throws -> Bool {
        guard let eq = opt.firstIndex(of: "=") else { return false }
        let key = String(opt[..<eq]), value = String(opt[opt.index(after: eq)...])
        /// MB/s (10^6 bytes), as md's speed limits are per device in KiB/s.
        func rate() throws -> Double {
            guard let v = Double(value), v > 0 else { throw UsageError("-o \(opt): \(key) takes a positive number of MB/s") }
            return v * 1e6
        }
        switch key {
        case "rebuild_rate": o.rebuildRateBytesPerSecond = try rate()
        case "scrub_rate": o.scrubRateBytesPerSecond = try rate()
        case "scrub_interval":
            guard let v = parseDuration(value) else {
                throw UsageError("-o \(opt): scrub_interval takes a duration such as 7d, 12h, 30m or 90s (0: never)")
            }
            o.scrubIntervalSeconds = v
        case "max_read_errors":
            guard let v = Int(value), v >= 0 else {
                throw UsageError("-o \(opt): max_read_errors takes a whole number of errors per hour (0: never fail a member for them)")
            }
            o.maxReadErrorsPerHour = v
        case "event_program":
            guard !value.isEmpty else { throw UsageError("-o event_program= needs a program") }
            o.eventProgram = value
        default:
            return false
        }
        return true
    }

    /// "7d", "12h", "30m", "90s" or plain seconds; nil when not a duration.
    static func parseDuration(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var number = Substring(text), scale = 1.0
        if let last = text.last, let u = units[last] { number = text.dropLast(); scale = u }
        guard let v = Double(number), v >= 0, v.isFinite else { return nil }
        return v * scale
    }

    struct UsageError: Error {
        let reason: String?
        init(_ reason: String?) { self.reason = reason }
    }

    static func main(_ args: [String]) -> Int32 {
        let o: Options
        do {
            o = try parse(args)
        } catch let e as UsageError {
            if let r = e.reason {
                writeStandardError("raidfs: \(r)\n\(usage)\n")
                return 64
            }
            print(usage)
            return 0
        } catch {
            return 64
        }
        var st = stat()
        guard stat(o.mountpoint, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            writeStandardError("raidfs: mount point \(o.mountpoint): not an existing directory\n")
            return 1
        }
        let foreground = o.foreground
        LoggingSystem.bootstrap { label in
            foreground ? StreamLogHandler.standardError(label: label) as LogHandler : SyslogLogHandler(label: label)
        }
        var logger = Logger(label: "raidfs")
        logger.logLevel = o.debug ? .debug : .info
        let array: RAIDArray
        do {
            var configuration = ArrayConfiguration(readOnly: o.readOnly, intentLog: o.intentLog, force: o.force)
            configuration.rebuildRateBytesPerSecond = o.rebuildRateBytesPerSecond
            configuration.maxReadErrorsPerHour = o.maxReadErrorsPerHour
            configuration.mountpoint = o.mountpoint
            configuration.scrubIntervalSeconds = o.scrubIntervalSeconds
            configuration.scrubRateBytesPerSecond = o.scrubRateBytesPerSecond
            let (a, report) = try RAIDArray.assemble(directories: o.members, configuration: configuration, logger: logger)
            array = a
            for line in report.lines { writeStandardError("raidfs: \(line)\n") }
            if a.needsResync && a.state != .clean && !o.force {
                // md refuses a dirty degraded RAID 5/6 for the same reason: a
                // region written when the crash came may hold parity that no
                // longer matches, and the missing member's data would be
                // rebuilt from it.
                writeStandardError("raidfs: array \(a.arrayUUID) was not shut down cleanly and is \(a.state.rawValue) (\(a.activeRoles.count) of \(a.geometry.memberCount) members): its unsynced regions could rebuild wrong data; add the missing members, or mount with -o force to accept that risk\n")
                return 1
            }
            if a.state != .clean {
                writeStandardError("raidfs: array \(a.arrayUUID) assembled \(a.state.rawValue): \(a.activeRoles.count) of \(a.geometry.memberCount) members active\n")
            }
        } catch let e as FSError {
            writeStandardError("raidfs: \(e.message)\n")
            return 1
        } catch {
            writeStandardError("raidfs: \(error)\n")
            return 1
        }
        var fuseArgs = ["raidfs", o.mountpoint]
        if o.foreground { fuseArgs.append("-f") }
        if o.debug { fuseArgs.append("-d") }
        let opts = ["fsname=raidfs", "subtype=raidfs", "default_permissions"] + o.fuseOptions
        fuseArgs += ["-o", opts.joined(separator: ",")]
        if let program = o.eventProgram {
            EventProgram(program: program, mountpoint: o.mountpoint).attach(follow: { _ = array.eventLog.follow($0) }) { [logger] in
                logger.error("\($0)")
            }
        }
        let control = ControlServer(path: ControlProtocol.socketPath(mountpoint: o.mountpoint), logger: logger) { req, send in
            ArrayController.handle(array, req, send: send)
        }
        let m = MountedArray(array: array, logger: logger) {
            do {
                try array.markInUse()
                array.startBackgroundWork()
                do {
                    try control.start()
                } catch {
                    // (Still on the terminal: a detached daemon keeps its
                    // standard error until it reports ready.)
                    writeStandardError("raidfs: control socket \(control.path): \(error); raidctl cannot reach this mount\n")
                    logger.error("control socket \(control.path): \(error); raidctl cannot reach this mount")
                }
                logger.info("array \(array.arrayUUID) mounted at \(o.mountpoint): RAID \(array.geometry.level.rawValue), \(array.geometry.memberCount) members, \(array.state.rawValue); ready, control socket \(control.path)")
            } catch {
                logger.critical("cannot record the array in its superblocks: \(error)")
            }
        }
        m.writebackCache = o.writebackCache
        let rc = serve(m, fuseArguments: fuseArgs)
        control.stop()
        array.shutdown()
        return rc
    }
}

/// Logs to syslog once daemonised (stderr is gone then).
struct SyslogLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    let label: String

    init(label: String) {
        self.label = label
        openlog("raidfs", LOG_PID, LOG_DAEMON)
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
             source: String, file: String, function: String, line: UInt) {
        let priority: Int32
        switch level {
        case .trace, .debug: priority = LOG_DEBUG
        case .info: priority = LOG_INFO
        case .notice: priority = LOG_NOTICE
        case .warning: priority = LOG_WARNING
        case .error: priority = LOG_ERR
        case .critical: priority = LOG_CRIT
        }
        "\(message)".withCString { msg in
            withVaList([msg]) { vsyslog(priority, "%s", $0) }
        }
    }
}

/// Writes `text` to standard error, unbuffered (before the daemon detaches).
func writeStandardError(_ text: String) {
    var text = text
    text.withUTF8 { b in
        var done = 0
        while done < b.count, let n = retryingEINTR({ write(2, b.baseAddress! + done, b.count - done) }) { done += n }
    }
}
