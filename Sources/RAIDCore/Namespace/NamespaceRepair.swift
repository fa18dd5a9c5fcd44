import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// Bringing members' copies of the namespace back into agreement.
///
/// Every namespace change reaches the members one after the other, first
/// member first. A crash between two of them, or a power cut that loses an
/// unsynced change on some members, leaves the members disagreeing about
/// the directories that change touched. The write-intent log names those
/// directories; at the next mount (and whenever a member answers a change
/// differently at run time) each member's copy of them is made to match the
/// first active member's — the change rolls forward if it reached the first
/// member, back if it did not — before anything is served.
///
/// Entries are matched by identity, not only by name: a regular file by the
/// file id in its header (so a rename or a hard link cut short is finished
/// with a rename or link on the member, keeping its chunks), a symlink by
/// its target, a directory by kind (and, when it moved, by its names).
/// A member file that has to be created anew is rebuilt from the other
/// members' chunks.
///
/// It holds no state of its own: it works on the array's members, under
/// the namespace lock its callers hold.
struct NamespaceRepair {
    unowned let array: RAIDArray
}

extension RAIDArray {
    /// The namespace repair of this array.
    var namespaceRepair: NamespaceRepair { NamespaceRepair(array: self) }
}

extension NamespaceRepair {
    /// What a directory entry is, for agreement between members.
    enum EntryIdentity: Equatable {
        case file(UInt64)
        case directory
        case symlink(String)
        case special(mode_t, dev_t)
        /// A regular file whose header cannot be read on this member.
        case damaged

        /// Whether two members' entries stand for the same thing. Two
        /// regular files whose headers are both unreadable agree: nothing
        /// says otherwise (the data path reports such a file as damaged).
        func agrees(with other: EntryIdentity?) -> Bool { self == other }
    }

    struct EntryInfo {
        var identity: EntryIdentity
        var st: stat
        /// For a regular file: the logical size its header records.
        var size: UInt64
    }

    /// Prefix of the names under which a repair keeps a member file that is
    /// wanted elsewhere while the place it sits is cleared (removed before
    /// the repair returns, and by the next repair after a crash).
    static let repairStashPrefix = ".raidfs-repair-"

    // MARK: mount

    /// After an unclean shutdown: every directory the intent log named (the
    /// whole tree when the log was incomplete, or members were forced back)
    /// made to agree on every member, before the data resync. Returns the
    /// directories compared: where the files created since the log's last
    /// write are (CrashRecovery).
    @discardableResult
    func repairAfterCrash() throws -> Set<String> {
        let everything = array.recovery.pendingResyncAll
        guard !array.recovery.pendingNamespace.isEmpty || everything, !array.readOnly else { return [] }
        let compared: Set<String> = try array.namespace.lock.withLock {
            guard let authority = authority() else { throw FSError.io("namespace repair: no active member can list the root") }
            var dirs = Array(array.recovery.pendingNamespace)
            if everything {
                dirs = ["/"]
                try array.walk { path, type in
                    if type == UInt8(DT_DIR) { dirs.append(path) }
                    return true
                }
            } else {
                dirs += try changedDirectories(under: array.recovery.pendingNamespaceSubtrees)
            }
            dirs = Array(Set(dirs)).sorted()
            var total = 0
            for role in 0..<array.geometry.memberCount where array.isWritable(role) && role != authority.role {
                guard let m = array.member(role) else { continue }
                do {
                    let fixed = try reconcileLocked(role: role, target: m, authority: authority.member, dirs: dirs, afterCrash: true)
                    total += fixed
                    if fixed > 0 {
                        array.eventLog.record(ArrayEvent(kind: .namespaceRepaired, member: role,
                                                   message: "after an unclean shutdown: \(fixed) entries on \(m.name) brought in line with member \(authority.role)"))
                    }
                } catch {
                    _ = array.failWithinRedundancy(role: role, reason: "namespace repair after an unclean shutdown failed: \(error)")
                }
            }
            array.logger.notice("namespace repair after unclean shutdown: \(dirs.count) directories compared, \(total) entries repaired")
            return Set(dirs)
        }
        array.recovery.pendingNamespace = []
        array.recovery.pendingNamespaceSubtrees = [:]
        return compared
    }

    /// The directories below each of `subtrees` (a path and a time) that
    /// any member changed since that time, or lacks: a directory's change
    /// time moves with every entry made or removed in it, on the member
    /// where that landed. (Walks the first member's tree; stats each
    /// directory on every member.)
    private func changedDirectories(under subtrees: [String: UInt64]) throws -> [String] {
        var out: [String] = []
        let members = (0..<array.geometry.memberCount).filter { array.isWritable($0) }.compactMap { array.member($0) }
        for (root, since) in subtrees.sorted(by: { $0.key < $1.key }) {
            try array.walk(from: root) { path, type in
                guard type == UInt8(DT_DIR) else { return true }
                let changed = members.contains { m in
                    guard let st = try? m.lstat(path) else { return true }
                    return st.st_ctim.tv_sec >= Int(since) || st.st_mtim.tv_sec >= Int(since)
                }
                if changed { out.append(path) }
                return true
            }
        }
        return out
    }

    /// The member whose namespace the others follow: the first active one
    /// that can list the root.
    func authority() -> (role: Int, member: Member)? {
        for role in array.activeRoles {
            if let m = array.member(role), (try? m.list("/")) != nil { return (role, m) }
        }
        return nil
    }

    // MARK: one member

    /// Makes `target`'s copy of `dirs` agree with `authority`'s; caller holds
    /// the namespace lock. Returns how many entries were changed. Throws
    /// when the member's copy cannot be made to agree (I/O errors).
    func reconcileLocked(role: Int, target m: Member, authority a: Member, dirs: [String], afterCrash: Bool = false) throws -> Int {
        var changes = try settleAuthorityHeaders(a, dirs: dirs, afterCrash: afterCrash)
        var created: [String] = []
        try removeStashes(m)
        for _ in 0..<4 {
            var want: [String: EntryInfo] = [:]
            var have: [String: EntryInfo] = [:]
            for d in Set(dirs).sorted() {
                guard let wanted = try describeDirectory(a, d) else { continue }   // gone there: its parent says so
                want.merge(wanted) { x, _ in x }
                if let held = try describeDirectory(m, d) {
                    have.merge(held) { x, _ in x }
                } else {
                    changes += try makeDirectoryPath(m, d, like: a)
                }
            }
            // Names of one file (one inode on the authority) that the member
            // holds as separate inodes, each claiming the file: writes
            // through one name would not reach the other. Each is made a
            // link to the first, and the file's chunks there rebuilt.
            var relink: [String: String] = [:]
            var firstName: [UInt64: String] = [:]
            for p in want.keys.sorted() {
                guard case .file(let id) = want[p]!.identity, have[p]?.identity == .file(id) else { continue }
                if let q = firstName[id] {
                    if want[q]!.st.st_ino == want[p]!.st.st_ino && have[q]!.st.st_ino != have[p]!.st.st_ino { relink[p] = q }
                } else {
                    firstName[id] = p
                }
            }
            let differing = Set(want.keys).union(have.keys).filter { p in
                guard let w = want[p] else { return true }
                return !w.identity.agrees(with: have[p]?.identity) || relink[p] != nil
            }
            if differing.isEmpty {
                changes += try alignAttributes(m, want, have)
                try rebuildCreatedCopies(role: role, created)
                return changes
            }

            // Files the member holds where they do not belong but that are
            // wanted somewhere: keep them under a second name while their
            // place is cleared, so a link finishes the change without a rebuild.
            var wantedIds = Set<UInt64>()
            for info in want.values { if case .file(let id) = info.identity { wantedIds.insert(id) } }
            var sources: [UInt64: String] = [:]
            for (p, info) in have { if case .file(let id) = info.identity, want[p]?.identity == info.identity { sources[id] = p } }
            for p in differing.sorted() {
                guard case .file(let id)? = have[p]?.identity, wantedIds.contains(id), sources[id] == nil else { continue }
                let stash = "/" + NamespaceRepair.repairStashPrefix + String(id)
                try m.link(p, stash)
                sources[id] = stash
            }

            // A directory that moved (a rename cut short): rename it there,
            // when exactly one directory out of place has the same names.
            var moved = false
            for p in differing.sorted() where want[p]?.identity == .directory {
                let names = try Set(a.list(p).map { $0.name })
                var candidates: [String] = []
                for (q, info) in have where info.identity == .directory && want[q]?.identity != .directory
                    && !p.hasPrefix(q + "/") && !q.hasPrefix(p + "/") {
                    if try Set(m.list(q).map { $0.name }) == names { candidates.append(q) }
                }
                guard candidates.count == 1 else { continue }
                if have[p] != nil { try removeTree(m, p) }
                try m.rename(candidates[0], p, flags: 0)
                changes += 1
                moved = true
                break
            }
            if moved { continue }   // describe again

            // The same file with its header lost (a crash while creating
            // it): write the header back, before anything links to it.
            // Not where the member holds the wanted file by another name:
            // then the headerless file is another one (a file renamed over
            // one whose create was not yet durable, the rename cut short
            // here), and the wanted file is linked in its place below.
            for p in want.keys.sorted() {
                guard case .file(let id) = want[p]!.identity, have[p]?.identity == .damaged, sources[id] == nil else { continue }
                let w = want[p]!
                if w.st.st_nlink > 1, try otherName(of: w.st.st_ino, fileId: id, size: w.size, on: a, heldBy: m, besides: p) != nil { continue }
                try restoreHeader(m, p, FileHeader(fileId: id, size: w.size))
                if sources[id] == nil { sources[id] = p }
                changes += 1
            }
            for (p, q) in relink.sorted(by: { $0.key < $1.key }) {
                try m.unlink(p)
                try m.link(q, p)
                created.append(q)
                changes += 1
            }

            // Every wanted entry as the authority has it, parents first.
            for p in want.keys.sorted() {
                let w = want[p]!
                let h = try describeEntry(m, p)
                if w.identity.agrees(with: h?.identity) { continue }
                if h != nil { try removeTree(m, p) }
                try createEntry(m, p, like: w, from: a, sources: &sources, created: &created)
                changes += 1
            }
            // What the authority does not have.
            for p in have.keys.sorted() where want[p] == nil {
                guard (try? m.lstat(p)) != nil else { continue }   // went with its directory
                try removeTree(m, p)
                changes += 1
            }
            try removeStashes(m)
        }
        throw FSError.io("\(m.name): its copy of \(dirs.joined(separator: ", ")) still differs after repair")
    }

    /// Entries of directory `d` on `m` by array path; nil when `d` is not a
    /// directory there.
    private func describeDirectory(_ m: Member, _ d: String) throws -> [String: EntryInfo]? {
        let entries: [DirectoryEntry]
        do {
            entries = try m.list(d)
        } catch let e as FSError where e.errno == ENOENT || e.errno == ENOTDIR {
            return nil
        }
        var out: [String: EntryInfo] = [:]
        for e in entries {
            let p = d == "/" ? "/" + e.name : d + "/" + e.name
            if d == "/" && (e.name.hasPrefix(NamespaceRepair.repairStashPrefix) || e.name == RAIDArray.trashName) { continue }
            if let info = try describeEntry(m, p) { out[p] = info }
        }
        return out
    }

    /// One entry on `m`; nil when it is not there.
    private func describeEntry(_ m: Member, _ p: String) throws -> EntryInfo? {
        let st: stat
        do {
            st = try m.lstat(p)
        } catch let e as FSError where e.errno == ENOENT || e.errno == ENOTDIR {
            return nil
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            return EntryInfo(identity: .directory, st: st, size: 0)
        case S_IFLNK:
            return EntryInfo(identity: .symlink(try m.readlink(p)), st: st, size: 0)
        case S_IFREG:
            let f = try m.open(p, flags: O_RDONLY, mode: 0)
            defer { f.close() }
            guard let h = try array.readHeader(of: f) else { return EntryInfo(identity: .damaged, st: st, size: 0) }
            return EntryInfo(identity: .file(h.fileId), st: st, size: h.size)
        default:
            return EntryInfo(identity: .special(st.st_mode & S_IFMT, st.st_rdev), st: st, size: 0)
        }
    }

    /// Creates `p` on `m` as the authority has it (a directory with all it
    /// holds). A regular file is linked from a name the member already has
    /// for it, or else created empty and listed for a rebuild of its chunks.
    private func createEntry(_ m: Member, _ p: String, like w: EntryInfo, from a: Member,
                             sources: inout [UInt64: String], created: inout [String]) throws {
        switch w.identity {
        case .file(let id):
            if let src = sources[id], (try? describeEntry(m, src))??.identity == .file(id) {
                try m.link(src, p)
            } else if w.st.st_nlink > 1, let src = try otherName(of: w.st.st_ino, fileId: id, size: w.size, on: a, heldBy: m, besides: p) {
                // A hard link the member missed (a crash inside link): its
                // other name may lie outside the directories compared.
                try m.link(src, p)
                sources[id] = src
            } else {
                let f = try m.open(p, flags: O_CREAT | O_EXCL | O_WRONLY, mode: w.st.st_mode & 0o7777)
                defer { f.close() }
                let h = FileHeader(fileId: id, size: w.size)
                try array.layout.writeFreshAttribute(f, h)
                // Until rebuilt, its chunks must read as damaged, not as the
                // zeros an empty checksum entry stands for: another member's
                // rebuild must not take them as data.
                for s in 0..<array.geometry.stripeCount(size: w.size) { try array.layout.poison(f, stripe: s, owner: h) }
                sources[id] = p
                created.append(p)
            }
        case .directory:
            try m.mkdir(p, mode: w.st.st_mode & 0o7777)
            for e in try a.list(p).sorted(by: { $0.name < $1.name }) {
                let child = p == "/" ? "/" + e.name : p + "/" + e.name
                guard let info = try describeEntry(a, child) else { continue }
                try createEntry(m, child, like: info, from: a, sources: &sources, created: &created)
            }
        case .symlink(let target):
            try m.symlink(target: target, at: p)
        case .special:
            try m.mknod(p, mode: w.st.st_mode, device: w.st.st_rdev)
        case .damaged:
            try giveDamagedName(on: m, p, like: w.st, from: a)
        }
        if array.environment.isSuperuser { try m.chown(p, uid: w.st.st_uid, gid: w.st.st_gid) }
        if case .symlink = w.identity { return }   // a symlink's mode means nothing
        try m.chmod(p, mode: w.st.st_mode & 0o7777)
    }

    /// Another name of the authority's inode `inode` that `m` holds as the
    /// same file (`fileId`; its header restored if lost there): a walk of
    /// the authority's tree, made only for a file with several links that
    /// the directories compared do not name twice. Without it the member
    /// would get a second, separate copy, and writes through one name would
    /// not reach the other there.
    func otherName(of inode: ino_t, fileId: UInt64, size: UInt64, on a: Member, heldBy m: Member, besides p: String) throws -> String? {
        try firstOtherName(of: inode, on: a, besides: p) { q in
            switch (try? describeEntry(m, q))??.identity {
            case .file(fileId)?: return true
            case .damaged?:
                try restoreHeader(m, q, FileHeader(fileId: fileId, size: size))
                return true
            default: return false
            }
        }
    }

    /// The first name (a walk of the authority's tree) other than `p` of
    /// the authority's regular file `inode` that `accept` takes.
    func firstOtherName(of inode: ino_t, on a: Member, besides p: String, _ accept: (String) throws -> Bool) throws -> String? {
        var pending = ["/"]
        while let d = pending.popLast() {
            for e in try a.list(d).sorted(by: { $0.name < $1.name }) {
                let q = d == "/" ? "/" + e.name : d + "/" + e.name
                if q == RAIDArray.trashDirectory { continue }
                if e.type == UInt8(DT_DIR) { pending.append(q); continue }
                guard q != p, let st = try? a.lstat(q), st.st_ino == inode, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                if try accept(q) { return q }
            }
        }
        return nil
    }

    private func restoreHeader(_ m: Member, _ p: String, _ h: FileHeader) throws {
        let f = try m.open(p, flags: O_WRONLY, mode: 0)
        defer { f.close() }
        try array.layout.writeHeader(f, h)
    }

    /// A regular file in `dirs` whose header the authority cannot read takes
    /// the header another member holds for it. Where no member holds one
    /// after an unclean shutdown and the authority's header was never
    /// written (all zeros, or the file shorter than a header), a crash came
    /// while the file was being created: the file is finished as created,
    /// empty, with a new id (unless its first chunk is poisoned: a damaged
    /// copy). A header that is there but will not read (rot, a read error)
    /// is damage whenever it is met. At any other time no header means
    /// damage beyond redundancy, and the file is left as it is: its data may
    /// read again (a header that failed to read once), and cutting it would
    /// lose what the data path would still give back.
    private func settleAuthorityHeaders(_ a: Member, dirs: [String], afterCrash: Bool) throws -> Int {
        var settled = 0
        for d in Set(dirs).sorted() {
            guard let entries = try describeDirectory(a, d) else { continue }
            for (p, info) in entries.sorted(by: { $0.key < $1.key }) where info.identity == .damaged {
                var found: FileHeader? = nil
                for role in array.activeRoles {
                    guard let m = array.member(role), m !== a, let f = try? m.open(p, flags: O_RDONLY, mode: 0) else { continue }
                    defer { f.close() }
                    if let h = try? array.readHeader(of: f) { found = h; break }
                }
                // A damaged copy a rebuild or repair made (its first chunk
                // poisoned) is damage too, not a create cut short.
                if found == nil {
                    guard afterCrash, try headerNeverWritten(a, p), try !startsPoisoned(a, p) else { continue }
                }
                let f = try a.open(p, flags: O_WRONLY, mode: 0)
                defer { f.close() }
                if let found {
                    try array.layout.writeHeader(f, found)
                } else {
                    try f.truncate(to: 0)
                    try array.layout.writeFreshAttribute(f, FileHeader(fileId: array.newFileIdLocked(), size: 0))
                }
                settled += 1
            }
        }
        return settled
    }

    /// Whether `p` on `m` has no header written: no attribute (what a
    /// crash inside its create leaves).
    private func headerNeverWritten(_ m: Member, _ p: String) throws -> Bool {
        let f = try m.open(p, flags: O_RDONLY, mode: 0)
        defer { f.close() }
        return try array.layout.readAttribute(f) == .absent
    }

    /// Whether the first chunk of `p` on `m` is poisoned: a copy made by
    /// `createDamagedCopy`, or a chunk a rebuild could not rebuild.
    private func startsPoisoned(_ m: Member, _ p: String) throws -> Bool {
        let f = try m.open(p, flags: O_RDONLY, mode: 0)
        defer { f.close() }
        var entry: UInt64 = 0
        try array.layout.readEntries(f, stripe: 0, sector: 0, count: 1, into: &entry)
        return SectorEntry.isPoison(UInt64(littleEndian: entry))
    }

    /// Gives `m` the name `p` of a regular file whose header no active
    /// member can read (damage beyond redundancy), `st` being the
    /// authority `a`'s lstat of it. Where `m` holds another name of the file
    /// as a file (one `joinable` accepts), `p` is linked to it, so the names
    /// stay one file there as on `a`; else `p` becomes a damaged copy. What
    /// `m` held at `p` goes.
    func giveDamagedName(on m: Member, _ p: String, like st: stat, from a: Member,
                         joinable: (String) -> Bool = { _ in true }) throws {
        let other = st.st_nlink > 1
            ? try firstOtherName(of: st.st_ino, on: a, besides: p) { q in
                guard joinable(q), let held = try? m.lstat(q) else { return false }
                return (held.st_mode & S_IFMT) == S_IFREG
            } : nil
        guard let other else { return try createDamagedCopy(on: m, p, like: st) }
        if (try? m.lstat(p)) != nil { try m.unlink(p) }
        try m.link(other, p)
    }

    /// Makes `p` on `m` a copy that is damaged too: no header, and every
    /// chunk the authority's copy holds (`authority` is its lstat)
    /// poisoned. The two then agree, and once a header reads again an open
    /// writes it here and reads rebuild the chunks, never taking this
    /// copy's zeros for data. (Format 1 stores whole chunks, so the
    /// authority's length says which chunks the file has.)
    private func createDamagedCopy(on m: Member, _ p: String, like authority: stat) throws {
        let f = try m.open(p, flags: O_CREAT | O_WRONLY, mode: authority.st_mode & 0o7777)
        defer { f.close() }
        try f.truncate(to: 0)
        // The first chunk at least, whatever the authority's copy holds: a
        // file with no data on it (sparse, or all in a tail elsewhere) is
        // as lost as any, and a copy with nothing poisoned would look, after
        // a crash, like a create cut short, to be finished as an empty file.
        let held = max(1, array.layout.stripesHeld(memberFileBytes: UInt64(authority.st_size)))
        let unknown = FileHeader(fileId: FileHeader.unknownId, size: 0)
        try array.layout.writeFreshAttribute(f, unknown)
        for s in 0..<held { try array.layout.poison(f, stripe: s, owner: unknown) }
        // As long as the authority's (sparse past the entries), so a copy
        // of this copy poisons as many chunks.
        try f.truncate(to: max(UInt64(authority.st_size), array.layout.fileBytes(stripeCount: held)))
    }

    /// Creates the directories leading to `d` on `m` that it lacks.
    private func makeDirectoryPath(_ m: Member, _ d: String, like a: Member) throws -> Int {
        guard d != "/", try describeEntry(m, d)?.identity != .directory else { return 0 }
        var made = try makeDirectoryPath(m, parentDirectory(d), like: a)
        if (try? m.lstat(d)) != nil { try removeTree(m, d) }
        let st = try a.lstat(d)
        try m.mkdir(d, mode: st.st_mode & 0o7777)
        if array.environment.isSuperuser { try m.chown(d, uid: st.st_uid, gid: st.st_gid) }
        made += 1
        return made
    }

    /// Mode and ownership of entries both sides have, as the authority has them.
    private func alignAttributes(_ m: Member, _ want: [String: EntryInfo], _ have: [String: EntryInfo]) throws -> Int {
        var changed = 0
        for (p, w) in want {
            guard let h = have[p] else { continue }
            if case .symlink = w.identity {} else if w.st.st_mode & 0o7777 != h.st.st_mode & 0o7777 {
                try m.chmod(p, mode: w.st.st_mode & 0o7777)
                changed += 1
            }
            if array.environment.isSuperuser && (w.st.st_uid != h.st.st_uid || w.st.st_gid != h.st.st_gid) {
                try m.chown(p, uid: w.st.st_uid, gid: w.st.st_gid)
                changed += 1
            }
        }
        return changed
    }

    /// Removes `p` on `m`, a directory with everything in it.
    /// Removes from member `m` (being rebuilt) the entries of `dirs` that
    /// `authority` does not hold as they are: a namespace change `m` missed
    /// must not leave a name the array no longer has. The rebuild's next
    /// walk creates what is missing. Caller holds the namespace lock.
    func pruneLocked(_ m: Member, like authority: Member, dirs: [String]) {
        for d in Set(dirs).sorted() {
            guard let have = try? describeDirectory(m, d) else { continue }
            let want = (try? describeDirectory(authority, d)) ?? nil
            for (p, info) in have.sorted(by: { $0.key < $1.key }) where !info.identity.agrees(with: want?[p]?.identity) {
                do { try removeTree(m, p) } catch {
                    array.logger.warning("\(m.name): a stale \(p) could not be removed during the rebuild: \(error)")
                }
            }
        }
    }

    func removeTree(_ m: Member, _ p: String) throws {
        let st: stat
        do { st = try m.lstat(p) } catch let e as FSError where e.errno == ENOENT { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            for e in try m.list(p) { try removeTree(m, p == "/" ? "/" + e.name : p + "/" + e.name) }
            try m.rmdir(p)
        } else {
            try m.unlink(p)
        }
    }

    private func removeStashes(_ m: Member) throws {
        for e in try m.list("/") where e.name.hasPrefix(NamespaceRepair.repairStashPrefix) {
            try m.unlink("/" + e.name)
        }
    }

    /// Member files a repair had to create hold no data yet: rebuild their
    /// chunks from the other members, as a rebuild would.
    private func rebuildCreatedCopies(role: Int, _ paths: [String]) throws {
        guard let m = array.member(role) else { return }
        for path in paths {
            let af = try array.openLocked(path)
            defer { array.releaseLocked(af) }
            let f = try m.open(path, flags: O_RDWR, mode: 0)
            try array.resources.workspaces.withItem { ws in
                try af.lock.withWriteLock {
                    af.attach(role: role, f)
                    for s in 0..<af.stripeCount { af.rebuildChunk(role: role, stripe: s, ws: ws) }
                    if let f = af.writable(role) { try af.cutToSizeLocked(f, role: role) }
                }
            }
        }
    }
}
