import Foundation
import XCTest
import RAIDCore
import RAIDControl
import CLinux

/// Where the built raidfs and raidctl live (tools/test.sh exports it; else
/// beside the test bundle).
let binDir: String = {
    if let d = ProcessInfo.processInfo.environment["RAIDFS_BIN_DIR"] { return d }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
    while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("raidfs").path) {
        url.deleteLastPathComponent()
    }
    return url.path
}()

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

@discardableResult
func runTool(_ exe: String, _ args: [String], timeoutSeconds: Double = 60) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe.hasPrefix("/") ? exe : binDir + "/" + exe)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read before waiting so a chatty child cannot block on a full pipe.
    var outData = Data(), errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning { p.terminate() }
    p.waitUntilExit()
    group.wait()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                     stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs `exe` (in binDir unless absolute) with only standard input,
/// output and error (both to a file), and waits for it: for a program that
/// leaves a daemon behind, which would hold open what Foundation's Process
/// waits on (its pipes and its exit-monitor socket) until the daemon exits.
func runDetaching(_ exe: String, _ args: [String]) throws -> RunResult {
    let path = exe.hasPrefix("/") ? exe : binDir + "/" + exe
    let out = NSTemporaryDirectory() + "raidfs-spawn-\(UUID().uuidString.prefix(8))"
    defer { unlink(out) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    for fd in fds.compactMap({ Int32($0) }) where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
    let argv = ([path] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard rc == 0 else { throw FSError(rc, "posix_spawn \(path)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return RunResult(status: code, stdout: text, stderr: text)
}

func isMounted(_ path: String) -> Bool {
    guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
    return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == path }
}

/// A scratch array: member directories in a fresh temp dir, created with
/// raidctl, served by a foreground raidfs that is always stopped again.
final class ScratchArray {
    let root: String
    let members: [String]
    let mountpoint: String
    private(set) var daemon: Process?
    private var logPath: String

    /// `createOutput`: what raidctl create printed on stderr.
    private(set) var createOutput = ""

    /// An array over `count` fresh directories, or over `paths` (relative
    /// to the scratch root) when given.
    init(level: Int, members count: Int, chunk: String = "64K", paths: [String]? = nil,
         prepare: (String) throws -> Void = { _ in }) throws {
        let base = NSTemporaryDirectory() + "raidfs-mount-\(UUID().uuidString.prefix(8))"
        root = base
        members = (paths ?? (0..<count).map { "disk\($0)" }).map { base + "/" + $0 }
        mountpoint = root + "/mnt"
        logPath = root + "/raidfs.log"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        try prepare(base)
        for d in members + [mountpoint] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let r = try runTool("raidctl", ["create", "--level", "\(level)", "--chunk", chunk] + members)
        guard r.status == 0 else { throw FSError.io("raidctl create failed: \(r.stderr)") }
        createOutput = r.stderr
    }

    var memberSpec: String { members.joined(separator: ":") }

    /// Mounts with `members` (default all) and waits for the mount to appear.
    func mount(_ which: [String]? = nil, options: [String] = []) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binDir + "/raidfs")
        p.arguments = [(which ?? members).joined(separator: ":"), mountpoint, "-f", "-o", (["auto_unmount"] + options).joined(separator: ",")]
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        log.seekToEndOfFile()
        p.standardError = log
        p.standardOutput = log
        try p.run()
        daemon = p
        let deadline = Date().addingTimeInterval(20)
        while !isMounted(mountpoint) {
            if !p.isRunning { throw FSError.io("raidfs exited \(p.terminationStatus): \(self.log())") }
            if Date() > deadline { throw FSError.io("mount did not appear: \(self.log())") }
            usleep(20_000)
        }
        // The mount shows before the daemon has answered the kernel's INIT
        // (where it starts its control socket): a stat waits for INIT.
        var st = stat()
        _ = stat(mountpoint, &st)
        let socket = ControlProtocol.socketPath(mountpoint: absolutePath(mountpoint))
        while !FileManager.default.fileExists(atPath: socket) && Date() < deadline { usleep(20_000) }
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Unmounts and waits for the daemon to exit; lazily if busy.
    func unmount() {
        if isMounted(mountpoint) {
            let r = try? runTool("/usr/bin/fusermount3", ["-u", mountpoint])
            if r?.status != 0 { _ = try? runTool("/usr/bin/fusermount3", ["-uz", mountpoint]) }
        }
        if let p = daemon {
            let deadline = Date().addingTimeInterval(20)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        }
        daemon = nil
    }

    func path(_ name: String) -> String { mountpoint + "/" + name }

    /// `raidctl check` of the unmounted members finds nothing wrong.
    func assertChecksClean(file: StaticString = #filePath, line: UInt = #line) throws {
        let check = try runTool("raidctl", ["check"] + members)
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr, file: file, line: line)
    }

    deinit {
        unmount()
        // rm -rf, not FileManager: member trees may hold paths longer than
        // PATH_MAX from here (testPathsNearPathMaxWork), which rm walks by
        // descriptor.
        _ = try? runTool("/bin/rm", ["-rf", root])
    }
}

/// Deterministic random bytes.
/// Where array file `file` starts in md's rotation (its id modulo the
/// member count, `ArrayFile.rowShift`): stripe s of it lies on md's row
/// s + shift. Read from its attribute on member 0.
func rowShift(_ a: ScratchArray, _ file: String) throws -> UInt64 {
    var value = [UInt8](repeating: 0, count: FileAttribute.encodedBytes)
    let n = getxattr(a.members[0] + "/data/" + file, FileAttribute.name, &value, value.count)
    guard n == value.count, let header = value.withUnsafeBytes({ FileAttribute.decode($0.baseAddress!, count: n)?.header }) else {
        throw FSError.io("\(file): no header on member 0")
    }
    return header.fileId % UInt64(a.members.count)
}

func randomBytes(_ n: Int, seed: UInt64) -> Data {
    var s = seed | 1
    var d = Data(count: n)
    d.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
        let words = raw.bindMemory(to: UInt8.self)
        var i = 0
        while i < n {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            var v = s
            for _ in 0..<8 where i < n { words[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
        }
    }
    return d
}

func readFile(_ path: String) throws -> Data {
    try Data(contentsOf: URL(fileURLWithPath: path))
}

func writeFile(_ path: String, _ data: Data) throws {
    try data.write(to: URL(fileURLWithPath: path))
}

/// Creates `path` (mode 0600), open read-write, holding `count` seeded
/// random bytes: the descriptor and the bytes.
func createFilled(_ path: String, _ count: Int, seed: UInt64) -> (fd: Int32, data: [UInt8]) {
    let fd = open(path, O_CREAT | O_RDWR, 0o600)
    XCTAssertGreaterThanOrEqual(fd, 0, "create \(path): errno \(errno)")
    let data = [UInt8](randomBytes(count, seed: seed))
    XCTAssertEqual(pwrite(fd, data, data.count, 0), data.count)
    return (fd, data)
}
