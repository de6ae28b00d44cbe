import Sharing
import Verbs

/// A `GroupTransport` over rdmacm on one device: every member listens on `address` (an IP of
/// that device; port 0 picks one), publishes "ip:port", and every connection, dialed or
/// accepted, uses the one protection domain `pd` (so memory registered once reaches every
/// member) and completion queues tied to one completion channel (so the engine's progress loop
/// sleeps on one descriptor for all of them).
public final class RDMAGroupTransport: GroupTransport {
    public let pd: ProtectionDomain
    public let address: String
    public let port: UInt16
    public let capabilities: QueuePairCapabilities
    private let channel: CompletionChannel

    public init(pd: ProtectionDomain, address: String, port: UInt16 = 0,
                capabilities: QueuePairCapabilities = .init()) throws(TransferError) {
        self.pd = pd
        self.address = address
        self.port = port
        self.capabilities = capabilities
        channel = try TransferError.bridge { () throws(VerbsError) in try CompletionChannel(context: pd.context) }
    }

    /// Separate send and receive queues (the engine's need) on the shared channel.
    fileprivate func queues() throws(VerbsError) -> (send: CompletionQueue, receive: CompletionQueue) {
        (try CompletionQueue(context: pd.context, capacity: Int(capabilities.maxSendRequests), channel: channel),
         try CompletionQueue(context: pd.context, capacity: Int(capabilities.maxReceiveRequests), channel: channel))
    }

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
            let (send, receive) = try queues()
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
            let (send, receive) = try transport.queues()
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
