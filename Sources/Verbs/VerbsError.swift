#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// Every failure of the verbs layer, typed so callers can react (fall back on
/// `.unsupported`, retry on `.timedOut`, inspect `.connection`).
public enum VerbsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A verb failed with this errno.
    case system(verb: String, errno: Int32)
    /// The device, its driver or the kernel does not support what was asked
    /// (EOPNOTSUPP, ENOTSUP, EPROTONOSUPPORT). Callers fall back on this.
    case unsupported(verb: String, errno: Int32)
    /// Memory could not be pinned because the process' locked-memory limit (`ulimit -l`,
    /// RLIMIT_MEMLOCK) is below what the registration needs and it lacks CAP_IPC_LOCK.
    case lockedMemoryLimit(verb: String, limit: UInt64, requested: Int)
    /// The caller's input was rejected before anything reached the device.
    case invalidArgument(String)
    /// A range (of a memory region, a remote buffer) does not lie inside what it addresses;
    /// nothing reached the device.
    case outOfRange(String)
    /// No device, port, GID or address matched.
    case notFound(String)
    /// A bounded wait ran out.
    case timedOut(operation: String, after: Duration)
    /// A work request completed with an error status.
    case workCompletion(WorkCompletionFailure)
    /// Connection management did not reach the state asked for.
    case connection(ConnectionFailure)

    public var description: String {
        switch self {
        case let .system(verb, code):
            return "\(verb) failed: \(errnoText(code)) (errno \(code))"
        case let .unsupported(verb, code):
            return "\(verb) is not supported here: \(errnoText(code)) (errno \(code))"
        case let .lockedMemoryLimit(verb, limit, requested):
            return "\(verb) failed: cannot pin \(requested) bytes: the locked-memory limit (ulimit -l) is \(limit / 1024) KiB. "
                + "Raise it: `ulimit -l unlimited` in the shell (within the hard limit), memlock in /etc/security/limits.conf, "
                + "LimitMEMLOCK=infinity for a systemd service, or `docker run --ulimit memlock=-1`"
        case let .invalidArgument(text):
            return "invalid argument: \(text)"
        case let .outOfRange(text):
            return "out of range: \(text)"
        case let .notFound(text):
            return "not found: \(text)"
        case let .timedOut(operation, after):
            return "\(operation) timed out after \(after)"
        case let .workCompletion(failure):
            return failure.description
        case let .connection(failure):
            return failure.description
        }
    }

    /// The errno behind a `.system` or `.unsupported` error.
    public var errno: Int32? {
        switch self {
        case let .system(_, code), let .unsupported(_, code): return code
        case .lockedMemoryLimit: return ENOMEM
        default: return nil
        }
    }

    /// Maps an errno of a named verb, keeping "not supported" apart so callers can fall back.
    static func fromErrno(_ verb: String, _ code: Int32) -> VerbsError {
        switch code {
        case EOPNOTSUPP, ENOTSUP, EPROTONOSUPPORT: return .unsupported(verb: verb, errno: code)
        default: return .system(verb: verb, errno: code)
        }
    }
}

/// A work completion whose status was not success.
public struct WorkCompletionFailure: Equatable, Sendable, CustomStringConvertible {
    public var status: WorkCompletionStatus
    public var opcode: WorkCompletionOpcode?
    public var workRequestID: UInt64
    public var vendorError: UInt32

    public var description: String {
        let op = opcode.map { "\($0)" } ?? "operation"
        return "\(op) (wr_id \(workRequestID)) completed with \(status) (vendor error 0x\(String(vendorError, radix: 16)))"
    }
}

/// Why an rdmacm step did not reach the expected event.
public struct ConnectionFailure: Equatable, Sendable, CustomStringConvertible {
    public enum Reason: String, Equatable, Sendable {
        case addressResolution = "address resolution failed"
        case routeResolution = "route resolution failed"
        case unreachable = "peer unreachable"
        case rejected = "connection rejected by peer"
        case connectError = "connection error"
        case disconnected = "disconnected"
        case deviceRemoved = "device removed"
        case unexpectedEvent = "unexpected connection event"
    }
    public var reason: Reason
    /// The rdmacm event name, e.g. `RDMA_CM_EVENT_REJECTED`.
    public var event: String
    /// The event's status (a negative errno, or a CM reject reason for REJECTED).
    public var status: Int32
    /// Private data the peer sent with a reject, if any.
    public var privateData: [UInt8]

    /// A failure as rdmacm would report it (for transports that are not rdmacm, such as the in-memory one).
    package init(reason: Reason, event: String, status: Int32, privateData: [UInt8]) {
        self.reason = reason
        self.event = event
        self.status = status
        self.privateData = privateData
    }

    /// A connect that found no listener (the server is not up, or the port is wrong).
    public var isNoListener: Bool { reason == .rejected && status == 8 }

    /// The reject's private data as text, when it is printable ASCII (the CM pads it with zeros).
    public var peerMessage: String? {
        let bytes = privateData.prefix { $0 != 0 }
        guard !bytes.isEmpty, bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    public var description: String {
        var text = "\(reason.rawValue) (\(event), status \(status)"
        if status < 0 { text += ": \(errnoText(-status))" }
        // IB CM reject reasons rdmacm passes through: 8 is an unknown service ID, i.e. no
        // listener on that port; 28 is a reject by the peer's application.
        if reason == .rejected && status == 8 { text += ": nothing listens there" }
        if reason == .rejected && status == 28 { text += ": refused by the peer's application" }
        if let peerMessage { text += ", saying \"\(peerMessage)\"" }
        return text + ")"
    }
}

func errnoText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}

// The small core that maps each C convention to a typed error.

/// ibv_* verbs that return an errno value (0 on success).
@inline(__always)
func checkReturnedErrno(_ verb: String, _ rc: Int32) throws(VerbsError) {
    if rc != 0 { throw VerbsError.fromErrno(verb, rc > 0 ? rc : -rc) }
}

/// Calls that return -1 and set errno (rdma_* and libc).
@inline(__always)
func checkSetsErrno(_ verb: String, _ rc: Int32) throws(VerbsError) {
    if rc != 0 { throw VerbsError.fromErrno(verb, rc == -1 ? Glibc.errno : rc) }
}

/// A registration that failed with ENOMEM: when the locked-memory limit is finite and the
/// process cannot exceed it (no CAP_IPC_LOCK), that limit is why, and the error says so.
func registrationError(_ verb: String, length: Int, _ error: VerbsError) -> VerbsError {
    guard error.errno == ENOMEM else { return error }
    var limit = rlimit()
    guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max,  // RLIM_INFINITY
          !hasCapability(14) else { return error }  // 14: CAP_IPC_LOCK
    return .lockedMemoryLimit(verb: verb, limit: UInt64(limit.rlim_cur), requested: length)
}

/// Whether capability `bit` is in this process' effective set (/proc/self/status CapEff).
public func hasCapability(_ bit: Int) -> Bool {
    guard let hex = processStatusField("CapEff"), let mask = UInt64(hex, radix: 16) else { return false }
    return mask & (1 << UInt64(bit)) != 0
}

/// Pointer-returning verbs: NULL means errno says why.
@inline(__always)
func checkPointer<T>(_ verb: String, _ pointer: T?) throws(VerbsError) -> T {
    guard let pointer else {
        let code = Glibc.errno
        throw VerbsError.fromErrno(verb, code == 0 ? EIO : code)
    }
    return pointer
}

/// `Array.withUnsafeBytes` with the closure's typed error kept.
func withBytes<R>(_ data: [UInt8], _ body: (UnsafeRawBufferPointer) throws(VerbsError) -> R) throws(VerbsError) -> R {
    let result: Result<R, VerbsError> = data.withUnsafeBytes { p in
        Result { () throws(VerbsError) -> R in try body(p) }
    }
    return try result.get()
}
