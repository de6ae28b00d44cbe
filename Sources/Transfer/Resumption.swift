#if canImport(Glibc)
import Glibc
#endif
import Sharing

/// How a caller waiting on the peer engine is resumed: an `async` caller's continuation (no
/// thread waits), or a synchronous caller's parked thread. The progress loop resumes each one
/// exactly once: it is taken out of the engine's state, under its lock, before it is resumed.
enum Resumption<Value: Sendable>: Sendable {
    case task(CheckedContinuation<Result<Value, TransferError>, Never>)
    case thread(ParkedThread<Value>)

    func resume(_ result: Result<Value, TransferError>) {
        switch self {
        case let .task(continuation): continuation.resume(returning: result)
        case let .thread(parked): parked.unpark(result)
        }
    }
}

/// A synchronous caller's slot: the result, and a POSIX semaphore the caller sleeps on until
/// the progress loop posts it.
final class ParkedThread<Value: Sendable>: @unchecked Sendable {  // `result` is behind a Locked; sem_t is thread-safe (POSIX)
    private let result = Locked<Result<Value, TransferError>?>(nil)
    private let semaphore: UnsafeMutablePointer<sem_t>

    init() {
        semaphore = .allocate(capacity: 1)
        sem_init(semaphore, 0, 0)
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func unpark(_ value: Result<Value, TransferError>) {
        result.withLock { $0 = value }
        sem_post(semaphore)
    }

    /// Sleeps until unparked or until `limit` (a safety net: the loop resumes every waiter
    /// by its own deadline, so this only fires if the loop is gone).
    func park(limit: Duration, what: String) -> Result<Value, TransferError> {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let (seconds, attoseconds) = limit.components
        var nanos = Int(ts.tv_nsec) + Int(attoseconds / 1_000_000_000)
        ts.tv_sec += Int(clamping: seconds) + nanos / 1_000_000_000
        nanos %= 1_000_000_000
        ts.tv_nsec = nanos
        while sem_timedwait(semaphore, &ts) != 0 {
            if errno == EINTR { continue }
            break
        }
        return result.withLock { $0 } ?? .failure(.timedOut(operation: what, after: limit))
    }
}

/// A caller waiting on the engine: how to resume it, and by when.
struct PendingWait<Value: Sendable>: Sendable {
    var id: UInt64
    var deadline: ContinuousClock.Instant
    var timeout: Duration
    var what: String
    var resumption: Resumption<Value>
}
