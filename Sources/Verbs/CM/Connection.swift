#if canImport(Glibc)
import Glibc
#endif
import CVerbs
import Sharing
import Synchronization

/// Connection parameters both sides agree on; read-atomic depths bounded by the device.
private func connParam(privateData: UnsafeRawBufferPointer, responderResources: UInt8, initiatorDepth: UInt8) -> rdma_conn_param {
    var param = rdma_conn_param()
    param.private_data = privateData.baseAddress
    param.private_data_len = UInt8(privateData.count)
    param.responder_resources = responderResources
    param.initiator_depth = initiatorDepth
    param.retry_count = 7
    param.rnr_retry_count = 7
    return param
}

private func readDepths(_ context: Context) -> (responder: UInt8, initiator: UInt8) {
    guard let attr = try? context.attributes() else { return (1, 1) }
    return (UInt8(clamping: min(attr.maxQPReadAtomic, 16)), UInt8(clamping: min(attr.maxQPInitiatorReadAtomic, 16)))
}

/// A resolution step refused at once, as the connection failure its error event would have
/// been: the verb in place of the event's name, the negative errno as its status.
private func resolutionFailure(_ reason: ConnectionFailure.Reason, verb: String, _ code: Int32) -> VerbsError {
    .connection(ConnectionFailure(reason: reason, event: verb, status: -code, privateData: []))
}

/// The active side after address and route resolution (`rdma_resolve_addr`, `rdma_resolve_route`).
/// Consumed by `prepare`, which creates the queue pair.
public struct ResolvedRoute: ~Copyable {
    let id: CMID
    /// The device the route goes out of: the PD, CQs and MRs of the connection must be on it.
    public let context: Context

    /// Resolves `host`:`port` to an RDMA device and a path, each step within `timeout`.
    public static func resolve(host: String, port: UInt16, timeout: Duration = .seconds(5)) throws(VerbsError) -> ResolvedRoute {
        let deadline = Deadline(after: timeout)
        var address = try resolveSocketAddress(host: host, port: port)
        let id = try CMID()
        let ms = Int32(clamping: max(1, deadline.remaining.milliseconds))
        // An address no RDMA device routes to fails here at once (ENODEV, EADDRNOTAVAIL,
        // ENETUNREACH...): that is a failed resolution, as the ADDR_ERROR event would say.
        let rc = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in rdma_resolve_addr(id.raw, nil, sa, ms) }
        }
        if rc != 0 { throw resolutionFailure(.addressResolution, verb: "rdma_resolve_addr(\(host))", Glibc.errno) }
        _ = try id.channel.expect(RDMA_CM_EVENT_ADDR_RESOLVED, deadline: deadline, operation: "resolving \(host)")
        if rdma_resolve_route(id.raw, Int32(clamping: max(1, deadline.remaining.milliseconds))) != 0 {
            throw resolutionFailure(.routeResolution, verb: "rdma_resolve_route", Glibc.errno)
        }
        _ = try id.channel.expect(RDMA_CM_EVENT_ROUTE_RESOLVED, deadline: deadline, operation: "resolving the route to \(host)")
        guard let context = id.context else { throw VerbsError.notFound("an RDMA device for the route to \(host)") }
        return ResolvedRoute(id: id, context: context)
    }

    /// Creates the connection's queue pair on the cm_id (`rdma_create_qp`), so receives can be
    /// posted before the peer can send.
    public consuming func prepare(pd: ProtectionDomain, sendCQ: CompletionQueue, receiveCQ: CompletionQueue,
                                  capabilities: QueuePairCapabilities = .init()) throws(VerbsError) -> PreparedConnection {
        let qp = try QueuePair(pd: pd, sendCQ: sendCQ, receiveCQ: receiveCQ, capabilities: capabilities, cmID: id)
        return PreparedConnection(id: id, queuePair: qp, role: .active)
    }
}

/// A connection request taken off a listener. Consume it with `prepare` (then `accept`)
/// or `reject`; one dropped unanswered is destroyed, which the peer sees as a reject.
public struct ConnectionRequest: ~Copyable, Sendable {
    let id: CMID
    /// The device the request came in on.
    public let context: Context
    /// The peer's private data (the IB CM pads it to 56 bytes: carry lengths inside it).
    public let privateData: [UInt8]
    let peerResponderResources: UInt8
    let peerInitiatorDepth: UInt8

    /// Creates the queue pair for this connection (`rdma_create_qp`).
    public consuming func prepare(pd: ProtectionDomain, sendCQ: CompletionQueue, receiveCQ: CompletionQueue,
                                  capabilities: QueuePairCapabilities = .init()) throws(VerbsError) -> PreparedConnection {
        let qp = try QueuePair(pd: pd, sendCQ: sendCQ, receiveCQ: receiveCQ, capabilities: capabilities, cmID: id)
        return PreparedConnection(id: id, queuePair: qp,
                                  role: .passive(peerResponderResources: peerResponderResources,
                                                 peerInitiatorDepth: peerInitiatorDepth))
    }

    /// Refuses the request (`rdma_reject`), optionally saying why in `privateData`.
    public consuming func reject(privateData: [UInt8] = []) throws(VerbsError) {
        try checkPrivateData(privateData, limit: PrivateDataLimit.reject, step: "reject")
        let id = self.id
        try withBytes(privateData) { p throws(VerbsError) in
            try checkSetsErrno("rdma_reject", rdma_reject(id.raw, p.baseAddress, UInt8(p.count)))
        }
    }
}

/// A queue pair made on a cm_id but not yet connected. Post receives on `queuePair`,
/// then consume it with `connect` (active side) or `accept` (passive side).
public struct PreparedConnection: ~Copyable {
    enum Role { case active, passive(peerResponderResources: UInt8, peerInitiatorDepth: UInt8) }
    let id: CMID
    public let queuePair: QueuePair
    let role: Role

    /// `rdma_connect`, then waits for ESTABLISHED. A peer that refuses, or where nothing
    /// listens, gives `.connection(.rejected)`; silence gives `.timedOut`.
    public consuming func connect(privateData: [UInt8] = [], timeout: Duration = .seconds(5)) throws(VerbsError) -> Connection {
        guard case .active = role else { throw VerbsError.invalidArgument("connect is for the active side; use accept") }
        try checkPrivateData(privateData, limit: PrivateDataLimit.connect, step: "connect")
        let deadline = Deadline(after: timeout)
        let depths = readDepths(queuePair.pd.context)
        let id = self.id
        try withBytes(privateData) { p throws(VerbsError) in
            var param = connParam(privateData: p, responderResources: depths.responder, initiatorDepth: depths.initiator)
            try checkSetsErrno("rdma_connect", rdma_connect(id.raw, &param))
        }
        let event = try id.channel.expect(RDMA_CM_EVENT_ESTABLISHED, deadline: deadline, operation: "connecting")
        return Connection(id: id, queuePair: queuePair, peerPrivateData: event.privateData)
    }

    /// `rdma_accept`, then waits for ESTABLISHED.
    public consuming func accept(privateData: [UInt8] = [], timeout: Duration = .seconds(5)) throws(VerbsError) -> Connection {
        guard case let .passive(peerResponder, peerInitiator) = role else {
            throw VerbsError.invalidArgument("accept is for the passive side; use connect")
        }
        try checkPrivateData(privateData, limit: PrivateDataLimit.accept, step: "accept")
        let deadline = Deadline(after: timeout)
        let depths = readDepths(queuePair.pd.context)
        let id = self.id
        try withBytes(privateData) { p throws(VerbsError) in
            // Our reads in flight are bounded by what the peer can answer, and the other way round.
            var param = connParam(privateData: p, responderResources: min(depths.responder, peerInitiator),
                                  initiatorDepth: min(depths.initiator, peerResponder))
            try checkSetsErrno("rdma_accept", rdma_accept(id.raw, &param))
        }
        _ = try id.channel.expect(RDMA_CM_EVENT_ESTABLISHED, deadline: deadline, operation: "accepting")
        return Connection(id: id, queuePair: queuePair, peerPrivateData: [])
    }
}

/// An established RC connection. Disconnects when released, if `disconnect` was not called.
public final class Connection: Sendable {
    let id: CMID
    public let queuePair: QueuePair
    /// What the peer sent with its accept (active side); padded by the transport.
    public let peerPrivateData: [UInt8]
    /// Whether the connection is known to be down (disconnected here, or by the peer).
    private let disconnected = Locked(false)

    init(id: CMID, queuePair: QueuePair, peerPrivateData: [UInt8]) {
        self.id = id
        self.queuePair = queuePair
        self.peerPrivateData = peerPrivateData
    }

    deinit { if isConnected { rdma_disconnect(id.raw) } }

    /// Records the disconnect; true for the first caller.
    private func markDisconnected() -> Bool {
        disconnected.withLock { down in
            defer { down = true }
            return !down
        }
    }

    public var pd: ProtectionDomain { queuePair.pd }
    public var context: Context { queuePair.pd.context }

    /// `rdma_disconnect`, then waits (bounded) for the DISCONNECTED event. The queue pair
    /// goes to the error state, so outstanding requests complete as flushed.
    public func disconnect(timeout: Duration = .seconds(5)) throws(VerbsError) {
        let first = markDisconnected()
        guard first else { return }
        let deadline = Deadline(after: timeout)
        // EINVAL here means the peer disconnected first; its event may already be queued.
        _ = rdma_disconnect(id.raw)
        while true {
            let event = try id.channel.next(deadline: deadline, operation: "disconnecting")
            if event.type == RDMA_CM_EVENT_DISCONNECTED || event.type == RDMA_CM_EVENT_TIMEWAIT_EXIT { return }
        }
    }

    /// Whether the connection is still up, as far as the connection events read so far say.
    public var isConnected: Bool { !disconnected.withLock { $0 } }

    var eventFileDescriptor: Int32 { id.channel.raw.pointee.fd }

    /// Reads the connection events that are already there, without waiting. When the peer
    /// has disconnected (or the device went away) the queue pair is moved to the error state,
    /// so every outstanding request completes as flushed instead of waiting out its retries.
    /// Returns whether the connection is still up.
    @discardableResult
    public func processEvents() -> Bool {
        while let event = try? id.channel.next(deadline: Deadline(after: .zero), operation: "reading connection events") {
            if event.type == RDMA_CM_EVENT_DISCONNECTED || event.type == RDMA_CM_EVENT_DEVICE_REMOVAL
                || event.type == RDMA_CM_EVENT_TIMEWAIT_EXIT {
                if markDisconnected() {
                    try? queuePair.modifyToError()
                    _ = rdma_disconnect(id.raw)
                }
            }
        }
        return isConnected
    }

    /// Waits up to `timeout` for the peer to disconnect (or the device to go); returns
    /// false if the connection is still up.
    public func waitForPeerDisconnect(timeout: Duration) throws(VerbsError) -> Bool {
        let deadline = Deadline(after: timeout)
        while true {
            let event: CMEvent
            do {
                event = try id.channel.next(deadline: deadline, operation: "waiting for the peer to disconnect")
            } catch .timedOut {
                return false
            }
            if event.type == RDMA_CM_EVENT_DISCONNECTED || event.type == RDMA_CM_EVENT_DEVICE_REMOVAL {
                _ = markDisconnected()
                _ = rdma_disconnect(id.raw)
                return true
            }
        }
    }
}
