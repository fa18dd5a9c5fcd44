import ArgumentParser
import Foundation
import RAIDCore

/// Parses "128K", "128KiB", "1M", "65536" into bytes.
func parseSize(_ text: String) -> Int? {
    let t = text.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Int)] = [("KIB", 1024), ("MIB", 1 << 20), ("GIB", 1 << 30), ("KB", 1024), ("MB", 1 << 20),
                                  ("GB", 1 << 30), ("K", 1024), ("M", 1 << 20), ("G", 1 << 30), ("B", 1)]
    for (suffix, mult) in units where t.hasSuffix(suffix) {
        guard let v = Int(t.dropLast(suffix.count)), v > 0 else { return nil }
        return v.multipliedReportingOverflow(by: mult).overflow ? nil : v * mult
    }
    return Int(t).flatMap { $0 > 0 ? $0 : nil }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create an array over empty member directories.")

    @Option(name: .long, help: "RAID level: 1, 5 or 6.")
    var level: Int

    @Option(name: .long, help: "Chunk size (power of two, 4K…16M). Default 128K.")
    var chunk: String = "128K"

    @Option(name: .long, help: "A hot spare directory (repeatable).")
    var spare: [String] = []

    @Argument(help: "Member directories, in role order.")
    var directories: [String] = []

    func validate() throws {
        guard RAIDLevel(rawValue: level) != nil else {
            throw ValidationError("--level \(level): must be 1, 5 or 6")
        }
        guard let bytes = parseSize(chunk) else {
            throw ValidationError("--chunk \(chunk): not a size (e.g. 64K, 128K, 1M)")
        }
        guard Geometry.isValidChunkSize(bytes) else {
            throw ValidationError("--chunk \(chunk): must be a power of two from 4K to 16M")
        }
        let lvl = RAIDLevel(rawValue: level)!
        guard directories.count >= lvl.minimumMemberCount else {
            throw ValidationError("RAID \(level) needs at least \(lvl.minimumMemberCount) member directories, \(directories.count) given")
        }
    }

    func run() throws {
        let sb = try ArrayCreator.create(level: RAIDLevel(rawValue: level)!, chunkSizeBytes: parseSize(chunk)!,
                                         directories: directories, spares: spare)
        warnOfSharedFilesystems()
        if sb.metadata == .file {
            let without = (directories + spare).filter { !HostDirectories().takesUserAttributes($0) }
            FileHandle.standardError.write(Data(("raidctl: note: \(without.joined(separator: ", ")) take no user extended attributes: "
                + "file headers go in the member files (a 4 KiB block more per file on every member)\n").utf8))
        }
        print(sb.arrayUUID)
    }

    /// Members on one filesystem share its space and its failure: say so,
    /// in one line per filesystem (the array is created all the same).
    func warnOfSharedFilesystems() {
        var byDevice: [UInt64: [String]] = [:]
        for d in directories {
            var st = stat()
            if stat(d, &st) == 0 { byDevice[UInt64(st.st_dev), default: []].append(d) }
        }
        for (_, dirs) in byDevice.sorted(by: { $0.value[0] < $1.value[0] }) where dirs.count > 1 {
            FileHandle.standardError.write(Data(("raidctl: warning: members \(dirs.joined(separator: ", ")) are on one filesystem: "
                + "they share its free space (counted once in df) and fail together with it\n").utf8))
        }
    }
}

struct Examine: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a member directory's superblock (offline).")

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    @Argument(help: "A member directory.")
    var directory: String

    func run() throws {
        let sb = try Superblock.decode(try DirectoryMember(root: directory).readSuperblock(), source: directory)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(sb), as: UTF8.self))
            return
        }
        let g = sb.geometry
        let fmt = ISO8601DateFormatter()
        print("""
        \(directory):
                  Magic : RAIDFSSB, format version \(Superblock.formatVersion)
             Array UUID : \(sb.arrayUUID)
            Member UUID : \(sb.memberUUID)
             Raid Level : raid\(sb.level.rawValue)
           Raid Members : \(sb.memberCount) (\(g.dataChunkCount) data + \(g.parityChunkCount) \(sb.level == .raid1 ? "mirror" : "parity") per stripe)
             Chunk Size : \(sb.chunkSizeBytes / 1024)K
          File Metadata : \(sb.metadata == .attribute ? "extended attribute user.raidfs" : "in the member files")
            Device Role : \(sb.role >= 0 ? "Active device \(sb.role)" : "spare")
                 Events : \(sb.events)
                  State : \(sb.clean ? "clean" : "active (not cleanly unmounted)")
          Creation Time : \(fmt.string(from: Date(timeIntervalSince1970: sb.createdAt)))
            Update Time : \(fmt.string(from: Date(timeIntervalSince1970: sb.updatedAt)))

           Number   Member UUID                            State
        """)
        for (i, r) in sb.roles.enumerated() {
            let mine = i == sb.role ? "  (this member)" : ""
            print("  " + String(repeating: " ", count: max(0, 8 - String(i).count)) + "\(i)   \(r.memberUUID)   \(r.state.rawValue)\(mine)")
        }
        for s in sb.spares { print("       -   \(s)   spare") }
    }
}
