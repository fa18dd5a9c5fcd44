import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// Keeps the kernel's page cache of a file true to the array when O_DIRECT
/// handles write it, since their writes do not pass through that cache:
/// buffered handles open at the time have the written range invalidated,
/// and the next buffered open after writes made while none was open drops
/// what the kernel kept (keep_cache off).
// @unchecked Sendable: its tables change only under `lock`.
final class PageCacheCoherence: @unchecked Sendable {
    private struct State { var buffered = 0, stale = false }
    private let lock = Lock()
    /// By file id; only files with buffered handles open or a stale cache.
    private var files: [UInt64: State] = [:]

    /// A buffered open of file `id`: whether the kernel may keep its cache.
    func bufferedOpen(_ id: UInt64) -> Bool {
        lock.withLock {
            var s = files[id] ?? State()
            defer { s.stale = false; s.buffered += 1; files[id] = s }
            return !s.stale
        }
    }

    func bufferedRelease(_ id: UInt64) {
        lock.withLock {
            guard var s = files[id] else { return }
            s.buffered -= 1
            files[id] = s.buffered == 0 && !s.stale ? nil : s
        }
    }

    /// An O_DIRECT write to file `id`: true when buffered handles are open,
    /// whose cached pages of the range must be invalidated now.
    func directWrite(_ id: UInt64) -> Bool {
        lock.withLock {
            if let s = files[id], s.buffered > 0 { return true }
            files[id] = State(buffered: 0, stale: true)
            return false
        }
    }
}

/// Has the kernel drop the attributes it holds of `ino` (not its pages).
func invalidateAttributes(_ ino: fuse_ino_t) {
    let rc = fuse_lowlevel_notify_inval_inode(mounted.session, ino, -1, 0)
    if rc != 0 && rc != -ENOENT {
        mounted.logger.warning("dropping the kernel's attributes of inode \(ino): \(String(cString: strerror(-rc)))")
    }
}
