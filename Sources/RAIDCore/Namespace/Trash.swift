#if canImport(Glibc)
import Glibc
#endif

/// Removing a large directory without making the caller wait for every
/// member.
///
/// ext4 reads every block a directory ever held to see that it is empty
/// before removing it, and never gives those blocks back while the
/// directory lives: removing a directory that once held 100,000 entries
/// costs 100–150 ms, per member, even once it is empty. Done member after
/// member, that put a RAID 6 rmdir past a second.
///
/// So a directory larger than `slowRemovalBytes` is removed on the first
/// member only, whose answer (ENOTEMPTY, ENOENT, …) is the caller's; every
/// other member renames its copy into a hidden directory of its own root,
/// which costs a rename, and a background job removes it there. The
/// namespace walks (rebuild, scrub, check, crash repair) do not see the
/// hidden directory, and the next mount empties what a crash or an unmount
/// left in it. The caller pays one member's removal, as on ext4 itself.
extension RAIDArray {
    /// Every member's hidden directory of removed directories (the adapter
    /// hides every root name with the `.raidfs-` prefix).
    static let trashDirectory = "/.raidfs-trash"
    static let trashName = String(trashDirectory.dropFirst())
    /// Directories up to this size (ext4: 16 blocks, about 500 entries
    /// ever held) are removed on every member in turn, as any change is.
    static let slowRemovalBytes: off_t = 64 << 10

    func removeDirectory(_ path: String) throws {
        let size = (try? onPrimary("lstat \(path)") { try $0.lstat(path) })?.st_size ?? 0
        guard size > RAIDArray.slowRemovalBytes else {
            try replicate("rmdir \(path)", dirs: [parentDirectory(path)]) { try $0.rmdir(path) }
            return
        }
        try namespace.lock.withLock {
            let holder = RAIDArray.trashDirectory + "/" + String(UInt64.random(in: 1...UInt64.max, using: &namespace.fileIds), radix: 16)
            var answered = false
            var trashed: [(member: Member, path: String)] = []
            defer { if !trashed.isEmpty { queueTrashLocked(trashed) } }
            try replicateLocked("rmdir \(path)", dirs: [parentDirectory(path)]) { m in
                guard answered else {
                    try m.rmdir(path)
                    answered = true
                    return
                }
                guard makeTrashHolder(m, holder) else {
                    try m.rmdir(path)
                    return
                }
                trashed.append((m, holder))
                try m.rename(path, holder + "/d", flags: 0)
            }
        }
    }

    /// Makes `holder` on `m` (the hidden directory too, the first time);
    /// false when `m` cannot (it is full, say): the caller removes the
    /// directory in place instead.
    private func makeTrashHolder(_ m: Member, _ holder: String) -> Bool {
        if (try? m.mkdir(holder, mode: 0o700)) != nil { return true }
        guard (try? m.mkdir(RAIDArray.trashDirectory, mode: 0o700)) != nil else { return false }
        return (try? m.mkdir(holder, mode: 0o700)) != nil
    }

    /// At mount: what an unmount or a crash left in the members' hidden
    /// directories, queued for removal.
    func collectTrash() {
        guard !readOnly else { return }
        var found: [(member: Member, path: String)] = []
        for role in activeRoles {
            guard let m = member(role), let entries = try? m.list(RAIDArray.trashDirectory) else { continue }
            for e in entries { found.append((m, RAIDArray.trashDirectory + "/" + e.name)) }
        }
        guard !found.isEmpty else { return }
        namespace.lock.withLock { queueTrashLocked(found) }
    }

    /// Caller holds the namespace lock.
    private func queueTrashLocked(_ items: [(member: Member, path: String)]) {
        namespace.trash += items
        guard !namespace.trashJobRunning, !isShuttingDown else { return }
        namespace.trashJobRunning = true
        namespace.trashJob = environment.jobs.spawn("raidfs-trash") { [weak self] in self?.emptyTrash() }
    }

    /// The background job: removes what is queued, one directory at a
    /// time, until nothing is or the array is being unmounted.
    private func emptyTrash() {
        while let item = namespace.lock.withLock({ () -> (member: Member, path: String)? in
            guard !namespace.trash.isEmpty, !isShuttingDown else {
                namespace.trashJobRunning = false
                return nil
            }
            return namespace.trash.removeFirst()
        }) {
            do {
                try removeTrashItem(item.member, item.path)
            } catch {
                logger.warning("\(item.member.name):\(item.path): a removed directory could not be deleted: \(error); the next mount tries again")
            }
            environment.jobs.yieldPoint()
        }
    }

    /// `holder` and what it holds: normally one empty directory, whose
    /// removal is the slow part; more when a member had diverged.
    private func removeTrashItem(_ m: Member, _ holder: String) throws {
        do {
            try m.rmdir(holder + "/d")
        } catch let e as FSError where e.errno == ENOENT {
        } catch let e as FSError where e.isDivergence {
            try namespaceRepair.removeTree(m, holder + "/d")
        }
        try namespaceRepair.removeTree(m, holder)
    }

    /// Waits for the job: it ends once nothing is queued, or, once the
    /// unmount has begun, after the directory it is removing (the next
    /// mount removes the rest).
    func finishTrashJob() {
        let job = namespace.lock.withLock { namespace.trashJob }
        environment.jobs.wait(for: job) { namespace.lock.withLock { !namespace.trashJobRunning } }
    }
}
