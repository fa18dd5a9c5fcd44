import Foundation
import Logging
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// The persistent event log: every event is appended as a JSON line to
/// `raidfs.events` on every active member (so it survives what the array
/// survives), kept in memory for `raidctl events`, and sent to the daemon's
/// logger. Followers get new events as they happen.
// @unchecked Sendable: its history and followers change only under `lock`.
public final class EventLog: @unchecked Sendable {
    static let memoryMax = 10_000
    private let lock = Lock()
    private var recent: [ArrayEvent] = []
    private var followers: [UInt64: (ArrayEvent) -> Void] = [:]
    private var lastFollower: UInt64 = 0
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
            return followers.sorted { $0.key < $1.key }.map { $0.value }   // in the order they came
        }
        sink(bytes)
        switch e.eventKind {
        case .memberFailed, .rebuildFailed, .unrecoverable: logger.critical("\(e.line)")
        case .checksumError, .readError: logger.error("\(e.line)")
        default: logger.notice("\(e.line)")
        }
        for f in targets { f(e) }
    }

    public func history() -> [ArrayEvent] { lock.withLock { recent } }

    /// Hands every event recorded from now on to `body`; the id is for
    /// `unfollow`.
    public func follow(_ body: @escaping (ArrayEvent) -> Void) -> UInt64 {
        lock.withLock {
            lastFollower += 1
            followers[lastFollower] = body
            return lastFollower
        }
    }

    public func unfollow(_ id: UInt64) { _ = lock.withLock { followers.removeValue(forKey: id) } }

    static func parse(_ bytes: [UInt8]) -> [ArrayEvent] {
        let dec = JSONDecoder()
        return bytes.split(separator: UInt8(ascii: "\n")).compactMap { try? dec.decode(ArrayEvent.self, from: Data($0)) }
    }
}
