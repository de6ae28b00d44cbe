import Sharing
import Verbs

/// A result one thread hands to another: set once by the worker, read by the waiter whether
/// or not its wait timed out (a read before the set finds nil, never a half-written value).
final class ResultSlot<Success: Sendable, Failure: Error>: Sendable {
    private let value = Locked<Result<Success, Failure>?>(nil)

    func set(_ result: sending Result<Success, Failure>) { value.withLock { $0 = result } }
    func get() -> Result<Success, Failure>? { value.withLock { $0 } }
}
