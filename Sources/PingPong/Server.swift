#if canImport(Glibc)
import Glibc
#endif
import CVerbs
import Synchronization
import Verbs
import VulkanMemory

/// The answering side of `vkverbs pingpong`: accepts clients until stopped and serves up to
/// `maxSessions` of them at once, each on its own thread. A request beyond the limit, a malformed
/// one, or one that fails the shared-secret check is rejected at once, with the reason in the
/// reject's private data; the server goes on.
public final class PingPongServer: @unchecked Sendable {
    public let listener: Listener
    public let memory: MemoryKind
    public let timeout: Duration
    public let maxSessions: Int
    let secret: SharedSecret?
    let vulkan: () throws(VulkanError) -> VulkanDevice
    let log: @Sendable (String) -> Void
    private let active = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)
    private let busyRejections = Atomic<Int>(0)
    private let peakSessions = Atomic<Int>(0)
    private var replays = ReplayGuard()
    private let stopped = Atomic<Bool>(false)

    /// Ends `serve` within about a second (besides Ctrl-C, which stops every server).
    public func stop() { stopped.store(true, ordering: .releasing) }

    public init(bind: String?, port: UInt16, memory: MemoryKind = .host, timeout: Duration = .seconds(30),
                maxSessions: Int = 1, secret: SharedSecret? = nil,
                vulkan: @escaping () throws(VulkanError) -> VulkanDevice, log: @escaping @Sendable (String) -> Void) throws(PingPongError) {
        guard maxSessions >= 1 else { throw .verbs(.invalidArgument("the session limit must be at least 1, got \(maxSessions)")) }
        listener = try v { () throws(VerbsError) in try Listener(address: bind, port: port, backlog: 256) }
        self.memory = memory
        self.timeout = timeout
        self.maxSessions = maxSessions
        self.secret = secret
        self.vulkan = vulkan
        self.log = log
    }

    /// Sessions running now, the most that ever ran at once, and requests refused for the limit.
    public var activeSessions: Int { active.load(ordering: .acquiring) }
    public var peakActiveSessions: Int { peakSessions.load(ordering: .acquiring) }
    public var refusedBusy: Int { busyRejections.load(ordering: .acquiring) }

    /// Serves until `maxClients` clients were taken (nil: until stopped), then waits for the
    /// sessions still running (each is bounded by the timeout). Requests refused because the
    /// limit was reached do not count as clients. Returns how many clients failed: a malformed
    /// or unauthenticated request, or a session that ended with an error.
    @discardableResult
    public func serve(maxClients: Int? = nil) -> Int {
        var taken = 0
        while maxClients.map({ taken < $0 }) ?? true {
            if stopRequested.load(ordering: .relaxed) || stopped.load(ordering: .acquiring) { break }
            let request: ConnectionRequest
            do {
                request = try listener.accept(timeout: .seconds(1))
            } catch .timedOut {
                continue
            } catch {
                log("accept failed: \(error)")
                failures.add(1, ordering: .relaxed)
                taken += 1
                continue
            }
            do {
                let session = try admit(request)
                taken += 1
                try start(session)
            } catch .rejected(let why) {
                busyRejections.add(1, ordering: .relaxed)
                log("refused a client: \(why)")
            } catch {
                taken += 1
                failures.add(1, ordering: .relaxed)
                log("client refused: \(error)")
            }
        }
        while active.load(ordering: .acquiring) > 0 { usleep(10_000) }
        return failures.load(ordering: .acquiring)
    }

    /// One accepted client: what its session thread needs.
    private final class Session: @unchecked Sendable {
        let peer: Peer
        let asked: Handshake.Request
        init(peer: Peer, asked: Handshake.Request) { self.peer = peer; self.asked = asked }
    }

    /// Checks the request in the order of cost (limit, format, secret, replay), then builds the
    /// resources and accepts. Every refusal rejects the request, so the client learns why at once.
    private func admit(_ request: consuming ConnectionRequest) throws(PingPongError) -> Session {
        let running = active.load(ordering: .acquiring)
        if running >= maxSessions {
            try? request.reject(privateData: Array("busy: \(running) of \(maxSessions) sessions running".utf8))
            throw .rejected("busy: \(running) of \(maxSessions) sessions running")
        }
        let asked: Handshake.Request
        do {
            asked = try Handshake.decodeRequest(request.privateData)
        } catch {
            try? request.reject(privateData: Array("bad request".utf8))
            throw .verbs(error)
        }
        if let secret {
            do {
                try Handshake.authenticate(asked, secret: secret)
                try replays.admit(asked)
            } catch {
                try? request.reject(privateData: Array("authentication failed".utf8))
                throw error
            }
        }
        let r: (pd: ProtectionDomain, send: CompletionQueue, receive: CompletionQueue, memory: PingPongMemory,
                mailbox: MemoryRegion, outbox: MemoryRegion)
        do {
            r = try Resources.make(context: request.context, config: memory, bufferSize: asked.bufferSize,
                                   access: Resources.serverAccess(asked.operation), window: 128, vulkan: vulkan)
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
            connection = try prepared.accept(
                privateData: Handshake.answer(buffer: r.memory.region.remoteBuffer, mailbox: r.mailbox.remoteBuffer,
                                              request: asked.raw, secret: secret),
                timeout: timeout)
        } catch {
            throw .verbs(error)
        }
        let peer = try Peer(connection: connection, memory: r.memory, mailbox: r.mailbox, outbox: r.outbox, timeout: timeout)
        peer.postedReceives = Peer.receiveDepth
        peer.peerBuffer = asked.buffer
        peer.peerMailbox = asked.mailbox
        return Session(peer: peer, asked: asked)
    }

    private func start(_ session: Session) throws(PingPongError) {
        let running = active.add(1, ordering: .acquiringAndReleasing).newValue
        _ = peakSessions.max(running, ordering: .relaxed)
        do {
            try spawnThread { [self] in
                defer { active.subtract(1, ordering: .acquiringAndReleasing) }
                defer { try? session.peer.connection.disconnect(timeout: .seconds(2)) }
                do {
                    try run(session)
                } catch {
                    failures.add(1, ordering: .relaxed)
                    log("session failed: \(error)")
                }
            }
        } catch {
            active.subtract(1, ordering: .acquiringAndReleasing)
            try? session.peer.connection.disconnect(timeout: .seconds(2))
            throw error
        }
    }

    private func run(_ session: Session) throws(PingPongError) {
        let peer = session.peer, asked = session.asked
        log("client connected: \(asked.operation.rawValue) \(asked.measurement.rawValue), \(peer.memory.description)")
        while true {
            let (kind, a, b) = try peer.receiveControl(nil, what: "waiting for the client's next step")
            if kind == .bye { log("client done"); return }
            guard kind == .start else { throw .protocolError("expected start or bye, got \(kind)") }
            // The client says in the high half how much it inlines; we answer likewise, within our cap.
            peer.inlineLimit = peer.memory.canInline ? min(Int(a >> 32), Int(peer.qp.capabilities.maxInlineData)) : 0
            try step(peer, operation: asked.operation, measurement: asked.measurement, size: Int(a & 0xFFFF_FFFF), total: Int(b))
        }
    }

    private func step(_ peer: Peer, operation: RDMAOperation, measurement: MeasurementKind, size: Int, total: Int) throws(PingPongError) {
        guard size > 0, size <= peer.half else { throw .protocolError("step size \(size) outside the \(peer.half)-byte buffer") }
        if let bytes = peer.memory.hostBytes { memset(bytes, 0, size) }
        peer.watchMailbox = true
        peer.peerFinishedEarly = false
        defer { peer.watchMailbox = false }
        try peer.sendControl(.ready)
        if measurement == .latency {
            // A read needs no answer, so nothing is prepared for it.
            let prepared = operation == .read ? nil : try peer.prepare(operation, size: size)
            var i = 0
            loop: while i < total {
                switch operation {
                case .write:
                    guard try peer.waitLastByte(size: size, tag: tag(i), "waiting for the client's write") else { break loop }
                    (peer.memory.hostBytes! + peer.half + size - 1).storeBytes(of: tag(i), as: UInt8.self)
                    try peer.post(prepared!)
                case .writeImm:
                    guard try peer.waitReceive("waiting for the client's write with immediate") != nil else { break loop }
                    try peer.post(prepared!, immediate: UInt32(truncatingIfNeeded: i))
                    try peer.postReceives()
                case .send:
                    guard try peer.waitReceive("waiting for the client's message") != nil else { break loop }
                    try peer.post(prepared!)
                    try peer.postReceives()
                case .read:
                    break loop  // The client reads on its own; nothing to answer.
                }
                try peer.reapSends()
                i += 1
            }
        } else if operation == .writeImm || operation == .send {
            // Consume (and re-post) receives until the client says it is done.
            while try peer.waitReceive("receiving the client's messages") != nil { try peer.postReceives() }
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

/// Runs `body` on a new detached thread.
func spawnThread(_ body: @escaping @Sendable () -> Void) throws(PingPongError) {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attributes, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box)
    if rc != 0 {
        Unmanaged<Box>.fromOpaque(box).release()
        throw .verbs(.system(verb: "pthread_create", errno: rc))
    }
}
