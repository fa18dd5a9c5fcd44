import Foundation
import Logging
import XCTest
@testable import RAIDCore

/// A fresh temporary directory removed at the end of the test.
final class TempDir {
    let path: String
    init(_ label: String = "raidfs") {
        let p = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        path = p
    }
    func make(_ name: String) -> String {
        let p = path + "/" + name
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A deterministic byte generator (xorshift), so failures replay.
struct SeededBytes {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var v = next()
            for _ in 0..<8 where i < n { out[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
        }
        return out
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// Creates an array in a temp dir and assembles it (in use).
func makeArray(_ tmp: TempDir, level: RAIDLevel, members: Int, chunk: Int = 4096) throws -> (RAIDArray, [String]) {
    let dirs = (0..<members).map { tmp.make("d\($0)") }
    _ = try ArrayCreator.create(level: level, chunkSizeBytes: chunk, directories: dirs)
    let (array, _) = try RAIDArray.assemble(directories: dirs, logger: quietLogger)
    try array.markInUse()
    return (array, dirs)
}

extension ArrayFile {
    func readAll() throws -> [UInt8] {
        let n = Int(currentSize())
        var out = [UInt8](repeating: 0, count: n)
        if n == 0 { return out }
        let got = try out.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: n, at: 0) }
        XCTAssertEqual(got, n)
        return out
    }
    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write(from: $0.baseAddress!, count: $0.count, at: offset) }
    }
}

let root = Caller(uid: 0, gid: 0)

/// Tests provoke errors on purpose; keep their logs out of the test output.
let quietLogger = Logger(label: "raidfs-test", factory: { _ in SwiftLogNoOpLogHandler() })

/// The role holding chunk `chunkIndex` of stripe `stripe` of array file
/// `path` (files start on different rows of md's rotation).
func roleOf(_ array: RAIDArray, _ path: String, stripe: UInt64, chunkIndex: Int) throws -> Int {
    let f = try array.open(path)
    defer { array.release(f) }
    return f.role(stripe: stripe, chunkIndex: chunkIndex)
}

/// The chunk of stripe `stripe` of array file `path` that `role` holds.
func chunkOf(_ array: RAIDArray, _ path: String, stripe: UInt64, role: Int) throws -> Int {
    let f = try array.open(path)
    defer { array.release(f) }
    return f.chunkIndex(stripe: stripe, role: role)
}
