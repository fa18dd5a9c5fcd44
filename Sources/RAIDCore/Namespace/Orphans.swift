import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// Files unlinked while open, kept as ext4 keeps them on its orphan list:
/// the last unlink (or a rename over the file) takes the name away at once,
/// and the member files move to a hidden directory of every member, named
/// by file id, where the rebuild and scrub still cover them. Handles keep
/// reading and writing them; the last release deletes them. After a crash
/// nothing can hold them open, so the next mount deletes what is left.
extension RAIDArray {
    /// The orphan area, in the array's root on every member. The adapter
    /// hides every root name with the `.raidfs-` prefix.
    public static let orphanDirectory = "/.raidfs-orphans"
    public static let reservedPrefix = ".raidfs-"

    static func orphanPath(_ fileId: UInt64) -> String {
        orphanDirectory + "/" + String(fileId, radix: 16)
    }

    /// The open file whose last link `path` is, if any. Caller holds the
    /// namespace lock. Costs nothing while no file is open.
    func openFileAtLastLinkLocked(_ path: String) -> ArrayFile? {
        guard !namespace.openFiles.isEmpty,
              let st = try? onPrimary("lstat \(path)", { try $0.lstat(path) }),
              (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink == 1,
              let id = try? readHeader(path).fileId else { return nil }
        return namespace.openFiles[id]
    }

    /// Moves the last visible name of open file `af` into the orphan area
    /// (`move`: unlink), or gives it a second name there (a rename over it
    /// then replaces the visible name in one step).
    func orphanLocked(_ af: ArrayFile, _ path: String, move: Bool) throws {
        let orphan = RAIDArray.orphanPath(af.fileId)
        if (try? onPrimary("lstat \(RAIDArray.orphanDirectory)", { try $0.lstat(RAIDArray.orphanDirectory) })) == nil {
            try replicateLocked("mkdir \(RAIDArray.orphanDirectory)", dirs: ["/"]) {
                try $0.mkdir(RAIDArray.orphanDirectory, mode: 0o700)
            }
        }
        if move {
            try replicateLocked("unlink \(path)", dirs: [parentDirectory(path), RAIDArray.orphanDirectory]) {
                try $0.rename(path, orphan, flags: 0)
            }
        } else {
            try replicateLocked("link \(path) to \(orphan)", dirs: [RAIDArray.orphanDirectory]) {
                try $0.link(path, orphan)
            }
        }
        af.orphanPath = orphan
        // Read under the file's lock (the intent log, messages).
        af.lock.withWriteLock { af.displayPath = orphan }
    }

    /// Deletes orphan `path` on every member; false (and reported) when it
    /// could not be: the next mount tries again.
    private func deleteOrphanLocked(_ path: String) -> Bool {
        do {
            try replicateLocked("reclaim \(path)", dirs: [RAIDArray.orphanDirectory]) { try $0.unlink(path) }
            return true
        } catch {
            logger.error("\(path): a file unlinked while open could not be deleted: \(error); the next mount tries again")
            return false
        }
    }

    /// The last handle of an orphaned file is gone: delete it.
    func reclaimOrphanLocked(_ af: ArrayFile) {
        if let orphan = af.orphanPath { _ = deleteOrphanLocked(orphan) }
    }

    /// At mount: delete every orphan (no handle can hold one now): those a
    /// crash left, and those of a daemon stopped while files were held
    /// open. Runs before the crash resync, which skips their regions.
    /// Returns their file ids. One that cannot be deleted is reported and
    /// left for the next mount; it does not stop this one.
    func reclaimOrphans() -> Set<UInt64> {
        let names: [DirectoryEntry]
        do {
            names = try list(RAIDArray.orphanDirectory)
        } catch {
            if (error as? FSError)?.errno != ENOENT { logger.error("\(RAIDArray.orphanDirectory): \(error)") }
            return []
        }
        guard !names.isEmpty else { return [] }
        var ids = Set<UInt64>()
        namespace.lock.withLock {
            for e in names {
                let path = RAIDArray.orphanDirectory + "/" + e.name
                // A crash that cut the unlink (or the rename over it) short
                // left the file its other name too: only that orphan name
                // goes, and the file is not deleted (its regions still need
                // their resync).
                let links = (try? onPrimary("lstat \(path)") { try $0.lstat(path) })?.st_nlink ?? 1
                if deleteOrphanLocked(path), links <= 1, let id = UInt64(e.name, radix: 16) { ids.insert(id) }
            }
        }
        guard !ids.isEmpty else { return ids }
        eventLog.record(ArrayEvent(kind: .orphansReclaimed, member: nil, path: RAIDArray.orphanDirectory,
                                   message: "deleted \(ids.count) files that were unlinked while open when the array last stopped"))
        return ids
    }

    /// An open file by its id, opened once more (no member file is opened):
    /// nil when no handle has it open.
    public func open(fileId: UInt64) -> ArrayFile? {
        namespace.lock.withLock { reopenLocked(fileId) }
    }

    /// One more handle on the open file with this id, if there is one.
    func reopenLocked(_ fileId: UInt64) -> ArrayFile? {
        guard let af = namespace.openFiles[fileId] else { return nil }
        af.openCount += 1
        af.expectAccess()
        return af
    }

    /// The orphan name of the open file with this id, if it has one.
    public func orphanPath(ofOpenFile id: UInt64) -> String? {
        namespace.lock.withLock { namespace.openFiles[id]?.orphanPath }
    }
}
