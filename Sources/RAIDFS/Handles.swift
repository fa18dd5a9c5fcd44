import CFuse3
import CFuseIO
import Logging
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// An open file as FUSE sees it: the shared array file behind a handle.
final class OpenHandle {
    let file: ArrayFile
    /// Opened with O_DIRECT: the kernel sends its reads and writes straight
    /// here (FOPEN_DIRECT_IO), writes within the size in parallel.
    let direct: Bool
    init(file: ArrayFile, direct: Bool) {
        self.file = file
        self.direct = direct
    }
}

/// An open directory: the directory's entries as they were at opendir (or
/// at the last rewind), served by index as the offset.
final class DirectoryHandle {
    let node: UInt64
    /// Empty until loaded ("." and ".." are always there).
    var entries: [DirectoryEntry] = []
    init(node: UInt64) { self.node = node }
}

/// The object a request's `fh` carries (an OpenHandle or a DirectoryHandle).
@inline(__always)
func carried<T: AnyObject>(_ fi: UnsafeMutablePointer<fuse_file_info>?, _: T.Type) -> Unmanaged<T>? {
    guard let fi, fi.pointee.fh != 0 else { return nil }
    return Unmanaged<T>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!)
}

@inline(__always)
func handle(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> OpenHandle? {
    carried(fi, OpenHandle.self)?.takeUnretainedValue()
}

func carry(_ object: AnyObject, in fi: UnsafeMutablePointer<fuse_file_info>?) {
    fi!.pointee.fh = UInt64(UInt(bitPattern: Unmanaged.passRetained(object).toOpaque()))
}

/// Takes the object back from `fh` (release, or a reply that failed).
func detach<T: AnyObject>(_ fi: UnsafeMutablePointer<fuse_file_info>?, _ type: T.Type) -> T? {
    guard let u = carried(fi, type) else { return nil }
    fi!.pointee.fh = 0
    return u.takeRetainedValue()
}

/// Hands `file` to the kernel as the handle in `fi`; a buffered handle
/// is told whether the kernel may keep its cached pages.
func attach(_ file: ArrayFile, to fi: UnsafeMutablePointer<fuse_file_info>?, direct: Bool) {
    if !direct { fi!.pointee.keep_cache = mounted.pageCache.bufferedOpen(file.fileId) ? 1 : 0 }
    carry(OpenHandle(file: file, direct: direct), in: fi)
}

func detachFile(_ fi: UnsafeMutablePointer<fuse_file_info>?) {
    guard let h = detach(fi, OpenHandle.self) else { return }
    if !h.direct { mounted.pageCache.bufferedRelease(h.file.fileId) }
    mounted.array.release(h.file)
}
