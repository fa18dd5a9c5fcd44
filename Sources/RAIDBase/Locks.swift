#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex owned by a class so its address is stable.
// @unchecked Sendable: a pthread mutex, made to be shared between threads; its address is stable.
public final class Lock: @unchecked Sendable {
    @usableFromInline package let m: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        m = .allocate(capacity: 1)
        m.initialize(to: pthread_mutex_t())
        precondition(pthread_mutex_init(m, nil) == 0, "pthread_mutex_init failed")
    }

    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }

    @inlinable @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}

/// A readers–writer lock: many readers of a file, or one writer.
// @unchecked Sendable: a pthread rwlock, made to be shared between threads; its address is stable.
public final class ReadWriteLock: @unchecked Sendable {
    private let l: UnsafeMutablePointer<pthread_rwlock_t>

    public init() {
        l = .allocate(capacity: 1)
        l.initialize(to: pthread_rwlock_t())
        precondition(pthread_rwlock_init(l, nil) == 0, "pthread_rwlock_init failed")
    }

    deinit {
        pthread_rwlock_destroy(l)
        l.deallocate()
    }

    @inline(__always)
    public func withReadLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(l)
        defer { pthread_rwlock_unlock(l) }
        return try body()
    }

    @inline(__always)
    public func withWriteLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(l)
        defer { pthread_rwlock_unlock(l) }
        return try body()
    }
}

/// Locks on ranges of one file's stripes, taken under the file's lock held
/// shared: a read holds its stripes shared, a write within the size holds
/// them exclusive, so writers of different stripes run in parallel and a
/// reader never sees a stripe half written (data without its parity, or
/// a sector without its checksum entry). Whoever holds the file's lock
/// exclusive (a write that moves the size, truncate, attaching a member)
/// needs no range: no range holder can be running.
///
/// A handful of ranges are held at once (one per request in flight on the
/// file), so a list searched linearly is enough; waiters sleep on one
/// condition and re-check when any range is released.
// @unchecked Sendable: its held ranges change only under `mutex`.
public final class StripeRangeLock: @unchecked Sendable {
    private struct Held {
        package var first: UInt64, last: UInt64, exclusive: Bool, token: UInt64
    }
    private let mutex = Lock()
    /// Signalled (under `mutex`) when a range is released.
    private let released: UnsafeMutablePointer<pthread_cond_t>
    /// Guarded by `mutex`.
    private var held: [Held] = []
    private var nextToken: UInt64 = 0
    private var waiting = 0

    public init() {
        released = .allocate(capacity: 1)
        released.initialize(to: pthread_cond_t())
        precondition(pthread_cond_init(released, nil) == 0, "pthread_cond_init failed")
        held.reserveCapacity(16)
    }

    deinit {
        precondition(held.isEmpty, "a stripe range lock freed while \(held.count) ranges are held")
        pthread_cond_destroy(released)
        released.deallocate()
    }

    /// Runs `body` holding stripes `first...last`, shared or exclusive.
    @inline(__always)
    public func withRange<T>(_ first: UInt64, _ last: UInt64, exclusive: Bool, _ body: () throws -> T) rethrows -> T {
        precondition(first <= last, "stripe range \(first)...\(last)")
        let token = acquire(first, last, exclusive: exclusive)
        defer { release(token) }
        return try body()
    }

    private func acquire(_ first: UInt64, _ last: UInt64, exclusive: Bool) -> UInt64 {
        mutex.withLock {
            while held.contains(where: { $0.first <= last && first <= $0.last && ($0.exclusive || exclusive) }) {
                waiting += 1
                pthread_cond_wait(released, mutex.m)
                waiting -= 1
            }
            nextToken &+= 1
            held.append(Held(first: first, last: last, exclusive: exclusive, token: nextToken))
            return nextToken
        }
    }

    private func release(_ token: UInt64) {
        let anyWaiting: Bool = mutex.withLock {
            let i = held.firstIndex { $0.token == token }
            precondition(i != nil, "releasing a stripe range that is not held")
            held.remove(at: i!)
            return waiting > 0
        }
        if anyWaiting { pthread_cond_broadcast(released) }
    }
}
