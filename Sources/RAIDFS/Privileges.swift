import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// What a write, a truncate or a chown must drop, which the kernel leaves
/// to this daemon under FUSE_HANDLE_KILLPRIV_V2 (as Linux's own filesystems
/// drop it): set-user-ID, and set-group-ID where group execute is set, when
/// the caller lacks CAP_FSETID (`setid`); security.capability whoever the
/// caller is. A node known to hold none of them costs nothing. Caller holds
/// the tree lock. True if the mode changed: a reply that carries no
/// attributes must have the kernel's dropped (`invalidateAttributes`).
@discardableResult
func dropPrivilegesLocked(_ ino: fuse_ino_t, setid: Bool) throws -> Bool {
    guard raidfs_io_killpriv_v2() != 0 else { return false }
    let known = mounted.inodes.privilegeState(ino)
    if known.withoutCapabilities && known.withoutSetid { return false }
    var changed = false
    let p = try path(ino)
    if !known.withoutSetid {
        let mode = try mounted.array.getattr(p).st_mode & 0o7777
        var kept = mode
        if setid {
            kept &= ~S_ISUID
            if kept & S_IXGRP != 0 { kept &= ~S_ISGID }
        }
        if kept != mode {
            mounted.inodes.modeChanging(ino)
            try mounted.array.chmod(p, mode: kept)
            changed = true
        } else if kept & S_ISUID == 0 && (kept & S_ISGID == 0 || kept & S_IXGRP == 0) {
            mounted.inodes.noteWithoutSetid(ino, generation: known.generation)
        }
    }
    if !known.withoutCapabilities {
        let caps = "security.capability"
        do {
            _ = try mounted.array.getxattr(p, name: caps)
            mounted.inodes.xattrsChanging(ino)
            try mounted.array.removexattr(p, name: caps)
        } catch let e as FSError where e.errno == ENODATA {
            mounted.inodes.noteWithoutCapabilities(ino, generation: known.generation)
        }
    }
    return changed
}

/// `dropPrivilegesLocked` for a write, which does not hold the tree lock
/// and whose reply carries no attributes.
@inline(__always)
func dropPrivileges(_ ino: fuse_ino_t, setid: Bool) throws {
    guard raidfs_io_killpriv_v2() != 0 else { return }
    let known = mounted.inodes.privilegeState(ino)
    if known.withoutCapabilities && known.withoutSetid { return }
    if try treeLock.withReadLock({ try dropPrivilegesLocked(ino, setid: setid) }) { invalidateAttributes(ino) }
}

/// Whether the request this thread serves asked for setid bits to be
/// dropped (a WRITE, OPEN or CREATE from a caller without CAP_FSETID).
@inline(__always)
func requestDropsSetid() -> Bool { raidfs_io_request_kills_setid() != 0 }
