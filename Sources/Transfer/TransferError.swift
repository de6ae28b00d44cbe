import Verbs
import VulkanMemory

/// What the transfer engine reports; every case names the operation it stopped.
public enum TransferError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The verbs layer refused a call (registration, posting, ...).
    case verbs(VerbsError)
    /// A work request completed with an error: which operation, and the status
    /// (e.g. remote access error for a wrong rkey).
    case failed(operation: String, status: WorkCompletionStatus, vendorError: UInt32)
    /// The connection went away with the operation outstanding.
    case disconnected(operation: String)
    /// A local or remote range outside what was registered; nothing was posted.
    case outOfBounds(String)
    /// The operation needs a right the memory was not registered with.
    case accessDenied(String)
    case timedOut(operation: String, after: Duration)
    /// GPU-side work (fence, semaphore, staging copy) failed, with the Vulkan error.
    case vulkan(VulkanError)
    /// The caller asked for something the engine cannot do (nothing was posted).
    case invalidArgument(String)
    /// The waiting task was cancelled (the operation itself may still complete).
    case cancelled(operation: String)

    public var description: String {
        switch self {
        case let .verbs(e): return e.description
        case let .failed(op, status, vendor): return "\(op) failed: \(status) (vendor error 0x\(String(vendor, radix: 16)))"
        case let .disconnected(op): return "\(op) failed: the connection is closed"
        case let .outOfBounds(text): return "out of bounds: \(text)"
        case let .accessDenied(text): return "access denied: \(text)"
        case let .timedOut(op, after): return "\(op) timed out after \(after)"
        case let .vulkan(e): return "GPU: \(e.description)"
        case let .invalidArgument(text): return "invalid argument: \(text)"
        case let .cancelled(op): return "\(op) was cancelled"
        }
    }
}

extension TransferError {
    /// The one bridge from the verbs layer: a bounded wait that ran out stays a timeout, a
    /// range that does not fit stays out of bounds, everything else keeps its verbs error.
    public init(_ error: VerbsError) {
        switch error {
        case let .timedOut(op, after): self = .timedOut(operation: op, after: after)
        case let .outOfRange(text): self = .outOfBounds(text)
        default: self = .verbs(error)
        }
    }
}

extension TransferError {
    /// Runs a verbs call, mapping its error into the engine's (`init(_:)`): the one bridge.
    @inline(__always)
    public static func bridge<T>(_ body: () throws(VerbsError) -> T) throws(TransferError) -> T {
        do { return try body() } catch { throw TransferError(error) }
    }
}
