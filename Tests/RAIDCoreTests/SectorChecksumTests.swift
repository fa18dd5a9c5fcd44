import Foundation
import XCTest
import CLinux
@testable import RAIDCore

/// Checksums per 4 KiB sector: chunks larger than a sector are read,
/// verified, rewritten and healed by the sectors a request touches; the
/// leading stripes' one-sector chunks have their entries in the member
/// file's attribute.
final class SectorChecksumTests: XCTestCase {
    let chunk = 65536
    let sector = MemberFileLayout.sectorBytes

    func testLayoutKeepsOneEntryPerSectorBesideItsChunks() {
        let l = MemberFileLayout(chunkSizeBytes: 128 << 10)
        XCTAssertEqual(l.sectorsPerChunk, 32)
        XCTAssertEqual(l.chunksPerGroup, 16)                 // 4 KiB of entries for 2 MiB of chunks
        // After the leading stripes' four 4 KiB chunks.
        XCTAssertEqual(l.tableOffset(stripe: 4), 16384)
        XCTAssertEqual(l.chunkOffset(stripe: 4), 16384 + 4096)
        XCTAssertEqual(l.entryOffset(stripe: 5, sector: 3), 16384 + (32 + 3) * 8)
        XCTAssertEqual(l.tableOffset(stripe: 20), l.chunkOffset(stripe: 19) + (128 << 10))
        XCTAssertEqual(l.fileBytes(stripeCount: 20), l.tableOffset(stripe: 20))
        // A chunk with more entries than 4 KiB holds gets a table of its own.
        let big = MemberFileLayout(chunkSizeBytes: 16 << 20)
        XCTAssertEqual(big.tableBytes, 32768)
        XCTAssertEqual(big.chunksPerGroup, 1)
        XCTAssertEqual(big.chunkOffset(stripe: 5), 16384 + 2 * 32768 + (16 << 20))
    }

    /// Appends byte by byte across a chunk boundary, truncates into and out
    /// of the tail, leaves holes: every step reads back as the model and
    /// leaves parity and checksums agreeing.
    /// A poisoned entry (a sector a rebuild could not rebuild) with rotted
    /// bits stays poison, and no rot of up to 4 bits makes it "never
    /// written" (a lost sector read back as zeros: simulation RAID 1 seed 2
    /// beyond redundancy, when poison was 1) or a valid checksum.
    func testPoisonSurvivesRotAndNeverPassesForZerosOrData() {
        let zeroCRC: UInt32 = 0x1234_5678
        XCTAssertNil(SectorEntry.expectedCRC(SectorEntry.poison, zeroSectorCRC: zeroCRC))
        var rotted: [UInt64] = [SectorEntry.poison]
        for a in 0..<64 {
            rotted.append(SectorEntry.poison ^ (1 << a))
            for b in (a + 1)..<64 { rotted.append(SectorEntry.poison ^ (1 << a) ^ (1 << b)) }
        }
        for raw in rotted {
            XCTAssertTrue(SectorEntry.isPoison(raw), String(raw, radix: 16))
            XCTAssertNil(SectorEntry.expectedCRC(raw, zeroSectorCRC: zeroCRC), "\(String(raw, radix: 16)) reads as a checksum")
        }
        XCTAssertFalse(SectorEntry.isPoison(0), "never written is not lost")
        for crc: UInt32 in [0, 1, 0xFFFF_FFFF, 0xDEAD_BEEF, 0x5241_4944] {
            XCTAssertFalse(SectorEntry.isPoison(SectorEntry.encode(crc: crc)), "a checksum is not poison")
        }
    }

    func testShortTailShapesRoundTrip() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 5), (.raid1, 2)] {
            let tmp = TempDir()
            let (array, _) = try makeArray(tmp, level: level, members: n, chunk: chunk)
            let f = try array.create("/t", mode: 0o644, exclusive: true, caller: root)
            var rng = SeededBytes(seed: UInt64(n))
            var model: [UInt8] = []
            func expect(_ what: String) throws {
                XCTAssertEqual(f.currentSize(), UInt64(model.count), "RAID\(level.rawValue): size after \(what)")
                XCTAssertEqual(try f.readAll(), model, "RAID\(level.rawValue): contents after \(what)")
            }
            func write(_ data: [UInt8], at off: Int) throws {
                try f.write(data, at: UInt64(off))
                if model.count < off + data.count { model += [UInt8](repeating: 0, count: off + data.count - model.count) }
                model.replaceSubrange(off..<(off + data.count), with: data)
            }
            func truncate(_ size: Int) throws {
                try f.truncate(to: UInt64(size))
                if size < model.count { model.removeLast(model.count - size) } else { model += [UInt8](repeating: 0, count: size - model.count) }
            }
            // Byte by byte across a leading chunk's end, from the leading
            // stripes into the first full one, and across a full chunk's end.
            let lead = Int(array.geometry.leadingBytes)
            for boundary in [sector, lead, lead + chunk] {
                try write(rng.bytes(boundary - 10 - model.count), at: model.count)
                for _ in 0..<20 {
                    try write(rng.bytes(1), at: model.count)
                    try expect("appending byte \(model.count)")
                }
            }
            for size in [lead + chunk + 5000, 5000, sector, sector - 1, 1, 0, lead + 2 * chunk + 1, lead - 1, lead + 1,
                         3 * sector + 7, lead + chunk - 1] {
                try truncate(size)
                try expect("truncating to \(size)")
                try write(rng.bytes(3), at: model.count)
                try expect("writing after \(size)")
            }
            // A hole: a write two stripes past the end, then one into the hole.
            let far = model.count + 2 * array.geometry.stripeDataBytes + 100
            try write(rng.bytes(5000), at: far)
            try expect("a write past a hole")
            try write(rng.bytes(9000), at: far - 20_000)
            try expect("a write into the hole")
            array.release(f)
            let summary = try array.checkAll(mode: .check) { XCTFail("RAID\(level.rawValue): \($0)") }
            XCTAssertEqual(summary.problems, 0)
        }
    }

    /// A file of several stripes on RAID `level`; returns the array, its
    /// member directories and the data.
    private func filled(_ tmp: TempDir, _ level: RAIDLevel, _ n: Int, bytes: Int) throws -> (RAIDArray, [String], [UInt8]) {
        let (array, dirs) = try makeArray(tmp, level: level, members: n, chunk: chunk)
        var rng = SeededBytes(seed: 11)
        let data = rng.bytes(bytes)
        let f = try array.create("/x", mode: 0o644, exclusive: true, caller: root)
        try f.write(data, at: 0)
        array.release(f)
        return (array, dirs, data)
    }

    private func member(_ dirs: [String], _ role: Int) -> String { dirs[role] + "/data/x" }

    private func readMember(_ path: String, at off: UInt64, count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var b = [UInt8](repeating: 0, count: count)
        XCTAssertEqual(pread(fd, &b, count, off_t(off)), count)
        return b
    }

    private func writeMember(_ path: String, _ bytes: [UInt8], at off: UInt64) {
        let fd = open(path, O_RDWR)
        defer { close(fd) }
        var b = bytes
        XCTAssertEqual(pwrite(fd, &b, b.count, off_t(off)), b.count)
    }

    private func totalChecksumErrors(_ array: RAIDArray) -> UInt64 {
        (0..<array.geometry.memberCount).map { array.counters($0).checksumErrors }.reduce(0, +)
    }

    /// Rot in one sector of a data chunk: a 4 KiB read of it comes back
    /// right, the sector is rewritten, and the sectors beside it were
    /// neither read as damaged nor changed.
    func testBitRotInOneSectorIsRepairedAndOnlyItRewritten() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 6), (.raid1, 3)] {
            let tmp = TempDir()
            let (array, dirs, data) = try filled(tmp, level, n, bytes: leading(level, n) + 3 * array0StripeBytes(level, n))
            let s0 = Geometry.leadingStripes, start = Int(array.geometry.stripeStart(s0))
            let role = try roleOf(array, "/x", stripe: s0, chunkIndex: 0)
            let at = array.layout.chunkOffset(stripe: s0) + UInt64(5 * sector)
            let path = member(dirs, role)
            let before = readMember(path, at: array.layout.chunkOffset(stripe: s0), count: chunk)
            writeMember(path, [before[5 * sector + 17] ^ 0x40], at: at + 17)
            let f = try array.open("/x")
            var buf = [UInt8](repeating: 0, count: sector)
            let got = try buf.withUnsafeMutableBytes { try f.read(into: $0.baseAddress!, count: sector, at: UInt64(start + 5 * sector)) }
            XCTAssertEqual(got, sector)
            XCTAssertEqual(buf, Array(data[(start + 5 * sector)..<(start + 6 * sector)]), "RAID\(level.rawValue)")
            XCTAssertEqual(totalChecksumErrors(array), 1, "RAID\(level.rawValue): one sector found damaged")
            XCTAssertEqual(readMember(path, at: array.layout.chunkOffset(stripe: s0), count: chunk), before,
                           "RAID\(level.rawValue): the sector is repaired on its member")
            XCTAssertEqual(try f.readAll(), data)
            XCTAssertEqual(totalChecksumErrors(array), 1, "RAID\(level.rawValue): nothing else was damaged")
            array.release(f)
        }
    }

    /// Rot in the last, short sector of a file's tail chunk is repaired.
    func testBitRotInATailSectorIsRepaired() throws {
        for (level, n) in [(RAIDLevel.raid5, 3), (.raid6, 5)] {
            let tmp = TempDir()
            // The tail ends inside chunk 1 of the second full stripe.
            let size = leading(level, n) + array0StripeBytes(level, n) + chunk + 3 * sector + 100
            let (array, dirs, data) = try filled(tmp, level, n, bytes: size)
            let s = Geometry.leadingStripes + 1
            let role = try roleOf(array, "/x", stripe: s, chunkIndex: 1)
            let path = member(dirs, role)
            let at = array.layout.chunkOffset(stripe: s) + UInt64(3 * sector + 50)
            let old = readMember(path, at: at, count: 1)
            writeMember(path, [old[0] ^ 0x01], at: at)
            let f = try array.open("/x")
            XCTAssertEqual(try f.readAll(), data, "RAID\(level.rawValue)")
            XCTAssertEqual(readMember(path, at: at, count: 1), old, "RAID\(level.rawValue): repaired on its member")
            array.release(f)
            let summary = try array.checkAll(mode: .check) { XCTFail("RAID\(level.rawValue): \($0)") }
            XCTAssertEqual(summary.problems, 0)
        }
    }

    /// A damaged checksum entry is found (its two halves disagree), the
    /// sector is served from redundancy, and the entry is rewritten.
    func testDamagedChecksumEntryIsRepaired() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 5)] {
            let tmp = TempDir()
            let (array, dirs, data) = try filled(tmp, level, n, bytes: leading(level, n) + 2 * array0StripeBytes(level, n))
            let s = Geometry.leadingStripes + 1
            let role = try roleOf(array, "/x", stripe: s, chunkIndex: 0)
            let path = member(dirs, role)
            let entryAt = array.layout.entryOffset(stripe: s, sector: 3)
            let entry = readMember(path, at: entryAt, count: 8)
            writeMember(path, [entry[6] ^ 0x10], at: entryAt + 6)
            let f = try array.open("/x")
            XCTAssertEqual(try f.readAll(), data, "RAID\(level.rawValue)")
            XCTAssertEqual(totalChecksumErrors(array), 1)
            XCTAssertEqual(readMember(path, at: entryAt, count: 8), entry, "RAID\(level.rawValue): the entry is rewritten")
            XCTAssertEqual(try f.readAll(), data)
            XCTAssertEqual(totalChecksumErrors(array), 1, "RAID\(level.rawValue): the second read finds nothing")
            array.release(f)
        }
    }

    /// An open file verifies reads against the entries it read or wrote
    /// (EntryCache): rot in an entry on disk behind them does not reach a
    /// read, and is not repaired by one, but a scrub, which reads the
    /// tables themselves, finds and rewrites it. Writes keep the cached
    /// entries true: the file reads back right, cached and cold.
    func testCachedEntriesServeReadsAndScrubFindsRotBehindThem() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 5)] {
            let tmp = TempDir()
            var (array, dirs, data) = try filled(tmp, level, n, bytes: leading(level, n) + 3 * array0StripeBytes(level, n))
            let s = Geometry.leadingStripes + 1
            let role = try roleOf(array, "/x", stripe: s, chunkIndex: 0)
            let path = member(dirs, role)
            let f = try array.open("/x")
            XCTAssertEqual(try f.readAll(), data)
            // A write into the stripe after its table is cached.
            let at = Int(array.geometry.stripeStart(s)) + 4096
            var rng = SeededBytes(seed: 12)
            let patch = rng.bytes(4096)
            try f.write(patch, at: UInt64(at))
            data.replaceSubrange(at..<at + 4096, with: patch)
            let entryAt = array.layout.entryOffset(stripe: s, sector: 3)
            let entry = readMember(path, at: entryAt, count: 8)
            writeMember(path, [entry[6] ^ 0x10], at: entryAt + 6)
            XCTAssertEqual(try f.readAll(), data, "RAID\(level.rawValue)")
            XCTAssertEqual(totalChecksumErrors(array), 0, "RAID\(level.rawValue): the read used the cached entry")
            XCTAssertNotEqual(readMember(path, at: entryAt, count: 8), entry)
            var found: [StripeProblem] = []
            try f.checkAll(mode: .repair) { _, r in found += r.problems }
            XCTAssertEqual(found.map(\.role), [role], "RAID\(level.rawValue): the scrub finds the rotted entry")
            XCTAssertEqual(readMember(path, at: entryAt, count: 8), entry, "RAID\(level.rawValue): and rewrites it")
            XCTAssertEqual(try f.readAll(), data)
            array.release(f)
            let cold = try array.open("/x")
            XCTAssertEqual(try cold.readAll(), data, "RAID\(level.rawValue): read cold")
            XCTAssertEqual(totalChecksumErrors(array), 1, "RAID\(level.rawValue): only the scrub's")
            array.release(cold)
        }
    }

    /// The cache's own rules, step by step: a table read before a write
    /// to its file is not kept (the write may have changed an entry of it
    /// after the read); one read with no write since is, and a write then
    /// updates it; another file's write changes nothing; a failed write or
    /// `invalidate` drops what is held; another member file (a replacement)
    /// or another generation finds nothing.
    func testEntryCacheKeepsOnlyWhatNoWriteOvertook() throws {
        let tmp = TempDir()
        let (array, _, _) = try filled(tmp, .raid5, 4, bytes: leading(.raid5, 4) + 2 * array0StripeBytes(.raid5, 4))
        let f = try array.open("/x")
        defer { array.release(f) }
        let file = try XCTUnwrap(f.files[0]), otherFile = try XCTUnwrap(f.files[1])
        let cache = EntryCache(tableEntries: 8, budget: EntryCacheBudget(bytes: 1 << 20, tableBytes: 64))
        var table: [UInt64] = (0..<8).map { 100 + $0 }
        var got: [UInt64] = [0, 0]
        func lookup(_ f: MemberFile = file, generation: UInt32 = 1) -> UInt64? {
            got.withUnsafeMutableBufferPointer { cache.lookup(f, generation: generation, table: 3, index: 2, count: 2, into: $0.baseAddress!) }
        }
        func install(_ stamp: UInt64) { table.withUnsafeBufferPointer { cache.install(file, generation: 1, table: 3, $0.baseAddress!, stamp: stamp) } }
        func write(_ f: MemberFile, _ values: [UInt64]?) {
            if let values {
                values.withUnsafeBytes { cache.wrote(f, table: 3, index: 2, count: 2, $0.baseAddress!) }
            } else {
                cache.wrote(f, table: 3, index: 2, count: 2, nil)
            }
        }
        let early = try XCTUnwrap(lookup())
        write(file, [7, 8])
        install(early)
        XCTAssertNotNil(lookup(), "a table read before a write is not kept")
        install(try XCTUnwrap(lookup()))
        XCTAssertNil(lookup())
        XCTAssertEqual(got, [102, 103])
        write(file, [7, 8])
        XCTAssertNil(lookup())
        XCTAssertEqual(got, [7, 8], "a write updates the table held")
        write(otherFile, [9, 9])
        XCTAssertNil(lookup())
        XCTAssertEqual(got, [7, 8], "another file's write leaves it")
        XCTAssertNotNil(lookup(otherFile), "another file finds nothing")
        XCTAssertNotNil(lookup(generation: 2), "another generation finds nothing")
        write(file, nil)
        XCTAssertNotNil(lookup(), "a failed write drops the table")
        install(try XCTUnwrap(lookup()))
        XCTAssertNil(lookup())
        cache.invalidate()
        XCTAssertNotNil(lookup(), "invalidate drops it")
    }

    /// The seeded workload of ArrayFileTests with chunks of 16 sectors:
    /// sub-chunk reads and read-modify-writes agree with the model, and the
    /// array's parity and checksums with each other.
    func testWorkloadWithMultiSectorChunks() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 5), (.raid1, 2)] {
            let tmp = TempDir()
            let (array, _) = try makeArray(tmp, level: level, members: n, chunk: chunk)
            let f = try array.create("/w", mode: 0o644, exclusive: true, caller: root)
            try runWorkload(f, seed: UInt64(n) * 31, steps: 60, stripeBytes: array.geometry.stripeDataBytes)
            array.release(f)
            let summary = try array.checkAll(mode: .check) { XCTFail("RAID\(level.rawValue) x\(n): \($0)") }
            XCTAssertEqual(summary.problems, 0)
        }
    }

    private func array0StripeBytes(_ level: RAIDLevel, _ n: Int) -> Int {
        (n - level.redundancy(memberCount: n)) * chunk
    }

    /// The logical bytes of the leading stripes.
    private func leading(_ level: RAIDLevel, _ n: Int) -> Int {
        Int(Geometry.leadingStripes) * (n - level.redundancy(memberCount: n)) * Geometry.leadingChunkBytes
    }

    /// Rot in a leading stripe's 4 KiB chunk, in its entry in the member
    /// file's attribute, and in the attribute's header: each is found,
    /// served from redundancy and rewritten, the attribute whole again.
    func testBitRotInALeadingChunkAndInTheAttributeIsRepaired() throws {
        for (level, n) in [(RAIDLevel.raid5, 4), (.raid6, 6), (.raid1, 3)] {
            let tmp = TempDir()
            let (array, dirs, data) = try filled(tmp, level, n, bytes: leading(level, n) + 1000)
            // Data chunk 1 of stripe 2: its sector in the member file.
            let role = try roleOf(array, "/x", stripe: 2, chunkIndex: level == .raid1 ? 0 : 1)
            let path = member(dirs, role)
            let at = array.layout.chunkOffset(stripe: 2) + 99
            let old = readMember(path, at: at, count: 1)
            writeMember(path, [old[0] ^ 0x08], at: at)
            let f = try array.open("/x")
            XCTAssertEqual(try f.readAll(), data, "RAID\(level.rawValue): rot in a leading chunk")
            XCTAssertEqual(readMember(path, at: at, count: 1), old, "RAID\(level.rawValue): repaired on its member")
            XCTAssertEqual(totalChecksumErrors(array), 1)
            array.release(f)
            // One bit of the chunk's entry in the attribute flipped (entry
            // 2 at bytes 40..<48), then one of the header (the file id).
            let value = try XCTUnwrap(attribute(path))
            for (byte, what) in [(42, "its entry"), (6, "the header")] {
                var rotted = value
                rotted[byte] ^= 0x20
                setAttribute(path, rotted)
                let g = try array.open("/x")
                XCTAssertEqual(try g.readAll(), data, "RAID\(level.rawValue): rot in \(what)")
                array.release(g)
                XCTAssertEqual(attribute(path), value, "RAID\(level.rawValue): \(what) is whole again")
            }
            let summary = try array.checkAll(mode: .check) { XCTFail("RAID\(level.rawValue): \($0)") }
            XCTAssertEqual(summary.problems, 0)
        }
    }

    private func attribute(_ path: String) -> [UInt8]? {
        var b = [UInt8](repeating: 0, count: 256)
        let n = getxattr(path, FileAttribute.name, &b, b.count)
        return n < 0 ? nil : Array(b[0..<n])
    }

    private func setAttribute(_ path: String, _ value: [UInt8]) {
        XCTAssertEqual(value.withUnsafeBytes { setxattr(path, FileAttribute.name, $0.baseAddress, $0.count, 0) }, 0)
    }
}
