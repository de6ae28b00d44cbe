#if canImport(Glibc)
import Glibc
#endif
import CVerbs
import Sharing
import Synchronization
import Verbs
import VulkanMemory

/// The answering side of `vkverbs pingpong`: accepts clients until stopped and serves up to
/// `maxSessions` of them at once, each on its own thread. A request beyond the limit, a malformed
/// one, one that fails the shared-secret check, or one whose buffers would exceed the memory
/// budget is rejected at once, with the reason in the reject's private data; the server goes on.
///
/// The accept loop only does those cheap checks; building a session's resources, the accept and
/// its wait for the client to complete the handshake (bounded by `handshakeTimeout`), and the
/// session itself run on the session's thread, so a client that never completes its handshake
/// holds up nobody. From admission until its thread ends, a session counts against
/// `maxSessions` and holds its charge on `budget`.
public final class PingPongServer: Sendable {
    /// The rdmacm listener the server takes clients from (nil only for a server over another
    /// `SessionAcceptor`, which tests make).
    public let listener: Listener!
    let acceptor: any SessionAcceptor
    public let memory: MemoryKind
    public let timeout: Duration
    /// How long an admitted client has to complete the connection handshake: the session
    /// timeout, at most `maxHandshakeTime`.
    public let handshakeTimeout: Duration
    public let maxSessions: Int
    /// Event mode (perftest's `-e` on the server): the sessions' receive waits sleep on a
    /// completion channel instead of busy-polling.
    public let events: Bool
    /// What the sessions' buffers may hold: per client and all together.
    public let budget: MemoryBudget
    let secret: SharedSecret?
    let vulkan: @Sendable () throws(VulkanError) -> VulkanDevice
    let log: @Sendable (String) -> Void
    private let active = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)
    private let busyRejections = Atomic<Int>(0)
    private let peakSessions = Atomic<Int>(0)
    private let replays = Locked(ReplayGuard())
    private let stopped = Atomic<Bool>(false)

    /// The default memory budget (`maxMemory`): 256 MiB, for all sessions and for any one of them,
    /// enough for messages of just under 128 MiB.
    public static let defaultMaxMemory = 256 << 20
    /// The longest a client may take to complete its connection handshake once admitted.
    public static let maxHandshakeTime: Duration = .seconds(10)

    /// Ends `serve` within about a second (besides Ctrl-C, which stops every server).
    public func stop() { stopped.store(true, ordering: .releasing) }

    /// `maxMemory` bounds the bytes of buffers (and mailboxes) the sessions hold together, and any
    /// one session's; a request over either is refused before anything is allocated for it.
    public convenience init(bind: String?, port: UInt16, memory: MemoryKind = .host, timeout: Duration = .seconds(30),
                            maxSessions: Int = 1, maxMemory: Int = PingPongServer.defaultMaxMemory, secret: SharedSecret? = nil,
                            events: Bool = false,
                            vulkan: @escaping @Sendable () throws(VulkanError) -> VulkanDevice,
                            log: @escaping @Sendable (String) -> Void) throws(PingPongError) {
        try Self.check(maxSessions: maxSessions, timeout: timeout)
        let listener = try v { () throws(VerbsError) in try Listener(address: bind, port: port, backlog: 256) }
        try self.init(acceptor: RDMASessionAcceptor(listener: listener), listener: listener, memory: memory, timeout: timeout,
                      maxSessions: maxSessions, maxMemory: maxMemory, secret: secret, events: events, vulkan: vulkan, log: log)
    }

    /// A server over `acceptor` (the public initializer's is rdmacm's listener, `listener`).
    init(acceptor: any SessionAcceptor, listener: Listener?, memory: MemoryKind = .host, timeout: Duration = .seconds(30),
         maxSessions: Int = 1, maxMemory: Int = PingPongServer.defaultMaxMemory, secret: SharedSecret? = nil,
         events: Bool = false,
         vulkan: @escaping @Sendable () throws(VulkanError) -> VulkanDevice,
         log: @escaping @Sendable (String) -> Void) throws(PingPongError) {
        try Self.check(maxSessions: maxSessions, timeout: timeout)
        budget = try MemoryBudget(total: maxMemory)
        self.acceptor = acceptor
        self.listener = listener
        self.memory = memory
        self.timeout = timeout
        self.handshakeTimeout = min(timeout, Self.maxHandshakeTime)
        self.maxSessions = maxSessions
        self.events = events
        self.secret = secret
        self.vulkan = vulkan
        self.log = log
    }

    private static func check(maxSessions: Int, timeout: Duration) throws(PingPongError) {
        guard maxSessions >= 1 else { throw .verbs(.invalidArgument("the session limit must be at least 1, got \(maxSessions)")) }
        guard timeout > .zero else { throw .verbs(.invalidArgument("the timeout must be positive, got \(timeout)")) }
    }

    /// Sessions running now (half-open handshakes included), the most that ever ran at once, and
    /// requests refused for the limit or for want of budget left.
    public var activeSessions: Int { active.load(ordering: .acquiring) }
    public var peakActiveSessions: Int { peakSessions.load(ordering: .acquiring) }
    public var refusedBusy: Int { busyRejections.load(ordering: .acquiring) }

    /// Serves until `maxClients` clients were taken (nil: until stopped), then waits for the
    /// sessions still running (each is bounded by the timeouts). Requests refused because the
    /// limit was reached or the budget is spent for now do not count as clients. Returns how many
    /// clients failed: a malformed, unauthenticated or oversized request, a handshake not
    /// completed in time, or a session that ended with an error.
    @discardableResult
    public func serve(maxClients: Int? = nil) -> Int {
        var taken = 0
        while maxClients.map({ taken < $0 }) ?? true {
            if stopRequested.load(ordering: .relaxed) || stopped.load(ordering: .acquiring) { break }
            let request: any SessionRequest
            do {
                guard let next = try acceptor.next(wait: .seconds(1)) else { continue }
                request = next
            } catch {
                log("accept failed: \(error)")
                failures.add(1, ordering: .relaxed)
                taken += 1
                continue
            }
            let admission: Admission
            do {
                admission = try admit(request)
            } catch .rejected(let why) {
                log("refused a client: \(why)")
                continue
            } catch {
                taken += 1
                failures.add(1, ordering: .relaxed)
                log("client refused: \(error)")
                continue
            }
            taken += 1
            do {
                try start(admission)
            } catch {
                failures.add(1, ordering: .relaxed)
                log("session not started: \(error)")
            }
        }
        while active.load(ordering: .acquiring) > 0 { usleep(10_000) }
        return failures.load(ordering: .acquiring)
    }

    /// An admitted request on its way to its session thread: the request itself (which that
    /// thread answers), what it asked, and its charge on the budget.
    struct Admission: Sendable {
        let request: any SessionRequest
        let asked: Handshake.Request
        let reservation: MemoryBudget.Reservation
    }

    /// The accept loop's checks, in the order of cost: limit, format, secret, replay, budget.
    /// Nothing is allocated or registered here. Every refusal rejects the request, so the client
    /// learns why at once. Throws `.rejected` for what may pass later (busy, budget spent for now).
    /// A refusal for what may pass later is counted (`refusedBusy`) before the client hears of it.
    /// (Internal, not private: the session fuzzer admits requests the way this loop does.)
    func admit(_ request: any SessionRequest) throws(PingPongError) -> Admission {
        let running = active.load(ordering: .acquiring)
        if running >= maxSessions {
            busyRejections.add(1, ordering: .releasing)
            request.reject("busy: \(running) of \(maxSessions) sessions running")
            throw .rejected("busy: \(running) of \(maxSessions) sessions running")
        }
        let asked: Handshake.Request
        do {
            asked = try Handshake.decodeRequest(request.privateData)
        } catch {
            request.reject("bad request")
            throw .verbs(error)
        }
        if let secret {
            do {
                try Handshake.authenticate(asked, secret: secret)
                try replays.withLock { (guard_: inout ReplayGuard) throws(PingPongError) in try guard_.admit(asked) }
            } catch {
                request.reject("authentication failed")
                throw error
            }
        }
        let reservation: MemoryBudget.Reservation
        do {
            reservation = try budget.charge(MemoryBudget.cost(bufferSize: asked.bufferSize))
        } catch {
            switch error {
            case .overPerRequest:
                request.reject(error.description)
                throw .badRequest(error.description)
            case .exhausted:
                busyRejections.add(1, ordering: .releasing)
                request.reject(error.description)
                throw .rejected(error.description)
            }
        }
        return Admission(request: request, asked: asked, reservation: reservation)
    }

    /// Counts the session and starts its thread; the budget and the count are returned when the
    /// thread ends, whatever way it ends.
    private func start(_ admission: Admission) throws(PingPongError) {
        let running = active.add(1, ordering: .acquiringAndReleasing).newValue
        _ = peakSessions.max(running, ordering: .relaxed)
        do {
            try spawnThread { [self] in
                defer { active.subtract(1, ordering: .acquiringAndReleasing) }
                serve(admission)
            }
        } catch {
            admission.request.reject("no session thread")
            admission.reservation.release()
            active.subtract(1, ordering: .acquiringAndReleasing)
            throw error
        }
    }

    /// What a session thread runs for an admitted request, on the calling thread: the session,
    /// then its charge back to the budget, whatever way it ended (a failure is counted and logged).
    /// (The session fuzzer calls it directly, without the thread.)
    func serve(_ admission: Admission) {
        // After `session` returned, so everything it allocated is gone first.
        defer { admission.reservation.release() }
        do {
            try session(admission)
        } catch {
            failures.add(1, ordering: .relaxed)
            log("session failed: \(error)")
        }
    }

    /// The session thread's work: resources, accept (the client has `handshakeTimeout` to
    /// complete the handshake), then the client's steps until it says bye.
    private func session(_ admission: Admission) throws(PingPongError) {
        let asked = admission.asked
        let secret = self.secret
        let peer = try admission.request.accept(SessionSetup(
            asked: asked, memory: memory, vulkan: vulkan, timeout: timeout, handshakeTimeout: handshakeTimeout,
            answer: { buffer, mailbox in Handshake.answer(buffer: buffer, mailbox: mailbox, request: asked.raw, secret: secret) },
            events: events))
        defer { try? peer.endpoint.disconnect(timeout: .seconds(2)) }
        peer.peerBuffer = asked.buffer
        peer.peerMailbox = asked.mailbox
        log("client connected: \(asked.operation.rawValue) \(asked.measurement.rawValue), \(peer.memory.description) here, "
            + "\(asked.memory.rawValue) memory on the client")
        try ServerSession(peer: peer, operation: asked.operation, measurement: asked.measurement, log: log).run()
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
