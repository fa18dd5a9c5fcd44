import RAIDBase
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

/// The commands of the control protocol, with their wire names: the one
/// place they are spelled.
public enum ControlCommand: String, CaseIterable, Sendable {
    case status, fail, remove, add, replace, events, scrub, clear, inject
}

/// The modes of a `scrub` request.
public enum ScrubMode: String, CaseIterable, Sendable {
    case repair, check, stop
}

public struct ControlRequest: Codable, Sendable {
    public var version: Int
    /// A `ControlCommand`'s wire name: kept a string, so that a daemon
    /// answers a command it does not know with an error naming it.
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

    public init(command: ControlCommand, member: String? = nil, directory: String? = nil, force: Bool? = nil,
                follow: Bool? = nil, mode: ScrubMode? = nil, fault: String? = nil, rate: Double? = nil, count: Int? = nil) {
        version = ControlProtocol.version
        self.command = command.rawValue
        self.member = member
        self.directory = directory
        self.force = force
        self.follow = follow
        self.mode = mode?.rawValue
        self.fault = fault
        self.rate = rate
        self.count = count
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
            guard let n = retryingEINTR({
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
            guard let n = retryingEINTR({ chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }),
                  n > 0 else { return nil }
            buffer += chunk[0..<n]
        }
    }
}
