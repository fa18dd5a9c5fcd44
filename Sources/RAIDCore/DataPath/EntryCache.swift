#if canImport(Glibc)
import Glibc
#endif

/// The checksum tables of one role's member file as this process last read
/// or wrote them, so that a 4 KiB read verifies against its entry without
/// reading the table again: one read of the member per sector, as ZFS
/// verifies a block against the pointer its ARC holds. Only the tables of
/// full-size chunks (the leading chunks' entries are in the attribute).
///
/// Direct-mapped: table t sits in slot t mod `slots`, each slot a whole
/// table (`MemberFileLayout.tableBytes`, 4 KiB for chunks up to 2 MiB),
/// allocated when first filled within the array's budget
/// (`EntryCacheBudget`). Every write of entries through the data path
/// updates a cached table after the member took it; whatever else writes
/// a member file's entries (a cut, a scrub's clearing, a rebuild's
/// poisoning) drops the role's tables (`invalidate`). A table read from
/// the member is installed only if no write went to that file meanwhile
/// (`stamp`): a write to another stripe of the same table may have landed
/// after the read. Scrub and the crash resync read the tables themselves,
/// which is where rot in an entry is found.
// @unchecked Sendable: every field changes only under `lock`.
final class EntryCache: @unchecked Sendable {
    static let slots = 64

    private let lock = Lock()
    private let budget: EntryCacheBudget
    /// Entries per table.
    let tableEntries: Int
    /// The member file (and the role's generation) the tables came from;
    /// held, so that its identity cannot be reused by another.
    private var file: MemberFile?
    private var generation: UInt32 = 0
    /// The table each slot holds (.max: none) and its entries; empty until
    /// the first table is kept (most open files are small: their entries
    /// are all in the attribute).
    private var tags: [UInt64] = []
    private var pages: [UnsafeMutablePointer<UInt64>?] = []
    /// Moves with every write of entries to the file (see the type's notes).
    private var writes: UInt64 = 0

    init(tableEntries: Int, budget: EntryCacheBudget) {
        self.tableEntries = tableEntries
        self.budget = budget
    }

    deinit {
        var held = 0
        for p in pages where p != nil {
            p!.deallocate()
            held += 1
        }
        budget.release(held)
    }

    /// Copies entries `index ..< index + count` of table `table` of `f`
    /// into `e` if that table is held: nil then; else the stamp to pass to
    /// `install` with the table once read.
    @inline(__always)
    func lookup(_ f: MemberFile, generation g: UInt32, table: UInt64, index: Int, count: Int,
                into e: UnsafeMutablePointer<UInt64>) -> UInt64? {
        lock.withLock {
            let slot = Int(table % UInt64(Self.slots))
            guard file === f, generation == g, !tags.isEmpty, tags[slot] == table, let page = pages[slot] else { return writes }
            e.update(from: page + index, count: count)
            return nil
        }
    }

    /// Holds table `table` of `f`, as read from it, unless a write to the
    /// file came after `stamp` was taken.
    func install(_ f: MemberFile, generation g: UInt32, table: UInt64, _ entries: UnsafePointer<UInt64>, stamp: UInt64) {
        lock.withLock {
            guard writes == stamp else { return }
            if tags.isEmpty {
                tags = Array(repeating: .max, count: Self.slots)
                pages = Array(repeating: nil, count: Self.slots)
            }
            if file !== f || generation != g {
                file = f
                generation = g
                for i in tags.indices { tags[i] = .max }
            }
            let slot = Int(table % UInt64(Self.slots))
            if pages[slot] == nil {
                guard budget.take() else { return }
                pages[slot] = .allocate(capacity: tableEntries)
            }
            pages[slot]!.update(from: entries, count: tableEntries)
            tags[slot] = table
        }
    }

    /// Entries `index ..< index + count` of table `table` of `f` were
    /// written as `e` (little endian, as stored), or, with `e` nil, a write
    /// of them failed and what the member holds is not known.
    func wrote(_ f: MemberFile, table: UInt64, index: Int, count: Int, _ e: UnsafeRawPointer?) {
        lock.withLock {
            writes &+= 1
            guard file === f, !tags.isEmpty else { return }
            let slot = Int(table % UInt64(Self.slots))
            guard tags[slot] == table, let page = pages[slot] else { return }
            if let e {
                UnsafeMutableRawPointer(page + index).copyMemory(from: e, byteCount: count * 8)
            } else {
                tags[slot] = .max
            }
        }
    }

    /// Something else wrote the file's entries or cut it: nothing held
    /// stands.
    func invalidate() {
        lock.withLock {
            writes &+= 1
            for i in tags.indices { tags[i] = .max }
        }
    }
}

/// How many cached tables an array holds at most, over every open file
/// and member: 32 MiB, 8,192 tables of 4 KiB, the entries of 16 GiB of
/// 128 KiB chunks.
// @unchecked Sendable: `held` changes only under `lock`.
final class EntryCacheBudget: @unchecked Sendable {
    private let lock = Lock()
    private var held = 0
    let limit: Int

    init(bytes: Int, tableBytes: Int) { limit = max(0, bytes / tableBytes) }

    func take() -> Bool {
        lock.withLock {
            guard held < limit else { return false }
            held += 1
            return true
        }
    }

    func release(_ n: Int) {
        guard n > 0 else { return }
        lock.withLock { held -= n }
    }
}
