import Verbs

/// How a stream sender reaches its receiver, once per (re)connection.
public protocol StreamDialer {
    /// Where the receiver is, for messages.
    var peerName: String { get }
    /// Connects with `hello` as the connection's private data and returns the endpoint and the
    /// receiver's answer. `sendDepth`/`receiveDepth` size the endpoint's queues.
    func dial(hello: [UInt8], sendDepth: Int, receiveDepth: Int, timeout: Duration) throws(VerbsError)
        -> (endpoint: any ConnectedEndpoint, answer: [UInt8])
}

/// What a receiver says to a connection request.
public enum StreamDecision: Sendable {
    /// Accept, with this answer as private data.
    case accept(answer: [UInt8])
    /// Refuse, saying why in the reject's private data.
    case reject(reason: String)
}

/// Where a stream receiver takes connection requests.
public protocol StreamAcceptor {
    /// Takes the next request within `wait` (nil when none came). `decide` sees the request's
    /// private data before anything is allocated for it; a rejected request returns nil.
    func accept(wait: Duration, sendDepth: Int, receiveDepth: Int, timeout: Duration,
                decide: ([UInt8]) -> StreamDecision) throws(VerbsError) -> (any ConnectedEndpoint)?
}

/// A `StreamDialer` over rdmacm: resolves `host`:`port`, connects an RC queue pair with its own
/// protection domain and completion queues on the route's device.
public struct RDMAStreamDialer: StreamDialer {
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var peerName: String { "\(host):\(port)" }

    public func dial(hello: [UInt8], sendDepth: Int, receiveDepth: Int, timeout: Duration) throws(VerbsError)
        -> (endpoint: any ConnectedEndpoint, answer: [UInt8]) {
        let route = try ResolvedRoute.resolve(host: host, port: port, timeout: min(timeout, .seconds(5)))
        let context = route.context
        let (pd, send, receive) = try streamQueues(context, sendDepth: sendDepth, receiveDepth: receiveDepth)
        let prepared = try route.prepare(pd: pd, sendCQ: send, receiveCQ: receive,
                                         capabilities: QueuePairCapabilities(maxSendRequests: UInt32(clamping: sendDepth),
                                                                             maxReceiveRequests: UInt32(clamping: receiveDepth)))
        let connection = try prepared.connect(privateData: hello, timeout: timeout)
        return (connection, connection.peerPrivateData)
    }
}

/// A `StreamAcceptor` over an rdmacm listener.
public final class RDMAStreamAcceptor: StreamAcceptor {
    public let listener: Listener

    public init(bind: String?, port: UInt16) throws(VerbsError) {
        listener = try Listener(address: bind, port: port)
    }

    /// Takes requests from a listener made elsewhere (the C API's `vkv_listener`).
    public init(listener: Listener) {
        self.listener = listener
    }

    public func accept(wait: Duration, sendDepth: Int, receiveDepth: Int, timeout: Duration,
                       decide: ([UInt8]) -> StreamDecision) throws(VerbsError) -> (any ConnectedEndpoint)? {
        let request: ConnectionRequest
        do { request = try listener.accept(timeout: wait) } catch .timedOut { return nil }
        switch decide(request.privateData) {
        case let .reject(reason):
            try? request.reject(privateData: Array(reason.utf8.prefix(PrivateDataLimit.reject)))
            return nil
        case let .accept(answer):
            let (pd, send, receive) = try streamQueues(request.context, sendDepth: sendDepth, receiveDepth: receiveDepth)
            let prepared = try request.prepare(pd: pd, sendCQ: send, receiveCQ: receive,
                                               capabilities: QueuePairCapabilities(maxSendRequests: UInt32(clamping: sendDepth),
                                                                                   maxReceiveRequests: UInt32(clamping: receiveDepth)))
            return try prepared.accept(privateData: answer, timeout: timeout)
        }
    }
}

/// A stream end's protection domain and completion queues (separate, on one channel, as the
/// transfer engine needs).
private func streamQueues(_ context: Context, sendDepth: Int, receiveDepth: Int) throws(VerbsError)
    -> (ProtectionDomain, CompletionQueue, CompletionQueue) {
    let pd = try ProtectionDomain(context: context)
    let channel = try CompletionChannel(context: context)
    return (pd, try CompletionQueue(context: context, capacity: sendDepth * 2 + 8, channel: channel),
            try CompletionQueue(context: context, capacity: receiveDepth * 2 + 8, channel: channel))
}
