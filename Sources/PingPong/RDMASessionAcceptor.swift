import Sharing
import Verbs

/// A `SessionAcceptor` over an rdmacm listener.
struct RDMASessionAcceptor: SessionAcceptor {
    let listener: Listener

    func next(wait: Duration) throws(VerbsError) -> (any SessionRequest)? {
        do { return RDMASessionRequest(try listener.accept(timeout: wait)) } catch .timedOut { return nil }
    }
}

/// An rdmacm connection request on its way to its session thread, taken once. One dropped
/// unanswered is destroyed, which the client sees as a reject.
final class RDMASessionRequest: SessionRequest {
    private let request: Locked<ConnectionRequest?>
    let privateData: [UInt8]

    init(_ request: consuming sending ConnectionRequest) {
        privateData = request.privateData
        self.request = Locked(Optional(request))
    }

    private func take() -> ConnectionRequest? { request.withLock { $0.take() } }

    func reject(_ reason: String) {
        guard let request = take() else { return }
        try? request.reject(privateData: Array(reason.utf8.prefix(PrivateDataLimit.reject)))
    }

    func accept(_ setup: SessionSetup) throws(PingPongError) -> Peer {
        guard let request = take() else { throw .protocolError("the connection request was answered already") }
        let asked = setup.asked
        let r: (pd: ProtectionDomain, send: CompletionQueue, receive: CompletionQueue, memory: PingPongMemory,
                mailbox: MemoryRegion, outbox: MemoryRegion)
        do {
            r = try Resources.make(context: request.context, config: setup.memory, bufferSize: asked.bufferSize,
                                   access: Resources.serverAccess(asked.operation), window: 128, events: setup.events,
                                   vulkan: setup.vulkan)
        } catch {
            try? request.reject(privateData: Array("no memory".utf8))
            throw error
        }
        let connection: Connection
        do {
            let prepared = try request.prepare(pd: r.pd, sendCQ: r.send, receiveCQ: r.receive,
                                               capabilities: Resources.capabilities(
                                                   window: 128, inline: asked.measurement == .latency ? Resources.serverLatencyInline : 0))
            // Receives go up before the accept so the client's first send finds one.
            for _ in 0..<Peer.receiveDepth {
                try prepared.queuePair.postReceive(id: 0, segment: try r.memory.region.segment(offset: 0, length: asked.bufferSize))
            }
            connection = try prepared.accept(privateData: setup.answer(r.memory.region.remoteBuffer, r.mailbox.remoteBuffer),
                                             timeout: setup.handshakeTimeout)
        } catch {
            throw .verbs(error)
        }
        let peer = try Peer(endpoint: connection, memory: r.memory, mailbox: r.mailbox, outbox: r.outbox, timeout: setup.timeout)
        peer.postedReceives = Peer.receiveDepth
        if setup.events { peer.eventQueue = r.receive }
        return peer
    }
}
