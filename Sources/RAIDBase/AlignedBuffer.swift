#if canImport(Glibc)
import Glibc
#endif

/// A page-aligned byte buffer, allocated once and reused. ISA-L's pq_gen and
/// xor_gen need 32-byte alignment; page alignment also suits the page cache.
// @unchecked Sendable: its pointer and count never change; its bytes belong to one request at a time (a pool hands it out) or are never written after setup (`zeroStripe`).
public final class AlignedBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let count: Int

    public init(count: Int, alignment: Int = 4096) {
        precondition(count > 0)
        var p: UnsafeMutableRawPointer? = nil
        let rc = posix_memalign(&p, alignment, count)
        precondition(rc == 0 && p != nil, "posix_memalign(\(count)) failed: \(rc)")
        pointer = p!
        self.count = count
        memset(pointer, 0, count)
    }

    deinit { free(pointer) }

    @inline(__always)
    public var bytes: UnsafeMutablePointer<UInt8> { pointer.assumingMemoryBound(to: UInt8.self) }

    public func zero() { memset(pointer, 0, count) }

    /// Zeroes bytes `r` only.
    public func zero(_ r: Range<Int>) {
        precondition(r.lowerBound >= 0 && r.upperBound <= count, "zero(\(r)) of a \(count)-byte buffer")
        memset(pointer + r.lowerBound, 0, r.count)
    }
}

/// A bounded pool of stripe workspaces: hot paths take one, use it, give it
/// back, and allocate nothing per request.
///
/// Inlinable: the FUSE adapter takes an item per request, and an
/// unspecialized generic call looks its metadata up each time.
// @unchecked Sendable: its free list changes only under `lock`, and an item is handed to one caller at a time.
public final class Pool<T: AnyObject>: @unchecked Sendable {
    @usableFromInline package let lock = Lock()
    @usableFromInline package var free: [T] = []
    @usableFromInline package let make: () -> T
    @usableFromInline package let keepMax: Int

    public init(keepMax: Int, make: @escaping () -> T) {
        self.keepMax = keepMax
        self.make = make
        free.reserveCapacity(keepMax)
    }

    @inlinable
    public func withItem<R>(_ body: (T) throws -> R) rethrows -> R {
        let item = lock.withLock { free.popLast() } ?? make()
        defer {
            lock.withLock { if free.count < keepMax { free.append(item) } }
        }
        return try withExtendedLifetime(item) { try body(item) }
    }
}
