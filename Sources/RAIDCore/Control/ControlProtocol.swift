import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The control channel between `raidctl` and a mounted array: one JSON
/// object per line each way over a Unix-domain socket. Versioned: a request
/// of another version is answered with an error and changes nothing.
public enum ControlProtocol {
    public static let version = 1

    /// Where the daemon serving `mountpoint` listens: a directory only its
    /// owner can enter, and a name derived from the mount point's path.
    public static func socketPath(mountpoint: String) -> String {
        let dir = ProcessInfo.processInfo.environment["RAIDFS_CONTROL_DIR"]
            ?? (geteuid() == 0 ? "/run/raidfs" : "/tmp/raidfs-\(geteuid())")
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in mountpoint.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return dir + "/" + String(h, radix: 16) + ".sock"
    }
}

public struct ControlRequest: Codable, Sendable {
    public var version: Int
    /// status, fail, remove, add, replace, events, scrub
    public var command: String
    public var member: String?
    public var directory: String?
    public var force: Bool?
    public var follow: Bool?
    public var mode: String?
    /// inject: the FAULT argument ("bitrot", "latency=20", "clear"), --rate, --count.
    public var fault: String?
    public var rate: Double?
    public var count: Int?

    public init(command: String, member: String? = nil, directory: String? = nil, force: Bool? = nil,
                follow: Bool? = nil, mode: String? = nil, fault: String? = nil, rate: Double? = nil, count: Int? = nil) {
        version = ControlProtocol.version
        self.command = command
        self.member = member
        self.directory = directory
        self.force = force
        self.follow = follow
        self.mode = mode
        self.fault = fault
        self.rate = rate
        self.count = count
    }
}

public struct ProgressStatus: Codable, Sendable, Equatable {
    public var running: Bool
    public var progress: Double
    public var bytesPerSecond: Double
    public var etaSeconds: Double?
    public var repaired: Int?
    public var unrecoverable: Int?
    public var role: Int?
    public var target: String?
    /// Scrub only: "repair" or "check", the problems found (repaired or
    /// not), and whether it was stopped before the end.
    public var mode: String?
    public var problems: Int?
    public var stopped: Bool?
    /// Scrub only: when the last complete scrub ended (seconds since the
    /// epoch) and what it found; when the next scheduled one is due; and,
    /// when one was cut short, the path it resumes after.
    public var lastFinishedAt: Double?
    public var lastResult: ScrubResult?
    public var nextDueAt: Double?
    public var resumesAfter: String?

    enum CodingKeys: String, CodingKey {
        case running, progress, bytesPerSecond, etaSeconds, repaired, unrecoverable, role, target, mode, problems, stopped
        case lastFinishedAt, lastResult, nextDueAt, resumesAfter
    }

    /// etaSeconds is always present (null when unknown), as DESIGN.md lists it.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(running, forKey: .running)
        try c.encode(progress, forKey: .progress)
        try c.encode(bytesPerSecond, forKey: .bytesPerSecond)
        if let eta = etaSeconds { try c.encode(eta, forKey: .etaSeconds) } else { try c.encodeNil(forKey: .etaSeconds) }
        try c.encodeIfPresent(repaired, forKey: .repaired)
        try c.encodeIfPresent(unrecoverable, forKey: .unrecoverable)
        try c.encodeIfPresent(role, forKey: .role)
        try c.encodeIfPresent(target, forKey: .target)
        try c.encodeIfPresent(mode, forKey: .mode)
        try c.encodeIfPresent(problems, forKey: .problems)
        try c.encodeIfPresent(stopped, forKey: .stopped)
        try c.encodeIfPresent(lastFinishedAt, forKey: .lastFinishedAt)
        try c.encodeIfPresent(lastResult, forKey: .lastResult)
        try c.encodeIfPresent(nextDueAt, forKey: .nextDueAt)
        try c.encodeIfPresent(resumesAfter, forKey: .resumesAfter)
    }
}

public struct MemberStatus: Codable, Sendable, Equatable {
    public var index: Int
    public var path: String
    public var state: String
    public var readErrors: UInt64
    public var writeErrors: UInt64
    public var checksumErrors: UInt64
    /// Faults injected with `raidctl inject` (absent when none).
    public var faults: [String]?
}

public struct ArrayStatus: Codable, Sendable, Equatable {
    public var arrayUUID: String
    public var level: Int
    public var chunkSizeBytes: Int
    public var state: String
    public var events: UInt64
    public var members: [MemberStatus]
    public var spares: [String]
    public var rebuild: ProgressStatus
    public var scrub: ProgressStatus

    /// `raidctl status` exit code, as `mdadm --detail --test`.
    public var exitCode: Int32 {
        switch state {
        case "clean": return 0
        case "failed": return 2
        default: return 1
        }
    }
}

public struct ControlResponse: Codable, Sendable {
    public var version: Int
    public var ok: Bool
    public var error: String?
    public var message: String?
    public var status: ArrayStatus?
    public var events: [ArrayEvent]?

    public init(ok: Bool, error: String? = nil, message: String? = nil, status: ArrayStatus? = nil, events: [ArrayEvent]? = nil) {
        version = ControlProtocol.version
        self.ok = ok
        self.error = error
        self.message = message
        self.status = status
        self.events = events
    }
}

/// Line-oriented JSON over a socket fd, for both ends.
public enum ControlWire {
    public static func send<T: Encodable>(_ value: T, fd: Int32) -> Bool {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard var bytes = try? [UInt8](enc.encode(value)) else { return false }
        bytes.append(UInt8(ascii: "\n"))
        var done = 0
        while done < bytes.count {
            guard let n = try? retryingEINTR("send", "control socket", {
                bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            }) else { return false }   // the peer is gone: the caller drops it
            done += n
        }
        return true
    }

    /// Reads one line (at most 1 MiB); nil at end of stream or on error.
    public static func receiveLine(fd: Int32, buffer: inout [UInt8]) -> [UInt8]? {
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                return line
            }
            if buffer.count > 1 << 20 { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            // nil at end of stream or on an error: the caller drops the peer.
            guard let n = try? retryingEINTR("recv", "control socket", { chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }),
                  n > 0 else { return nil }
            buffer += chunk[0..<n]
        }
    }
}
