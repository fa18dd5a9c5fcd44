import Foundation
import XCTest
@testable import RAIDCore
import RAIDSimulation

/// A process crash (kill -9) at every member operation of every kind of
/// namespace change, on simulated members: the next assembly must bring
/// every member to one namespace — the change done or not done, as a unit —
/// with the array clean, the data intact, and later changes to the same
/// names failing no member. Before the namespace intent log and divergence
/// repair, an unlink cut short between members failed the array at the next
/// create of that name.
final class NamespaceCrashTests: XCTestCase {
    struct Op {
        let name: String
        /// The paths a follow-up touches once the array is back.
        let paths: [String]
        let run: (RAIDArray) throws -> Void
    }

    static let contentA = SeededBytes(seed: 11).bytesOnce(20_000)
    static let contentB = SeededBytes(seed: 12).bytesOnce(5_000)
    static let contentX = SeededBytes(seed: 13).bytesOnce(9_000)

    /// /a, /b, /d/x (also /h, a hard link), /e (empty), /g (emptied: the
    /// simulated member's size for it is a large directory's), /l -> a.
    func populate(_ array: RAIDArray) throws {
        func file(_ p: String, _ bytes: [UInt8]) throws {
            let f = try array.create(p, mode: 0o644, exclusive: true, caller: root)
            try f.write(bytes, at: 0)
            try f.sync(dataOnly: false)
            array.release(f)
        }
        try file("/a", Self.contentA)
        try file("/b", Self.contentB)
        try array.mkdir("/d", mode: 0o755, caller: root)
        try file("/d/x", Self.contentX)
        try array.link("/d/x", "/h")
        try array.mkdir("/e", mode: 0o700, caller: root)
        try array.mkdir("/g", mode: 0o755, caller: root)
        try file("/g/t", Self.contentB)
        try array.unlink("/g/t")
        try array.symlink(target: "a", at: "/l", caller: root)
    }

    static func create(_ p: String) -> (RAIDArray) throws -> Void {
        { a in a.release(try a.create(p, mode: 0o640, exclusive: true, caller: root)) }
    }

    let ops: [Op] = [
        Op(name: "create /n", paths: ["/n"], run: create("/n")),
        Op(name: "create /d/n", paths: ["/d/n"], run: create("/d/n")),
        Op(name: "unlink /a", paths: ["/a"], run: { try $0.unlink("/a") }),
        Op(name: "unlink /h (hard link)", paths: ["/h", "/d/x"], run: { try $0.unlink("/h") }),
        Op(name: "unlink /a, create /a", paths: ["/a"], run: { a in try a.unlink("/a"); try create("/a")(a) }),
        Op(name: "rename /a /n", paths: ["/a", "/n"], run: { try $0.rename("/a", "/n", flags: 0) }),
        Op(name: "rename /a /d/a2", paths: ["/a", "/d/a2"], run: { try $0.rename("/a", "/d/a2", flags: 0) }),
        Op(name: "rename /a over /b", paths: ["/a", "/b"], run: { try $0.rename("/a", "/b", flags: 0) }),
        Op(name: "rename exchange /a /b", paths: ["/a", "/b"], run: { try $0.rename("/a", "/b", flags: 2) }),
        Op(name: "rename /d /d2", paths: ["/d", "/d2"], run: { try $0.rename("/d", "/d2", flags: 0) }),
        Op(name: "rename /d /e/d", paths: ["/d", "/e/d"], run: { try $0.rename("/d", "/e/d", flags: 0) }),
        Op(name: "link /a /e/al", paths: ["/e/al"], run: { try $0.link("/a", "/e/al") }),
        Op(name: "mkdir /e/sub", paths: ["/e/sub"], run: { try $0.mkdir("/e/sub", mode: 0o750, caller: root) }),
        Op(name: "rmdir /e", paths: ["/e"], run: { try $0.rmdir("/e") }),
        Op(name: "rmdir /g (large)", paths: ["/g"], run: { try $0.rmdir("/g") }),
        Op(name: "symlink /s", paths: ["/s"], run: { try $0.symlink(target: "b", at: "/s", caller: root) }),
        Op(name: "mknod /p", paths: ["/p"], run: { try $0.mknod("/p", mode: S_IFIFO | 0o644, device: 0, caller: root) }),
        Op(name: "chmod /a", paths: ["/a"], run: { try $0.chmod("/a", mode: 0o600) }),
    ]

    /// The namespace as the array shows it: every path with its kind, mode,
    /// link count and (for files) contents — not file ids, which differ per run.
    static func tree(_ array: RAIDArray) throws -> [String: String] {
        var out: [String: String] = [:]
        try array.walk { path, _ in
            let st = try array.getattr(path)
            let mode = String(st.st_mode, radix: 8)
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                let f = try array.open(path)
                defer { array.release(f) }
                out[path] = "file \(mode) nlink \(st.st_nlink) crc \(crc32c(try f.readAll()))"
            case S_IFLNK:
                out[path] = "symlink -> \(try array.readlink(path))"
            default:
                out[path] = "\(mode)"
            }
            return true
        }
        return out
    }

    /// One member's own tree: kinds, modes, file ids and link targets.
    /// (Not the hidden directory of removed directories: it must be empty.)
    static func memberTree(_ m: Member, _ dir: String = "/", into out: inout [String: String]) throws {
        for e in try m.list(dir) {
            let p = dir == "/" ? "/" + e.name : dir + "/" + e.name
            if p == RAIDArray.trashDirectory {
                XCTAssertEqual(try m.list(p).map { $0.name }, [], "\(m.name): removed directories left")
                continue
            }
            let st = try m.lstat(p)
            let mode = String(st.st_mode, radix: 8)
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                out[p] = "dir \(mode)"
                try memberTree(m, p, into: &out)
            case S_IFREG:
                let f = try m.open(p, flags: O_RDONLY, mode: 0)
                let id = try MemberFileLayout(chunkSizeBytes: 4096).readAttribute(f).header?.fileId
                f.close()
                out[p] = "file \(mode) id \(id.map { String($0) } ?? "damaged")"
            case S_IFLNK:
                out[p] = "symlink -> \(try m.readlink(p))"
            default:
                out[p] = mode
            }
        }
    }

    /// `warm`: "/" changed once more after the flush (a file made and
    /// removed), so that a change in a directory below it is logged by
    /// "/"'s entry coming to cover its subtree, as a tree being filled is.
    func freshArray(_ level: RAIDLevel, _ n: Int, warm: Bool = false) throws -> ([SimulatedMember], RAIDArray) {
        let members = (0..<n).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: level, chunkSizeBytes: 4096, members: members)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
        try array.markInUse()
        try populate(array)
        // As the background flusher would: everything durable, the log
        // empty, so the change under test must log its directories first
        // (a crash can land inside that write too).
        try array.intentLog.flushIdle(idleSeconds: 0)
        if warm {
            try Self.create("/warm")(array)
            try array.unlink("/warm")
        }
        return (members, array)
    }

    func crashEverywhere(_ level: RAIDLevel, members n: Int, warm: Bool = false) throws {
        var crashes = 0
        defer { print("RAID\(level.rawValue): \(ops.count) kinds of change, \(crashes) crash points, each recovered") }
        for op in ops {
            // What the change gives when nothing interrupts it.
            let (_, model) = try freshArray(level, n, warm: warm)
            let before = try Self.tree(model)
            var states = [before]
            if op.name.hasPrefix("unlink /a, create") { try model.unlink("/a"); states.append(try Self.tree(model)); try Self.create("/a")(model) }
            else { try op.run(model) }
            states.append(try Self.tree(model))
            XCTAssertNotEqual(before, states.last!, "\(op.name) changes nothing")

            var point = 0
            while true {
                let (members, array) = try freshArray(level, n, warm: warm)
                let crash = SimulatedCrash()
                for m in members { m.crash = crash }
                crash.arm(after: point)
                do { try op.run(array) } catch {}
                if warm && ["create /d/n", "mkdir /e/sub", "link /a /e/al"].contains(op.name) && point == 0 {
                    XCTAssertNotEqual(array.intentLog.subtreeSince("/"), 0, "\(op.name): / does not cover its subtree")
                }
                // The killed daemon's background job stops with it (here:
                // it fails on every member until nothing is queued).
                array.finishTrashJob()
                crash.disarm()
                let where_ = "RAID\(level.rawValue) \(op.name), crash after \(point) member operations"
                // The daemon restarts: the old array object is simply dropped.
                let (again, report) = try RAIDArray.assemble(members: members, logger: quietLogger)
                XCTAssertEqual(report.leftOut.count, 0, "\(where_): \(report.lines)")
                try again.markInUse()
                again.finishTrashJob()
                XCTAssertEqual(again.state, .clean, "\(where_): a member was failed")
                var trees: [[String: String]] = []
                for m in members {
                    var t: [String: String] = [:]
                    try Self.memberTree(m, into: &t)
                    trees.append(t)
                }
                for (i, t) in trees.enumerated().dropFirst() where t != trees[0] {
                    XCTFail("\(where_): member \(i)'s namespace differs from member 0's: \(t) vs \(trees[0])")
                }
                let got = try Self.tree(again)
                XCTAssertTrue(states.contains(got), "\(where_): the namespace is neither before nor after the change: \(got)")
                let summary = try again.checkAll(mode: .check) { XCTFail("\(where_): \($0)") }
                XCTAssertEqual(summary.exitCode, 0, where_)
                // Repaired and shut down cleanly: nothing is pending any more
                // (a log left naming repaired directories refused a later
                // degraded mount as "not shut down cleanly").
                again.shutdown()
                let (third, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
                XCTAssertFalse(third.needsResync, "\(where_): the intent log still names \(third.recovery.pendingNamespace) after a clean shutdown")
                try third.markInUse()
                // The same names again: no member may be failed for them.
                for p in op.paths {
                    if let st = try? third.getattr(p) {
                        if (st.st_mode & S_IFMT) == S_IFDIR { try? third.rmdir(p) } else { try third.unlink(p) }
                    } else {
                        try Self.create(p)(third)
                    }
                }
                XCTAssertEqual(third.state, .clean, "\(where_): a follow-up change failed a member")
                if !crash.fired { break }   // the change ran to its end: every point was tried
                point += 1
                crashes += 1
                XCTAssertLessThan(point, 400, "\(op.name) never finished")
                if point >= 400 { break }
            }
        }
    }

    func testCrashInsideNamespaceChangesRAID1() throws { try crashEverywhere(.raid1, members: 3) }
    func testCrashInsideNamespaceChangesRAID5() throws { try crashEverywhere(.raid5, members: 4) }
    func testCrashInsideNamespaceChangesRAID6() throws { try crashEverywhere(.raid6, members: 5) }
    /// The same with "/" dirty first: the changes below it are logged by
    /// "/"'s entry covering its subtree, and the repair finds them by the
    /// directories' change times.
    func testCrashInsideNamespaceChangesUnderASubtreeEntryRAID5() throws { try crashEverywhere(.raid5, members: 4, warm: true) }

    /// A file created and renamed over another (an editor's or rsync's
    /// replace), the process killed inside the rename and the power cut on
    /// every member: at each crash point the name holds the old file or the
    /// new one, whole. Before the source was made durable first, its header
    /// could be lost where the rename had already landed (the first member),
    /// and the repair gave that member the replaced file's header over the
    /// new file's chunks (simulation RAID 5 seed 67, step 98,013).
    func testRenameOverAFreshFileWithAPowerCut() throws {
        let fresh = SeededBytes(seed: 21).bytesOnce(7_000)
        var point = 0
        while true {
            let (members, array) = try freshArray(.raid5, 4)
            let n = try array.create("/n", mode: 0o644, exclusive: true, caller: root)
            try n.write(fresh, at: 0)
            array.release(n)
            let crash = SimulatedCrash()
            for m in members { m.crash = crash }
            crash.arm(after: point)
            do { try array.rename("/n", "/b", flags: 0) } catch {}
            crash.disarm()
            var rng = SeededGenerator(seed: UInt64(point) + 1)
            for m in members { m.powerCut(tear: false, rng: &rng) }
            let where_ = "crash after \(point) member operations of the rename, then a power cut"
            let (again, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
            try again.markInUse()
            let b = try again.open("/b")
            let got = try b.readAll()
            again.release(b)
            XCTAssertTrue(got == Self.contentB || got == fresh, "\(where_): /b holds \(got.count) bytes, neither the old file nor the new one")
            if got == Self.contentB { XCTAssertNoThrow(try again.getattr("/n"), "\(where_): /b is the old file, so /n must remain") }
            let summary = try again.checkAll(mode: .check) { XCTFail("\(where_): \($0)") }
            XCTAssertEqual(summary.exitCode, 0, where_)
            if !crash.fired { break }
            point += 1
            if point >= 400 { XCTFail("the rename never finished"); break }
        }
    }

    /// The other way round: a synced file renamed over a fresh one (created,
    /// never synced), the rename cut short and the power cut, so the
    /// members the rename missed hold the fresh file with no header. At
    /// each crash point the synced file reads back whole under one of its
    /// names. Before, the repair took the headerless fresh file for the
    /// renamed one ("a create cut short") and gave it that file's header:
    /// its chunks read as zeros (simulation RAID 5 seed 29, step 46,550,
    /// a hard-linked source).
    func testSyncedFileRenamedOverAFreshOneWithAPowerCut() throws {
        for (source, content, other) in [("/a", Self.contentA, nil as String?), ("/h", Self.contentX, "/d/x" as String?)] {
            var point = 0
            while true {
                let (members, array) = try freshArray(.raid5, 4)
                array.release(try array.create("/t", mode: 0o644, exclusive: true, caller: root))
                let crash = SimulatedCrash()
                for m in members { m.crash = crash }
                crash.arm(after: point)
                do { try array.rename(source, "/t", flags: 0) } catch {}
                crash.disarm()
                var rng = SeededGenerator(seed: UInt64(point) + 1)
                for m in members { m.powerCut(tear: false, rng: &rng) }
                let where_ = "rename \(source) over a fresh /t, crash after \(point) member operations, then a power cut"
                let (again, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
                try again.markInUse()
                func read(_ p: String) throws -> [UInt8]? {
                    guard (try? again.getattr(p)) != nil else { return nil }
                    let f = try again.open(p)
                    defer { again.release(f) }
                    return try f.readAll()
                }
                let t = try read("/t"), s = try read(source)
                XCTAssertTrue(t == content || s == content, "\(where_): neither /t nor \(source) holds the file")
                XCTAssertTrue(t == nil || t == content || t == [], "\(where_): /t holds \(t!.count) bytes, neither the file nor the fresh one")
                if let other { XCTAssertEqual(try read(other), content, "\(where_): \(other), the file's other name") }
                let summary = try again.checkAll(mode: .check) { XCTFail("\(where_): \($0)") }
                XCTAssertEqual(summary.exitCode, 0, where_)
                if !crash.fired { break }
                point += 1
                if point >= 400 { XCTFail("the rename never finished"); break }
            }
        }
    }

    /// The defect as found: an unlink done on the first member only, then a
    /// create of the same name. The other members answer EEXIST; they are
    /// repaired, not failed.
    func testCreateOverAnUnlinkDoneOnOneMemberRepairsTheOthers() throws {
        let members = (0..<4).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: .raid5, chunkSizeBytes: 4096, members: members)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
        try array.markInUse()
        let f = try array.create("/j15", mode: 0o644, exclusive: true, caller: root)
        try f.write(Self.contentA, at: 0)
        array.release(f)
        try members[0].unlink("/j15")
        let g = try array.create("/j15", mode: 0o644, exclusive: true, caller: root)
        try g.write(Self.contentB, at: 0)
        array.release(g)
        XCTAssertEqual(array.state, .clean)
        XCTAssertTrue(array.eventLog.history().contains { $0.kind == "namespace-repaired" })
        let h = try array.open("/j15")
        XCTAssertEqual(try h.readAll(), Self.contentB)
        array.release(h)
        XCTAssertEqual(try array.checkAll(mode: .check) { XCTFail("\($0)") }.exitCode, 0)
    }

    /// An array whose members were failed one after another (as the old
    /// behaviour did) is refused with a message naming force, and brought
    /// back by a forced assembly with every file intact.
    func testForcedAssemblyBringsBackAFailedArray() throws {
        let members = (0..<4).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: .raid5, chunkSizeBytes: 4096, members: members)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
        try array.markInUse()
        try populate(array)
        let before = try Self.tree(array)
        for r in 1...3 { array.memberFailed(role: r, reason: "test") }
        XCTAssertEqual(array.state, .failed)
        array.shutdown()
        XCTAssertThrowsError(try RAIDArray.assemble(members: members, logger: quietLogger)) { e in
            XCTAssertTrue("\(e)".contains("-o force would take back"), "\(e)")
        }
        let (forced, report) = try RAIDArray.assemble(members: members, configuration: ArrayConfiguration(force: true), logger: quietLogger)
        XCTAssertEqual(forced.recovery.forcedRoles.map { $0.role }, [3, 2], "the freshest first, only as many as needed")
        XCTAssertTrue(report.lines.contains { $0.contains("forced back sim3") }, "\(report.lines)")
        try forced.markInUse()
        XCTAssertEqual(forced.state, .degraded)
        XCTAssertEqual(try Self.tree(forced), before)
        XCTAssertEqual(try forced.checkAll(mode: .check) { XCTFail("\($0)") }.exitCode, 0)
    }
}

extension SeededBytes {
    func bytesOnce(_ n: Int) -> [UInt8] {
        var copy = self
        return copy.bytes(n)
    }
}
