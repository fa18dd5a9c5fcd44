import Foundation
import RAIDControl
#if canImport(Glibc)
import Glibc
#endif

/// What a mount does after an unclean shutdown, before it serves anything:
/// resync the regions the write-intent log names (files unlinked while
/// open are deleted first: see Orphans.swift). It holds no state of its
/// own: what to resync is the array's recovery plan.
struct CrashResync {
    unowned let array: RAIDArray
}

extension RAIDArray {
    /// The crash resync of this array.
    var crashResync: CrashResync { CrashResync(array: self) }
}

extension CrashResync {
    /// Makes parity and checksums agree with the data in every region the
    /// intent log named, then empties the log.
    /// `skipping`: files deleted since the log named them (reclaimed orphans).
    /// `directories`: those the crash repair compared (where files created
    /// since the log's last persist are).
    func run(skipping deleted: Set<UInt64> = [], directories: Set<String> = []) throws {
        guard array.needsResync else { return }
        array.health.setResyncing(true)
        defer { array.health.setResyncing(false) }
        let startMilliseconds = array.environment.monotonicMilliseconds()
        var stripes = 0, fixed = 0
        func resync(_ af: ArrayFile, _ range: Range<UInt64>?) throws {
            try af.lock.withWriteLock {
                // First make each stripe's parity and checksums agree with
                // its data as found, then zero what lies past EOF through
                // the (now consistent) stripes.
                let all = 0..<af.stripeCount
                let r = range.map { all.clamped(to: $0) } ?? all
                let rebuilding = array.rebuildingRoles.filter { af.isAttached(role: $0) }
                for s in r {
                    stripes += 1
                    let result = try af.checkStripeLocked(s, mode: .resync)
                    if !result.problems.isEmpty { fixed += 1 }
                    if result.unrecoverable {
                        array.logger.critical("resync: \(af.displayPath) stripe \(s) cannot be made consistent: too many chunks lost")
                    }
                    // A member being rebuilt took this region's writes too,
                    // and the rebuild will not come back to a file it
                    // finished: bring its chunk in line as well.
                    if !rebuilding.isEmpty {
                        array.resources.workspaces.withItem { ws in
                            for role in rebuilding { af.rebuildChunk(role: role, stripe: s, ws: ws) }
                        }
                    }
                }
                if af.stripeCount > 0 && !r.contains(af.stripeCount - 1) {
                    _ = try af.checkStripeLocked(af.stripeCount - 1, mode: .resync)
                }
                do {
                    try af.trimBeyondEOFLocked()
                } catch let e as FSError where e.errno == EIO && array.state != .failed {
                    // The last stripe is lost beyond redundancy (it reads as
                    // EIO): the array still mounts, as md assembles over a
                    // bad block, and a write there fails the same way.
                    array.eventLog.record(ArrayEvent(kind: .unrecoverable, path: af.displayPath,
                                               message: "resync: the bytes past the end cannot be zeroed: \(e)"))
                }
            }
        }
        if array.recovery.pendingResyncAll {
            array.logger.warning("write-intent log incomplete: resyncing every file")
            try array.walk { path, type in
                if type == UInt8(DT_REG) {
                    let af = try array.open(path)
                    defer { array.release(af) }
                    try resync(af, nil)
                }
                return true
            }
        } else {
            // Ids reserved for new files have no path in the log until a
            // persist after their file's create: such a file is in one of
            // the directories the crash repair compared (see
            // IntentLog.takeFileId).
            let unnamed = Set(array.recovery.pendingResync.filter { $0.1.isEmpty && !deleted.contains($0.0.fileId) }.map { $0.0.fileId })
            var named = array.recovery.pendingResync.filter { !$0.1.isEmpty }
            if !unnamed.isEmpty {
                for (id, path) in findFiles(ids: unnamed, in: directories).sorted(by: { $0.key < $1.key }) { named.append((IntentLog.Region(fileId: id, index: 0), path)) }
            }
            for (region, path) in named where !deleted.contains(region.fileId) {
                // A file renamed since is found by its id; a deleted one needs nothing.
                var found: ArrayFile? = try? array.open(path)
                if let af = found, af.fileId != region.fileId {
                    array.release(af)
                    found = nil
                }
                if found == nil { found = try findFile(id: region.fileId) }
                guard let af = found else { continue }
                defer { array.release(af) }
                let lo = region.index * array.intentLog.regionStripes
                try resync(af, lo..<(lo + array.intentLog.regionStripes))
            }
        }
        array.logger.notice("resync after unclean shutdown: \(array.recovery.pendingResync.count) regions, \(stripes) stripes checked, \(fixed) made consistent in \(String(format: "%.2f", Double(array.environment.monotonicMilliseconds() &- startMilliseconds) / 1000)) s")
        array.recovery.pendingResync = []
        array.recovery.pendingResyncAll = false
    }

    /// The regular files of directories `dirs` whose ids are in `ids`, by
    /// id (one listing of each directory, one header read of each file).
    private func findFiles(ids: Set<UInt64>, in dirs: Set<String>) -> [UInt64: String] {
        var found: [UInt64: String] = [:]
        for d in dirs.sorted() {
            guard let entries = try? array.list(d) else { continue }
            for e in entries where e.type == UInt8(DT_REG) {
                let path = d == "/" ? "/" + e.name : d + "/" + e.name
                if let id = (try? array.readHeader(path))?.fileId, ids.contains(id) { found[id] = path }
            }
        }
        return found
    }

    /// Finds an open-able file by its id (a file renamed after its region
    /// was logged). Walks the namespace: only used by crash resync.
    private func findFile(id: UInt64) throws -> ArrayFile? {
        var found: ArrayFile? = nil
        try array.walk { path, type in
            guard type == UInt8(DT_REG), let af = try? array.open(path) else { return true }
            if af.fileId == id { found = af; return false }
            array.release(af)
            return true
        }
        return found
    }
}
