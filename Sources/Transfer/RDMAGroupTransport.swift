import Sharing
import Verbs

/// A `GroupTransport` over rdmacm on one device: every member listens on `address` (an IP of
/// that device; port 0 picks one), publishes "ip:port", and every connection, dialed or
/// accepted, uses the one protection domain `pd` (so memory registered once reaches every
/// member) and one send and one receive completion queue, shared by all of them and tied to one
/// completion channel: the engine's progress loop polls two queues per round however many peers
/// there are, and sleeps on one descriptor. The queues hold `maxPeers` connections' worth of
/// completions (the engine reserves each peer's share and refuses a peer beyond them).
public final class RDMAGroupTransport: GroupTransport {
    public let pd: ProtectionDomain
    public let address: String
    public let port: UInt16
    public let capabilities: QueuePairCapabilities
    /// The completion queues every connection of this transport completes into.
    public let sendQueue: CompletionQueue
    public let receiveQueue: CompletionQueue

    public init(pd: ProtectionDomain, address: String, port: UInt16 = 0,
                capabilities: QueuePairCapabilities = .init(), maxPeers: Int = 64) throws(TransferError) {
        guard maxPeers >= 1, maxPeers <= 4096 else { throw TransferError.invalidArgument("maxPeers must be in 1...4096, got \(maxPeers)") }
        self.pd = pd
        self.address = address
        self.port = port
        self.capabilities = capabilities
        (sendQueue, receiveQueue) = try TransferError.bridge { () throws(VerbsError) in
            let channel = try CompletionChannel(context: pd.context)
            return (try CompletionQueue(context: pd.context, capacity: Int(capabilities.maxSendRequests) * maxPeers, channel: channel),
                    try CompletionQueue(context: pd.context, capacity: Int(capabilities.maxReceiveRequests) * maxPeers, channel: channel))
        }
    }

    /// The shared queues, for every connection.
    fileprivate func queues() -> (send: CompletionQueue, receive: CompletionQueue) { (sendQueue, receiveQueue) }

    fileprivate func checkDevice(_ context: Context) throws(VerbsError) {
        guard context.isSameDevice(as: pd.context) else {
            throw VerbsError.invalidArgument("the connection goes through another device than the group's protection domain")
        }
    }

    public func listen() throws(TransferError) -> any GroupListener {
        let listener = try TransferError.bridge { () throws(VerbsError) in try Listener(address: address, port: port) }
        return RDMAGroupListener(transport: self, listener: listener, address: Array("\(address):\(listener.port)".utf8))
    }

    public func dial(_ address: [UInt8], hello: [UInt8], timeout: Duration) throws(TransferError) -> any ConnectedEndpoint {
        guard let text = String(validating: address, as: UTF8.self), let colon = text.lastIndex(of: ":"),
              let port = UInt16(text[text.index(after: colon)...]), !text[..<colon].isEmpty else {
            throw TransferError.invalidArgument("a group address is \"host:port\"")
        }
        let host = String(text[..<colon])
        return try TransferError.bridge { () throws(VerbsError) in
            // Address and route resolution get what is left of the group's timeout: on a loaded
            // link (ARP under emulation) it can take longer than any fixed few seconds.
            let route = try ResolvedRoute.resolve(host: host, port: port, timeout: timeout)
            try checkDevice(route.context)
            let (send, receive) = queues()
            let prepared = try route.prepare(pd: pd, sendCQ: send, receiveCQ: receive, capabilities: capabilities)
            return try prepared.connect(privateData: hello, timeout: timeout)
        }
    }
}

/// A member's rdmacm listener.
final class RDMAGroupListener: GroupListener {
    private let transport: RDMAGroupTransport
    private let listener: Locked<Listener?>
    let address: [UInt8]

    init(transport: RDMAGroupTransport, listener: Listener, address: [UInt8]) {
        self.transport = transport
        self.listener = Locked(listener)
        self.address = address
    }

    func next(timeout: Duration) throws(TransferError) -> (any GroupRequest)? {
        guard let l = listener.withLock({ $0 }) else { throw TransferError.invalidArgument("the listener is closed") }
        do {
            return RDMAGroupRequest(transport: transport, request: try l.accept(timeout: timeout))
        } catch .timedOut {
            return nil
        } catch {
            throw TransferError(error)
        }
    }

    /// Destroys the listening cm_id (requests not taken are refused by the CM).
    func close() { listener.withLock { $0 = nil } }
}

/// A connection request a member's listener took.
final class RDMAGroupRequest: GroupRequest {
    private let transport: RDMAGroupTransport
    private var request: ConnectionRequest?
    let hello: [UInt8]

    init(transport: RDMAGroupTransport, request: consuming ConnectionRequest) {
        self.transport = transport
        hello = request.privateData
        self.request = consume request
    }

    func accept(timeout: Duration) throws(TransferError) -> any ConnectedEndpoint {
        guard let request = request.take() else { throw TransferError.invalidArgument("the request was answered already") }
        do {
            try transport.checkDevice(request.context)
            let (send, receive) = transport.queues()
            let prepared = try request.prepare(pd: transport.pd, sendCQ: send, receiveCQ: receive, capabilities: transport.capabilities)
            return try prepared.accept(timeout: timeout)
        } catch {
            throw TransferError(error)
        }
    }

    func reject() {
        guard let request = request.take() else { return }
        try? request.reject()
    }
}
