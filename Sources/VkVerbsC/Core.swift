// The machinery every C entry point shares: the status codes of vkverbs.h, the thread-local
// error message, the table of live handles, and `guarded`, which runs a body, turns whatever
// it throws into a status code plus message, and never lets a Swift error cross into C.
#if canImport(Glibc)
import Glibc
#endif
import FrameStream
import Sharing
import Transfer
import Verbs
import VulkanMemory

// MARK: Status codes (must match enum vkv_status in include/vkverbs.h)

enum Status: Int32 {
    case ok = 0
    case invalidArgument = 1
    case invalidHandle = 2
    case notFound = 3
    case unsupported = 4
    case timeout = 5
    case disconnected = 6
    case remoteAccess = 7
    case outOfBounds = 8
    case connection = 9
    case completion = 10
    case system = 11
    case vulkan = 12
    case outOfMemory = 13
    case `internal` = 14
    case `protocol` = 15
    case corrupted = 16

    var name: StaticString {
        switch self {
        case .ok: return "VKV_OK"
        case .invalidArgument: return "VKV_ERR_INVALID_ARGUMENT"
        case .invalidHandle: return "VKV_ERR_INVALID_HANDLE"
        case .notFound: return "VKV_ERR_NOT_FOUND"
        case .unsupported: return "VKV_ERR_UNSUPPORTED"
        case .timeout: return "VKV_ERR_TIMEOUT"
        case .disconnected: return "VKV_ERR_DISCONNECTED"
        case .remoteAccess: return "VKV_ERR_REMOTE_ACCESS"
        case .outOfBounds: return "VKV_ERR_OUT_OF_BOUNDS"
        case .connection: return "VKV_ERR_CONNECTION"
        case .completion: return "VKV_ERR_COMPLETION"
        case .system: return "VKV_ERR_SYSTEM"
        case .vulkan: return "VKV_ERR_VULKAN"
        case .outOfMemory: return "VKV_ERR_OUT_OF_MEMORY"
        case .internal: return "VKV_ERR_INTERNAL"
        case .protocol: return "VKV_ERR_PROTOCOL"
        case .corrupted: return "VKV_ERR_CORRUPTED"
        }
    }
}

/// An error raised by the C layer itself (argument checks, handle lookups).
struct APIError: Error {
    var status: Status
    var message: String
    init(_ status: Status, _ message: String) {
        self.status = status
        self.message = message
    }
}

// MARK: Error classification

func classify(_ error: any Error) -> (Status, String) {
    switch error {
    case let e as APIError: return (e.status, e.message)
    case let e as VerbsError: return (classify(e), e.description)
    case let e as TransferError: return (classify(e), e.description)
    case let e as VulkanError: return (classify(e), e.description)
    case let e as FrameStream.FrameError: return (classify(e), e.description)
    default: return (.internal, "\(error)")
    }
}

func classify(_ error: VerbsError) -> Status {
    switch error {
    case .system(_, let code): return code == ENOMEM ? .outOfMemory : .system
    case .lockedMemoryLimit: return .outOfMemory
    case .unsupported: return .unsupported
    case .invalidArgument: return .invalidArgument
    case .outOfRange: return .outOfBounds
    case .notFound: return .notFound
    case .timedOut: return .timeout
    case .workCompletion(let failure): return classify(failure.status)
    case .connection(let failure):
        switch failure.reason {
        case .disconnected, .deviceRemoved: return .disconnected
        default: return .connection
        }
    }
}

func classify(_ error: FrameStream.FrameError) -> Status {
    switch error {
    case .invalidOptions, .notHeld: return .invalidArgument
    case .frameTooLarge: return .outOfBounds
    case .rejected: return .connection
    case .protocolError, .badCredit, .slotOutOfRange, .outOfOrder: return .protocol
    case .corrupted: return .corrupted
    case .timedOut: return .timeout
    case .peerLost: return .disconnected
    case let .transport(e): return classify(e)
    case let .vulkan(e): return classify(e)
    }
}

func classify(_ status: WorkCompletionStatus) -> Status {
    switch status {
    case .remoteAccessError, .remoteInvalidRequest: return .remoteAccess
    case .flushed: return .disconnected
    default: return .completion
    }
}

func classify(_ error: TransferError) -> Status {
    switch error {
    case .verbs(let e): return classify(e)
    case .failed(_, let status, _): return classify(status)
    case .disconnected: return .disconnected
    case .outOfBounds: return .outOfBounds
    case .accessDenied: return .invalidArgument
    case .timedOut: return .timeout
    case .vulkan(let e): return classify(e)
    case .invalidArgument: return .invalidArgument
    case .cancelled: return .internal
    }
}

func classify(_ error: VulkanError) -> Status {
    switch error {
    case .invalidArgument, .noSuchDevice: return .invalidArgument
    case .overBudget: return .outOfMemory
    case .extensionMissing, .featureMissing, .layerMissing, .functionMissing, .apiVersionTooOld,
         .noQueueFamily, .notExportable, .noMemoryType, .nicUnsupported, .noStrategy:
        return .unsupported
    case .timedOut: return .timeout
    default:
        if let r = error.result, r == .errorOutOfHostMemory || r == .errorOutOfDeviceMemory { return .outOfMemory }
        return .vulkan
    }
}

// MARK: Thread-local error message

/// One malloc'd C string per thread; replaced on each failure, freed when the thread exits.
private let messageKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

func setLastError(_ text: String) {
    let old = pthread_getspecific(messageKey)
    let copy = strdup(text)
    pthread_setspecific(messageKey, copy)
    free(old)
}

private let emptyMessage: StaticString = ""

func lastErrorMessage() -> UnsafePointer<CChar> {
    if let p = pthread_getspecific(messageKey) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
    return UnsafeRawPointer(emptyMessage.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Runs `body` for the C function `function`; any error becomes its status and a message
/// "function: text" that `vkv_last_error_message` returns on this thread.
@inline(__always)
func guarded(_ function: StaticString, _ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return Status.ok.rawValue
    } catch {
        let (status, text) = classify(error)
        setLastError("\(function): \(text)")
        return status.rawValue
    }
}

// MARK: Handles

/// What a handle stands for; kept in the token's low four bits so one kind passed as another is caught.
enum HandleKind: UInt, CustomStringConvertible {
    case device = 1, vulkan = 2, memory = 3, listener = 4, connection = 5, group = 6, frameReceiver = 7, frameSender = 8

    static let bits: UInt = 4
    static let mask: UInt = (1 << bits) - 1

    var description: String {
        switch self {
        case .device: return "vkv_device"
        case .vulkan: return "vkv_vulkan"
        case .memory: return "vkv_memory"
        case .listener: return "vkv_listener"
        case .connection: return "vkv_connection"
        case .group: return "vkv_group"
        case .frameReceiver: return "vkv_frame_receiver"
        case .frameSender: return "vkv_frame_sender"
        }
    }
}

/// The live handles. A handle is a token (a serial number shifted left, its kind in the low
/// bits), never an address: the library never dereferences what the application passes, and a
/// token is never handed out twice, so a call with a closed handle, a stale copy of one, a
/// handle of another kind or garbage is found missing here and refused.
/// The table holds the one strong reference the handle stands for; closing removes it
/// (objects in use by a call on another thread live until that call returns).
final class HandleTable: @unchecked Sendable {  // `live` is read and written only under `lock`
    static let shared = HandleTable()

    private struct Live {
        var next: UInt = 1
        var objects: [UInt: AnyObject] = [:]
    }

    private let lock = Lock()
    private var live = Live()

    func insert(_ object: AnyObject, _ kind: HandleKind) -> OpaquePointer {
        let token: UInt = lock.withLock {
            let t = (live.next << HandleKind.bits) | kind.rawValue
            live.next += 1
            live.objects[t] = object
            return t
        }
        return OpaquePointer(bitPattern: token)!
    }

    func lookup<T: AnyObject>(_ handle: OpaquePointer?, _ kind: HandleKind, as type: T.Type,
                              name: String) throws -> T {
        guard let handle else { throw APIError(.invalidHandle, "\(name) is NULL") }
        let token = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        let found = lock.withLock { live.objects[token] }
        guard let found else {
            throw APIError(.invalidHandle, "\(name) is not a live \(kind) (closed already, or never returned by this library)")
        }
        guard token & HandleKind.mask == kind.rawValue, let object = found as? T else {
            let other = HandleKind(rawValue: token & HandleKind.mask).map { "a \($0)" } ?? "another kind of handle"
            throw APIError(.invalidHandle, "\(name) is \(other), not a \(kind)")
        }
        return object
    }

    /// Takes the handle out of the table; the caller drops the returned reference.
    func remove<T: AnyObject>(_ handle: OpaquePointer?, _ kind: HandleKind, as type: T.Type, name: String) throws -> T {
        let object = try lookup(handle, kind, as: type, name: name)
        let token = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle!)))
        let removed = lock.withLock { live.objects.removeValue(forKey: token) }
        guard removed != nil else {
            throw APIError(.invalidHandle, "\(name) is not a live \(kind) (closed concurrently)")
        }
        return object
    }

    var count: Int { lock.withLock { live.objects.count } }
}

// MARK: Small helpers

/// Writes a handle to an out parameter the caller must provide.
func requireOut<T>(_ out: UnsafeMutablePointer<T>?, _ name: String) throws -> UnsafeMutablePointer<T> {
    guard let out else { throw APIError(.invalidArgument, "\(name) (the result pointer) is NULL") }
    return out
}

/// A C timeout in milliseconds: negative means no limit (24 days, the most poll(2) waits).
func duration(milliseconds: Int32) -> Duration {
    milliseconds < 0 ? .milliseconds(Int64(Int32.max)) : .milliseconds(Int64(milliseconds))
}

func bytes(_ pointer: UnsafeRawPointer?, _ length: Int, _ name: String) throws -> [UInt8] {
    if length == 0 { return [] }
    guard let pointer else { throw APIError(.invalidArgument, "\(name) is NULL but its length is \(length)") }
    return Array(UnsafeRawBufferPointer(start: pointer, count: length))
}

/// A non-recursive lock for per-object serialization (a `Locked` guarding nothing but the
/// critical section, whose state is the object's own).
final class Lock: Sendable {
    private let mutex = Locked(())
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        try mutex.withLock { _ in try body() }
    }
}
