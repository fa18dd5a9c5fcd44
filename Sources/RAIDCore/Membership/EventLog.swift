import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One thing that happened to the array, as `raidctl events` shows it.
public struct ArrayEvent: Codable, Sendable, Equatable {
    public var time: Double
    /// member-failed, member-removed, spare-added, rebuild-started,
    /// rebuild-finished, checksum-error, repaired, resync, assembled, ...
    public var kind: String
    public var member: Int?
    public var path: String?
    public var message: String

    public init(time: Double = Date().timeIntervalSince1970, kind: String, member: Int? = nil, path: String? = nil, message: String) {
        self.time = time
        self.kind = kind
        self.member = member
        self.path = path
        self.message = message
    }

    public var line: String {
        let ts = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: time))
        return "\(ts) \(kind)\(member.map { " member \($0)" } ?? "")\(path.map { " \($0)" } ?? ""): \(message)"
    }
}

/// The persistent event log: every event is appended as a JSON line to
/// `raidfs.events` on every active member (so it survives what the array
/// survives), kept in memory for `raidctl events`, and sent to the daemon's
/// logger. Followers get new events as they happen.
public final class EventLog: @unchecked Sendable {
    public static let fileName = "raidfs.events"
    static let memoryMax = 10_000
    private let lock = Mutex()
    private var recent: [ArrayEvent] = []
    private var followers: [UUID: (ArrayEvent) -> Void] = [:]
    private let sink: ([UInt8]) -> Void
    private let logger: Logger
    private let clock: () -> Double

    init(logger: Logger, history: [ArrayEvent], clock: @escaping () -> Double, sink: @escaping ([UInt8]) -> Void) {
        self.logger = logger
        self.clock = clock
        self.sink = sink
        recent = Array(history.suffix(EventLog.memoryMax))
    }

    /// Records `e`, stamped with the array's clock.
    public func record(_ e: ArrayEvent) {
        var e = e
        e.time = clock()
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var bytes = [UInt8]((try? enc.encode(e)) ?? Data())
        bytes.append(UInt8(ascii: "\n"))
        let targets: [(ArrayEvent) -> Void] = lock.withLock {
            recent.append(e)
            if recent.count > EventLog.memoryMax { recent.removeFirst(recent.count - EventLog.memoryMax) }
            return Array(followers.values)
        }
        sink(bytes)
        switch e.kind {
        case "member-failed", "rebuild-failed", "unrecoverable": logger.critical("\(e.line)")
        case "checksum-error", "read-error": logger.error("\(e.line)")
        default: logger.notice("\(e.line)")
        }
        for f in targets { f(e) }
    }

    public func history() -> [ArrayEvent] { lock.withLock { recent } }

    public func follow(_ body: @escaping (ArrayEvent) -> Void) -> UUID {
        let id = UUID()
        lock.withLock { followers[id] = body }
        return id
    }

    public func unfollow(_ id: UUID) { _ = lock.withLock { followers.removeValue(forKey: id) } }

    static func parse(_ bytes: [UInt8]) -> [ArrayEvent] {
        let dec = JSONDecoder()
        return bytes.split(separator: UInt8(ascii: "\n")).compactMap { try? dec.decode(ArrayEvent.self, from: Data($0)) }
    }
}
