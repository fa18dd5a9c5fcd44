import Foundation
import RAIDBase
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program for each event of an array, as `mdadm --monitor --program`
/// and ZFS's zed run theirs: `/bin/sh -c PROGRAM` with the event as one JSON
/// line on stdin and, in the environment, RAIDFS_EVENT (the kind),
/// RAIDFS_MEMBER (the role, if any), RAIDFS_PATH (the file, if any),
/// RAIDFS_MESSAGE and RAIDFS_MOUNTPOINT. One event at a time, in order; a
/// program still running after `timeoutSeconds` is killed, so a stuck mailer
/// cannot stall the events behind it.
// @unchecked Sendable: immutable after init; each event runs in a process of its own.
public final class EventProgram: @unchecked Sendable {
    public let program: String
    public let mountpoint: String
    let timeoutSeconds: Double

    public init(program: String, mountpoint: String, timeoutSeconds: Double = 60) {
        self.program = program
        self.mountpoint = mountpoint
        self.timeoutSeconds = timeoutSeconds
    }

    /// Runs the program for `event` and waits for it; the error says why it failed.
    public func run(_ event: ArrayEvent) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", program]
        var env = ProcessInfo.processInfo.environment
        env["RAIDFS_EVENT"] = event.kind
        env["RAIDFS_MEMBER"] = event.member.map(String.init) ?? ""
        env["RAIDFS_PATH"] = event.path ?? ""
        env["RAIDFS_MESSAGE"] = event.message
        env["RAIDFS_MOUNTPOINT"] = mountpoint
        p.environment = env
        let input = Pipe()
        p.standardInput = input
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var line = (try? enc.encode(event)) ?? Data()
        line.append(UInt8(ascii: "\n"))
        // A program that does not read its stdin must not block us.
        signal(SIGPIPE, SIG_IGN)
        try? input.fileHandleForWriting.write(contentsOf: line)
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            throw FSError(ETIMEDOUT, "event program \(program): still running after \(Int(timeoutSeconds)) s for \(event.kind); killed")
        }
        if p.terminationStatus != 0 {
            throw FSError(EIO, "event program \(program): exit \(p.terminationStatus) for \(event.kind)")
        }
    }

    /// Runs the program for every event from now on, on a thread of its
    /// own: `follow` hands each new event to the closure it is given (the
    /// array's event log). Its failures are logged, never recorded as
    /// events (which would run it again).
    public func attach(follow: (@escaping @Sendable (ArrayEvent) -> Void) -> Void,
                       logger: @escaping @Sendable (String) -> Void) {
        let queue = EventQueue()
        follow { queue.push($0) }
        let t = Thread { [self] in
            while true {
                guard let e = queue.pop() else { continue }
                do { try run(e) } catch { logger("\(error)") }
            }
        }
        t.name = "raidfs-event-program"
        t.start()
    }
}

/// Hands events from the logging thread to a follower's connection thread;
/// bounded, so a stalled follower cannot grow it without limit.
// @unchecked Sendable: its items change only under `cond`.
public final class EventQueue: @unchecked Sendable {
    private let cond = NSCondition()
    private var items: [ArrayEvent] = []
    static let max = 10_000

    public init() {}

    public func push(_ e: ArrayEvent) {
        cond.lock()
        if items.count < EventQueue.max { items.append(e) }
        cond.signal()
        cond.unlock()
    }

    /// The next event, or nil after a second without one.
    public func pop() -> ArrayEvent? {
        cond.lock()
        defer { cond.unlock() }
        if items.isEmpty { cond.wait(until: Date().addingTimeInterval(1)) }
        return items.isEmpty ? nil : items.removeFirst()
    }
}
