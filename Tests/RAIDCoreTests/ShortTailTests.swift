import Foundation
import XCTest
@testable import RAIDCore
import RAIDSimulation

/// A file's last stripe is short on every member (its chunks only as far
/// as the file reaches, parity as long as the longest), and stays short
/// through what rewrites chunks besides the write path: a truncate, a
/// rebuild onto a spare, a replacement's copy and a scrub's repair. Until
/// they kept the shape, a rebuilt member held every small file's tail
/// padded to the chunk size (a tree of small files took tens of times the
/// space on it) and a truncated file kept its last chunk whole.
final class ShortTailTests: XCTestCase {
    let chunk = 16 * 1024
    let sector = MemberFileLayout.sectorBytes

    /// Sizes around sector, chunk and stripe boundaries, in the leading
    /// stripes (4 KiB chunks) and past them.
    func sizes(_ g: Geometry) -> [Int] {
        let s = g.stripeDataBytes, lead = Int(g.leadingBytes)
        return Set([1, sector - 1, sector, sector + 1, 5000, 9000, lead - 1, lead, lead + 1, lead + 9000, lead + chunk,
                    lead + chunk + 1, lead + s - 1, lead + s, lead + s + 5000, lead + 2 * s + chunk + 20]).sorted()
    }

    /// An array over simulated members with one file of each size, and
    /// one cut by a truncate from three stripes to 5,000 bytes.
    func filled(_ level: RAIDLevel, _ n: Int) throws -> (RAIDArray, [SimulatedMember], SimulatedEnvironment, [String: [UInt8]]) {
        let env = SimulatedEnvironment(seed: UInt64(n))
        let members = (0..<n).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: level, chunkSizeBytes: chunk, members: members, environment: env)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger, environment: env)
        try array.markInUse()
        var files: [String: [UInt8]] = [:]
        var rng = SeededBytes(seed: 3)
        for size in sizes(array.geometry) {
            let data = rng.bytes(size)
            let f = try array.create("/f\(size)", mode: 0o644, exclusive: true, caller: root)
            try f.write(data, at: 0)
            array.release(f)
            files["/f\(size)"] = data
        }
        let cut = try array.create("/cut", mode: 0o644, exclusive: true, caller: root)
        let long = rng.bytes(3 * array.geometry.stripeDataBytes)
        try cut.write(long, at: 0)
        try cut.truncate(to: 5000)
        array.release(cut)
        files["/cut"] = Array(long[0..<5000])
        return (array, members, env, files)
    }

    /// Each member file's length, by path, on `m`.
    func shape(_ m: Member, _ files: [String: [UInt8]]) throws -> [String: Int] {
        try files.keys.reduce(into: [:]) { $0[$1] = Int(try m.lstat($1).st_size) }
    }

    func assertIntact(_ array: RAIDArray, _ files: [String: [UInt8]], _ what: String,
                      file: StaticString = #filePath, line: UInt = #line) throws {
        for (path, data) in files {
            let f = try array.open(path)
            XCTAssertTrue(try f.readAll() == data, "\(what): \(path) reads back wrong", file: file, line: line)
            array.release(f)
        }
        let summary = try array.checkAll(mode: .check) { XCTFail("\(what): \($0)", file: file, line: line) }
        XCTAssertEqual(summary.problems, 0, what, file: file, line: line)
    }

    /// The write path's shape: a member holding none of a file's data has
    /// its header alone (in the attribute: an empty file); the truncated
    /// file is shaped like one written at its size.
    func testTruncateLeavesTheShapeOfAFileWrittenAtItsSize() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 6), (.raid1, 3)] {
            let (array, members, _, files) = try filled(level, n)
            for (role, m) in members.enumerated() {
                let s = try shape(m, files)
                // The member holding the same chunks of /f5000 (files start
                // on different rows of md's rotation).
                let twin = try roleOf(array, "/f5000", stripe: 0, chunkIndex: try chunkOf(array, "/cut", stripe: 0, role: role))
                XCTAssertEqual(s["/cut"], try shape(members[twin], files)["/f5000"], "RAID\(level.rawValue) role \(role): truncated to 5,000 bytes")
                let i = try chunkOf(array, "/f1", stripe: 0, role: role)
                let holds = i == 0 || i >= array.geometry.dataChunkCount   // a 1-byte file's data or parity
                if !holds { XCTAssertEqual(s["/f1"], 0, "RAID\(level.rawValue) role \(role): a 1-byte file") }
                XCTAssertLessThanOrEqual(s["/f1"]!, Int(array.layout.chunkOffset(stripe: 0)) + sector,
                                         "RAID\(level.rawValue) role \(role): a 1-byte file costs a sector at most")
            }
            try assertIntact(array, files, "RAID\(level.rawValue)")
        }
    }

    /// The leading stripes spread a small file a block per data member:
    /// 16 KiB on a RAID 6 of six is one row, a block on each member (four
    /// data, P and Q), where one 128 KiB chunk held it all and P and Q as
    /// long; 20 KiB starts a second row (data, P and Q on three members).
    func testASmallFileIsSpreadABlockPerMember() throws {
        let members = (0..<6).map { SimulatedMember(name: "sim\($0)") }
        _ = try ArrayCreator.initialize(level: .raid6, chunkSizeBytes: 128 * 1024, members: members)
        let (array, _) = try RAIDArray.assemble(members: members, logger: quietLogger)
        try array.markInUse()
        var rng = SeededBytes(seed: 5)
        for (size, lengths) in [(16_384, [4096, 4096, 4096, 4096, 4096, 4096]), (20_480, [4096, 4096, 4096, 8192, 8192, 8192])] {
            let data = rng.bytes(size)
            let f = try array.create("/s\(size)", mode: 0o644, exclusive: true, caller: root)
            try f.write(data, at: 0)
            XCTAssertTrue(try f.readAll() == data)
            array.release(f)
            XCTAssertEqual(try members.map { Int(try $0.lstat("/s\(size)").st_size) }.sorted(), lengths, "\(size) bytes")
        }
    }

    /// A spare rebuilt while the array is degraded ends with each member
    /// file exactly as long as the lost member's was, and so does a
    /// replacement's copy; both hold every byte.
    func testRebuildAndReplacementKeepShortTails() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 6), (.raid1, 3)] {
            let (array, members, env, files) = try filled(level, n)
            let lost = try shape(members[1], files)
            let spare = try array.spareTakes(1)
            env.jobs.runUntilIdle()
            XCTAssertEqual(array.roleState(1), .active, "RAID\(level.rawValue): the rebuild finished")
            XCTAssertEqual(try shape(spare, files), lost, "RAID\(level.rawValue): the rebuilt member's files")
            try assertIntact(array, files, "RAID\(level.rawValue) after the rebuild")

            let replaced = try shape(members[2], files)
            let newMember = SimulatedMember(name: "new")
            try array.replace(role: 2, with: newMember)
            env.jobs.runUntilIdle()
            XCTAssertEqual(try shape(newMember, files), replaced, "RAID\(level.rawValue): the replacement's files")
            try assertIntact(array, files, "RAID\(level.rawValue) after the replacement")
        }
    }

    /// Rot in a tail sector and in the entry of a sector past the tail,
    /// and in the attribute's entry of a leading chunk a member does not
    /// hold: a scrub's repair mends them and leaves every member file its
    /// length.
    func testScrubRepairMendsATailWithoutPaddingIt() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 6)] {
            let (array, members, _, files) = try filled(level, n)
            let g = array.geometry, layout = array.layout
            // The first full stripe: data chunk 0 holds 3 sectors, parity as many.
            let s0 = Geometry.leadingStripes
            let path = "/f\(g.leadingBytes + 9000)"
            let before = try members.map { try shape($0, files) }
            let role = try roleOf(array, path, stripe: s0, chunkIndex: 0)
            let mf = try members[role].open(path, flags: O_RDWR, mode: 0)
            var byte = [UInt8](repeating: 0, count: 1)
            try byte.withUnsafeMutableBytes { try mf.readFull(into: $0.baseAddress!, count: 1, at: layout.chunkOffset(stripe: s0) + 8100) }
            byte[0] ^= 0x20
            try byte.withUnsafeBytes { try mf.write(from: $0.baseAddress!, count: 1, at: layout.chunkOffset(stripe: s0) + 8100) }
            // The entry of sector 3, past the tail ("never written"), rots.
            try [UInt8](repeating: 0x10, count: 1).withUnsafeBytes {
                try mf.write(from: $0.baseAddress!, count: 1, at: layout.entryOffset(stripe: s0, sector: 3) + 2)
            }
            mf.close()
            // /f5000 reaches data chunks 0 and 1 of stripe 0 only: the
            // member of chunk 2 holds no data of it, and its entry rots.
            let empty = try members[roleOf(array, "/f5000", stripe: 0, chunkIndex: 2)].open("/f5000", flags: O_RDWR, mode: 0)
            guard case .present(var a) = try layout.readAttribute(empty) else { return XCTFail("no attribute") }
            a.entries[0] = 0x10
            let value = [UInt8](unsafeUninitializedCapacity: FileAttribute.encodedBytes) { b, n in
                a.encode(into: b.baseAddress!); n = FileAttribute.encodedBytes
            }
            try value.withUnsafeBytes { try empty.writeAttribute(from: $0.baseAddress!, count: $0.count) }
            empty.close()
            var found = 0
            _ = try array.checkAll(mode: .repair) { _ in found += 1 }
            XCTAssertGreaterThan(found, 0, "RAID\(level.rawValue): the scrub finds the rot")
            XCTAssertEqual(try members.map { try shape($0, files) }, before, "RAID\(level.rawValue): member file lengths after the repair")
            let mended = try members[roleOf(array, "/f5000", stripe: 0, chunkIndex: 2)].open("/f5000", flags: O_RDONLY, mode: 0)
            XCTAssertEqual((try layout.readAttribute(mended)), .present(FileAttribute(header: a.header)),
                           "RAID\(level.rawValue): the rotted entry is \"never written\" again")
            mended.close()
            try assertIntact(array, files, "RAID\(level.rawValue) after the repair")
        }
    }
}
