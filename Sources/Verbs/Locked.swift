#if canImport(Glibc)
import Glibc
#endif

/// A value behind a heap-allocated pthread mutex: the state that several threads share, here and
/// in the modules above. It stands in for Synchronization.Mutex because ThreadSanitizer sees
/// pthread mutexes, and with Swift 6.3 on Linux it does not see Mutex: every access under one is
/// reported as a race, so `make test-tsan` could not tell a real one. (The mutex lives on the
/// heap: a pthread_mutex_t must not move.) Not recursive.
package final class Locked<Value: ~Copyable> {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    package init(_ value: consuming Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let rc = pthread_mutex_init(mutex, nil)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value, the mutex held.
    package func withLock<Result: ~Copyable, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

extension Locked: @unchecked Sendable where Value: ~Copyable & Sendable {}  // `value` is touched only with `mutex` held
