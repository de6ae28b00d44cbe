import CVerbs
import Verbs
import VulkanMemory

/// The answering side of `vkverbs pingpong`: serves clients one after another until stopped.
public final class PingPongServer: @unchecked Sendable {
    public let listener: Listener
    public let memory: MemoryKind
    public let timeout: Duration
    let vulkan: () throws(VulkanError) -> VulkanDevice
    let log: (String) -> Void

    public init(bind: String?, port: UInt16, memory: MemoryKind = .host, timeout: Duration = .seconds(30),
                vulkan: @escaping () throws(VulkanError) -> VulkanDevice, log: @escaping (String) -> Void) throws(PingPongError) {
        listener = try v { () throws(VerbsError) in try Listener(address: bind, port: port) }
        self.memory = memory
        self.timeout = timeout
        self.vulkan = vulkan
        self.log = log
    }

    /// Serves until `maxClients` sessions ended (nil: until stopped). A session that fails is
    /// logged and the server goes on with the next client. Returns the number of sessions that failed.
    @discardableResult
    public func serve(maxClients: Int? = nil) -> Int {
        var served = 0, failed = 0
        while maxClients.map({ served < $0 }) ?? true {
            if stopRequested.load(ordering: .relaxed) { break }
            let request: ConnectionRequest
            do {
                request = try listener.accept(timeout: .seconds(1))
            } catch .timedOut {
                continue
            } catch {
                log("accept failed: \(error)")
                failed += 1
                served += 1
                continue
            }
            served += 1
            do {
                try session(request)
            } catch {
                failed += 1
                log("session failed: \(error)")
            }
        }
        return failed
    }

    private func session(_ request: consuming ConnectionRequest) throws(PingPongError) {
        let asked: Handshake.Request
        do {
            asked = try Handshake.decodeRequest(request.privateData)
        } catch {
            try? request.reject(privateData: Array("bad request".utf8))
            throw .verbs(error)
        }
        let r: (pd: ProtectionDomain, send: CompletionQueue, receive: CompletionQueue, memory: PingPongMemory,
                mailbox: MemoryRegion, outbox: MemoryRegion)
        do {
            r = try Resources.make(context: request.context, config: memory, bufferSize: asked.bufferSize,
                                   window: 128, vulkan: vulkan)
        } catch {
            try? request.reject(privateData: Array("no memory".utf8))
            throw error
        }
        let connection: Connection
        do {
            let prepared = try request.prepare(pd: r.pd, sendCQ: r.send, receiveCQ: r.receive,
                                               capabilities: Resources.capabilities(window: 128, inline: 0))
            // Receives go up before the accept so the client's first send finds one.
            for _ in 0..<Peer.receiveDepth {
                try prepared.queuePair.postReceive(id: 0, segment: try r.memory.region.segment(offset: 0, length: asked.bufferSize))
            }
            connection = try prepared.accept(
                privateData: Handshake.answer(buffer: r.memory.region.remoteBuffer, mailbox: r.mailbox.remoteBuffer), timeout: timeout)
        } catch {
            throw .verbs(error)
        }
        defer { try? connection.disconnect(timeout: .seconds(2)) }
        let peer = Peer(connection: connection, memory: r.memory, mailbox: r.mailbox, outbox: r.outbox, timeout: timeout)
        peer.postedReceives = Peer.receiveDepth
        peer.peerBuffer = asked.buffer
        peer.peerMailbox = asked.mailbox
        log("client connected: \(asked.operation.rawValue) \(asked.measurement.rawValue), \(r.memory.description)")

        while true {
            let (kind, a, b) = try peer.receiveControl(nil, what: "waiting for the client's next step")
            if kind == .bye { log("client done"); return }
            guard kind == .start else { throw .protocolError("expected start or bye, got \(kind)") }
            try step(peer, operation: asked.operation, measurement: asked.measurement, size: Int(a), total: Int(b))
        }
    }

    private func step(_ peer: Peer, operation: RDMAOperation, measurement: MeasurementKind, size: Int, total: Int) throws(PingPongError) {
        guard size > 0, size <= peer.half else { throw .protocolError("step size \(size) outside the \(peer.half)-byte buffer") }
        if let bytes = peer.memory.hostBytes { memset(bytes, 0, size) }
        let send = try peer.sendSegment(size)
        peer.watchMailbox = true
        peer.peerFinishedEarly = false
        defer { peer.watchMailbox = false }
        try peer.sendControl(.ready)
        if measurement == .latency {
            var i = 0
            loop: while i < total {
                switch operation {
                case .write:
                    guard try peer.waitLastByte(size: size, tag: tag(i), "waiting for the client's write") else { break loop }
                    (peer.memory.hostBytes! + peer.half + size - 1).storeBytes(of: tag(i), as: UInt8.self)
                    try peer.post(.write(peer.peerBuffer, offset: 0), segment: send)
                case .writeImm:
                    guard try peer.waitReceive("waiting for the client's write with immediate") != nil else { break loop }
                    try peer.post(.writeWithImmediate(peer.peerBuffer, offset: 0, immediate: UInt32(truncatingIfNeeded: i)), segment: send)
                case .send:
                    guard try peer.waitReceive("waiting for the client's message") != nil else { break loop }
                    try peer.post(.send, segment: send)
                case .read:
                    break loop  // The client reads on its own; nothing to answer.
                }
                try peer.reapSends()
                i += 1
            }
        } else if operation == .writeImm || operation == .send {
            // Consume (and re-post) receives until the client says it is done.
            while try peer.waitReceive("receiving the client's messages") != nil {}
            // RC ordering: every message posted before the client's "done" has landed; take their completions.
            while (try? peer.qp.receiveCQ.poll(max: 16) { _ in peer.postedReceives -= 1 }) ?? 0 > 0 {}
            try peer.postReceives()
        }
        try peer.waitSend("draining the send queue")
        peer.watchMailbox = false
        _ = try peer.receiveControl(.done, what: "waiting for the client to finish the step")
        try peer.sendControl(.done)
    }
}
