#if canImport(Glibc)
import Glibc
#endif

/// Runs a system call that returns -1 and sets errno on failure, again for
/// as long as a signal interrupts it (EINTR): its result, or nil with
/// `errno` as the call left it. The one place raidfs retries an interrupted
/// call; the throwing `retryingEINTR(_:_:_:)` names the operation
/// and path in an `FSError`.
@inline(__always)
public func retryingEINTR<T: BinaryInteger>(_ call: () -> T) -> T? {
    while true {
        let r = call()
        if r >= 0 { return r }
        if errno != EINTR { return nil }
    }
}
