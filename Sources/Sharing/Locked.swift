#if canImport(Glibc)
import Glibc
#endif

// Sharing: the Sendable building blocks the package's modules keep shared state and memory in
// (Locked, MemoryAddress), in a module of their own so that neither of the two bottom modules,
// Verbs and VulkanMemory, needs the other for them.

/// A value behind a heap-allocated pthread mutex: the state that several threads share in the
/// package's modules. It stands in for Synchronization.Mutex because ThreadSanitizer sees
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
