import Foundation
import Sharing
import Verbs

/// Runs `body` on a thread of its own and waits for it at most `seconds`; nil when it did not
/// finish in time. The thread is left behind, still running: a caller that got nil must not
/// count on an orderly exit (the thread may hold a driver's lock) and leaves with `_exit`.
public func bounded<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () -> T) -> T? {
    let result = Locked<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        let value = body()
        result.withLock { $0 = value }
        done.signal()
    }
    guard done.wait(timeout: .now() + seconds) == .success else { return nil }
    return result.withLock { $0 }
}
