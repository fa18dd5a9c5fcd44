import Foundation
import XCTest
import CLinux
import RAIDCore

/// The same seeded random sequence of file operations on the mount and on a
/// plain directory, side by side: every result, errno and file content must
/// match what the local filesystem does.
final class DifferentialTests: XCTestCase {
    struct Outcome: Equatable, CustomStringConvertible {
        var rc: Int
        var err: Int32
        var data: [UInt8]? = nil
        var description: String { "rc=\(rc) errno=\(err)\(data.map { " \($0.count) bytes" } ?? "")" }
    }

    let names = ["a", "b", "c", "d/e", "d/f", "g/h", "d", "g"]
    /// Files kept open across steps, three slots per side: unlinks, renames
    /// and rmdirs then meet open files, as on a local filesystem.
    var kept: [String: [Int32]] = [:]

    func slot(_ base: String, _ arg: Int) -> Int32 { kept[base, default: [-1, -1, -1]][arg % 3] }

    func setSlot(_ base: String, _ arg: Int, _ fd: Int32) {
        var s = kept[base, default: [-1, -1, -1]]
        if s[arg % 3] >= 0 { close(s[arg % 3]) }
        s[arg % 3] = fd
        kept[base] = s
    }

    func op(_ base: String, _ kind: Int, _ p1: String, _ p2: String, _ arg: Int, _ payload: [UInt8]) -> Outcome {
        let x = base + "/" + p1, y = base + "/" + p2
        errno = 0
        func result(_ rc: Int) -> Outcome { Outcome(rc: rc < 0 ? -1 : rc, err: rc < 0 ? errno : 0) }
        switch kind {
        case 0: return result(Int(mkdir(x, 0o755)))
        case 1: return result(Int(rmdir(x)))
        case 2:
            let fd = open(x, O_CREAT | O_WRONLY, 0o644)
            if fd < 0 { return result(-1) }
            let n = pwrite(fd, payload, payload.count, off_t(arg))
            let e = errno
            close(fd)
            return Outcome(rc: n < 0 ? -1 : n, err: n < 0 ? e : 0)
        case 3: return result(Int(truncate(x, off_t(arg))))
        case 4: return result(Int(unlink(x)))
        case 5: return result(Int(rename(x, y)))
        case 6: return result(Int(renameat2(AT_FDCWD, x, AT_FDCWD, y, 1)))   // RENAME_NOREPLACE
        case 7: return result(Int(link(x, y)))
        case 8: return result(Int(symlink(p2, x)))
        case 9:
            var buf = [CChar](repeating: 0, count: 256)
            let n = readlink(x, &buf, 255)
            return n < 0 ? result(-1) : Outcome(rc: n, err: 0, data: buf[0..<n].map { UInt8(bitPattern: $0) })
        case 10: return result(Int(chmod(x, mode_t(0o600 + arg % 0o100))))
        case 11:
            let fd = open(x, O_CREAT | O_EXCL | O_WRONLY, 0o640)
            if fd >= 0 { close(fd) }
            return result(fd < 0 ? -1 : 0)
        case 12:
            let fd = open(x, O_WRONLY | O_TRUNC)
            if fd >= 0 { close(fd) }
            return result(fd < 0 ? -1 : 0)
        case 13:
            let fd = open(x, O_WRONLY | O_APPEND)
            if fd < 0 { return result(-1) }
            let n = write(fd, payload, payload.count)
            close(fd)
            return result(n)
        case 15:
            let fd = open(x, O_RDWR)
            if fd < 0 { return result(-1) }
            setSlot(base, arg, fd)
            return result(0)
        case 16:
            let n = pwrite(slot(base, arg), payload, payload.count, off_t(arg % 50_000))
            return result(n)
        case 17:
            // fstat through a kept handle (the file may have no name left).
            var st = stat()
            guard fstat(slot(base, arg), &st) == 0 else { return result(-1) }
            let d = "type \(st.st_mode & S_IFMT) mode \(String(st.st_mode & 0o7777, radix: 8)) size \(st.st_size) nlink \(st.st_nlink)"
            return Outcome(rc: 0, err: 0, data: Array(d.utf8))
        case 18:
            let fd = slot(base, arg)
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = pread(fd, &buf, buf.count, off_t(out.count))
                if n < 0 { return result(-1) }
                if n == 0 { break }
                out += buf[0..<n]
            }
            return Outcome(rc: out.count, err: 0, data: out)
        case 19:
            let ok = slot(base, arg) >= 0
            setSlot(base, arg, -1)
            return result(ok ? 0 : -1)
        case 20:
            // Linux truncates on O_TRUNC whatever the access mode.
            let fd = open(x, O_RDONLY | O_TRUNC)
            if fd >= 0 { close(fd) }
            return result(fd < 0 ? -1 : 0)
        default:
            // read the whole file
            let fd = open(x, O_RDONLY)
            if fd < 0 { return result(-1) }
            defer { close(fd) }
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(fd, &buf, buf.count)
                if n < 0 { return result(-1) }
                if n == 0 { break }
                out += buf[0..<n]
            }
            return Outcome(rc: out.count, err: 0, data: out)
        }
    }

    /// Type, size (regular files), permission bits and link count of a path.
    func describe(_ path: String) -> String {
        var st = stat()
        guard lstat(path, &st) == 0 else { return "errno \(errno)" }
        let type = st.st_mode & S_IFMT
        let size = type == S_IFREG || type == S_IFLNK ? "\(st.st_size)" : "-"
        let nlink = type == S_IFDIR ? "-" : "\(st.st_nlink)"
        return "type \(type) mode \(String(st.st_mode & 0o7777, radix: 8)) size \(size) nlink \(nlink)"
    }

    func runDifferential(level: Int, members: Int, degradeBy: Int, seed: UInt64, steps: Int, options: [String] = []) throws {
        let a = try ScratchArray(level: level, members: members, chunk: "16K")
        try a.mount(options: options)
        for i in 0..<degradeBy { XCTAssertEqual(try a.ctl(["fail", a.mountpoint, "\(i)"]).status, 0) }
        let plain = a.root + "/plain"
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        var rng = SeededGenerator(seed: seed)
        defer { for base in [plain, a.mountpoint] { for i in 0..<3 { setSlot(base, i, -1) } } }
        var succeeded = 0, failed = Set<Int32>()
        for step in 0..<steps {
            // Weighted towards making things, so later operations find something.
            let kinds = [0, 0, 0, 1, 2, 2, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 7, 8, 9, 10, 11, 12, 13, 13, 14, 14,
                         15, 15, 16, 17, 17, 18, 19, 20]
            let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
            let p1 = names[Int(rng.next() % UInt64(names.count))]
            let p2 = names[Int(rng.next() % UInt64(names.count))]
            let arg = Int(rng.next() % 100_000)
            let len = Int(rng.next() % 40_000)
            let payload = (0..<len).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let want = op(plain, kind, p1, p2, arg, payload)
            let got = op(a.mountpoint, kind, p1, p2, arg, payload)
            let what = "RAID \(level) (\(degradeBy) failed) seed \(seed) step \(step): op \(kind) \(p1) \(p2) \(arg)"
            XCTAssertEqual(got, want, what)
            if want.rc >= 0 { succeeded += 1 } else { failed.insert(want.err) }
            for p in Set([p1, p2]) {
                XCTAssertEqual(describe(a.mountpoint + "/" + p), describe(plain + "/" + p), "\(what): state of \(p)")
            }
            if got != want { return }
        }
        // The sequence must exercise both success and a range of errors.
        XCTAssertGreaterThan(succeeded, steps / 6)
        XCTAssertGreaterThanOrEqual(failed.count, 4, "errnos seen: \(failed)")
        // Everything that exists reads the same.
        for p in names {
            XCTAssertEqual(op(a.mountpoint, 14, p, p, 0, []), op(plain, 14, p, p, 0, []), "final content of \(p)")
        }
    }

    func testRAID1() throws { try runDifferential(level: 1, members: 3, degradeBy: 0, seed: 1, steps: 400) }
    func testRAID5() throws { try runDifferential(level: 5, members: 4, degradeBy: 0, seed: 2, steps: 400) }
    func testRAID6() throws { try runDifferential(level: 6, members: 5, degradeBy: 0, seed: 3, steps: 400) }
    func testRAID1Degraded() throws { try runDifferential(level: 1, members: 3, degradeBy: 2, seed: 4, steps: 400) }
    func testRAID5Degraded() throws { try runDifferential(level: 5, members: 4, degradeBy: 1, seed: 5, steps: 400) }
    /// -o writeback_cache: the kernel gathers writes in its page cache.
    func testRAID5WritebackCache() throws {
        try runDifferential(level: 5, members: 4, degradeBy: 0, seed: 7, steps: 400, options: ["writeback_cache"])
    }
    func testRAID6Degraded() throws { try runDifferential(level: 6, members: 5, degradeBy: 2, seed: 6, steps: 400) }
}
