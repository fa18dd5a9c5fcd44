#if canImport(Glibc)
import Glibc
#endif


/// The one error type the engine throws: an errno (what FUSE answers with)
/// and a message naming the thing and the cause (what a person reads).
public struct FSError: Error, CustomStringConvertible, Sendable {
    public let errno: Int32
    public let message: String

    public init(_ errno: Int32, _ message: String) {
        self.errno = errno
        self.message = message
    }

    /// Wraps the current `errno` after a failed syscall on `path`.
    public static func system(_ op: String, _ path: String, errno code: Int32 = Glibc.errno) -> FSError {
        FSError(code, "\(op) \(path): \(String(cString: strerror(code)))")
    }

    public var description: String { message }
}

/// `retryingEINTR(_:)`, failing with the FSError that names `op`
/// and `path`.
@inline(__always)
package func retryingEINTR<T: BinaryInteger>(_ op: String, _ path: String, _ call: () -> T) throws -> T {
    guard let r = retryingEINTR(call) else { throw FSError.system(op, path) }
    return r
}

extension FSError {
    public static func io(_ message: String) -> FSError { FSError(EIO, message) }
    public static func invalid(_ message: String) -> FSError { FSError(EINVAL, message) }
}

extension FSError {
    /// The member failed, not the request: an I/O error, a device gone, a
    /// filesystem that went read-only after errors, a dead network mount.
    /// A namespace operation moves on to the next member instead of giving
    /// this to the caller.
    public var isMemberFault: Bool { [EIO, ENODEV, ENXIO, EROFS, ESTALE, ENOTCONN].contains(errno) }
    /// What a member whose directory was taken away answers: worth a look
    /// at whether it is still there.
    public var mayMeanVanished: Bool { isMemberFault || errno == ENOENT || errno == ENOTDIR }
}

extension FSError {
    /// A member answered a namespace change as if its tree differed from the
    /// first member's (the name is there, or not, or of another kind): the
    /// members diverged, which is repaired, not punished.
    public var isDivergence: Bool { [EEXIST, ENOENT, ENOTEMPTY, ENOTDIR, EISDIR].contains(errno) }
}
