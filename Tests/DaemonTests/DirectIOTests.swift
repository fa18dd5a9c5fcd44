import Foundation
import XCTest
import RAIDCore

#if arch(x86_64)
private let oDirect: Int32 = 0o40000
#elseif arch(arm64)
private let oDirect: Int32 = 0o200000
#endif

/// O_DIRECT handles: the kernel sends their writes to the daemon in
/// parallel (FOPEN_PARALLEL_DIRECT_WRITES), and buffered handles of the
/// same file still see every byte they write.
final class DirectIOTests: XCTestCase {
    /// A 4 KiB-aligned buffer holding `bytes`, as O_DIRECT wants.
    private func aligned(_ bytes: Data) -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer?
        precondition(posix_memalign(&p, 4096, max(bytes.count, 4096)) == 0)
        bytes.withUnsafeBytes { _ = memcpy(p!, $0.baseAddress!, bytes.count) }
        return p!
    }

    /// Four threads write disjoint 4 KiB blocks of one file through their
    /// own O_DIRECT descriptors, at random, all at once; the file then
    /// holds every block and the members check clean.
    func testParallelDirectWritersOfOneFile() throws {
        let a = try ScratchArray(level: 6, members: 6, chunk: "16K")
        try a.mount()
        let blocks = 256, block = 4096
        var model = randomBytes(blocks * block, seed: 5)
        try writeFile(a.path("db"), model)
        let writes = 400
        let failures = NSLock()
        var errors: [String] = []
        var news: [[(Int, Data)]] = Array(repeating: [], count: 4)
        for t in 0..<4 {
            var rng = UInt64(t + 1) &* 0x9E37_79B9_7F4A_7C15
            for n in 0..<writes {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                let b = t + 4 * Int(rng % UInt64(blocks / 4))
                news[t].append((b, randomBytes(block, seed: UInt64(t * 100_000 + n))))
            }
        }
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            let fd = open(a.path("db"), O_WRONLY | oDirect)
            guard fd >= 0 else {
                failures.withLock { errors.append("open O_DIRECT: errno \(errno)") }
                return
            }
            defer { close(fd) }
            for (b, d) in news[t] {
                let buf = aligned(d)
                defer { free(buf) }
                if pwrite(fd, buf, block, off_t(b * block)) != block {
                    failures.withLock { errors.append("thread \(t): pwrite block \(b): errno \(errno)") }
                    return
                }
            }
        }
        XCTAssertEqual(errors, [])
        for t in 0..<4 { for (b, d) in news[t] { model.replaceSubrange((b * block)..<((b + 1) * block), with: d) } }
        XCTAssertTrue(try readFile(a.path("db")) == model, "the file after parallel O_DIRECT writers")
        a.unmount()
        try a.assertChecksClean()
    }

    /// A buffered descriptor that has the file cached sees an O_DIRECT
    /// write made meanwhile, and so does a buffered open after O_DIRECT
    /// writes made while no buffered descriptor was open.
    func testBufferedHandlesSeeDirectWrites() throws {
        let a = try ScratchArray(level: 5, members: 3, chunk: "16K")
        try a.mount()
        try writeFile(a.path("f"), Data(repeating: 0x41, count: 65_536))
        func read8(_ fd: Int32) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: 8)
            XCTAssertEqual(pread(fd, &b, 8, 4096), 8)
            return b
        }
        func directWrite(_ byte: UInt8) {
            let fd = open(a.path("f"), O_RDWR | oDirect)
            XCTAssertGreaterThanOrEqual(fd, 0)
            let buf = aligned(Data(repeating: byte, count: 4096))
            XCTAssertEqual(pwrite(fd, buf, 4096, 4096), 4096)
            free(buf)
            close(fd)
        }
        let cached = open(a.path("f"), O_RDONLY)
        XCTAssertEqual(read8(cached), [UInt8](repeating: 0x41, count: 8))
        directWrite(0x42)
        XCTAssertEqual(read8(cached), [UInt8](repeating: 0x42, count: 8), "a buffered handle open during the write")
        close(cached)
        directWrite(0x43)
        let later = open(a.path("f"), O_RDONLY)
        XCTAssertEqual(read8(later), [UInt8](repeating: 0x43, count: 8), "a buffered open after the write")
        close(later)
    }
}
