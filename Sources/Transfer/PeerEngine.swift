#if canImport(Glibc)
import Glibc
#endif
import Sharing
import Verbs

/// One engine serving many peers: each peer a `ConnectedEndpoint` (a verbs `Connection`, or the
/// in-memory twin), added and removed while it runs; one progress thread for all of them (no
/// thread per peer, none per call).
///
/// - Each peer keeps `TransferEngine`'s rules (chunking, window, selective signaling, bounds and
///   access checks before posting, sticky failure), on its own: a peer that fails or goes away
///   fails only its own operations, with a typed error, and the others go on.
/// - The synchronous calls and the `async` ones share one core: both register a waiter that the
///   progress loop resumes (an `async` caller's continuation, or a synchronous caller's parked
///   thread). `arrivals(from:)` is an `AsyncSequence` of one peer's arrivals.
/// - Posting never waits under the engine's lock: an operation that does not fit beside what is
///   in flight waits for room (resumed by the loop); an operation longer than the whole window
///   (`window` × `maxChunk` bytes) is refused as out of bounds: split it.
/// - Every wait is bounded by its timeout (the options' when not given); the loop times waits
///   out even when nothing completes.
/// - Memory committed per peer is bounded: arrivals are buffered only for receives posted.
public final class PeerEngine: Sendable {
    public let options: TransferOptions
    private let loop: ProgressLoop
    /// Registration caches, one per protection domain the peers' memory lives in.
    private let caches = Locked<[ObjectIdentifier: RegistrationCache]>([:])

    /// Starts the engine's progress thread. `maxSpin` bounds the rounds the loop polls
    /// before it sleeps (it adapts below that).
    public init(options: TransferOptions = .init(), maxSpin: Int = 256) throws(TransferError) {
        self.options = options
        loop = try ProgressLoop(maxSpin: maxSpin)
        try loop.start()
    }

    deinit { close() }

    // MARK: Peers

    /// Adds a connected endpoint as a peer; `name` appears in its errors. Its completion queues
    /// join the engine's (polled once per round, however many peers share them); the peer's
    /// window is cut to the room its send queue has left, its receives to the room its receive
    /// queue has, and a peer for whom a queue has no room is refused (`.outOfBounds`).
    public func add(_ endpoint: any ConnectedEndpoint, name: String? = nil) throws(TransferError) -> PeerID {
        var o = options
        o.window = max(1, min(o.window, endpoint.sendQueueDepth))
        let maxChunk = max(1, min(o.maxChunk ?? (8 << 20), endpoint.maxMessageSize))
        let peer: PeerID = try loop.state.withLock { (s) throws(TransferError) -> PeerID in
            guard !s.closed else { throw TransferError.disconnected(operation: "adding a peer: the engine is closed") }
            let id = PeerID(s.nextPeer)
            let (window, receives) = try s.router.admit(id, endpoint, window: o.window)
            s.nextPeer += 1
            o.window = window
            o.signalInterval = max(1, min(o.signalInterval, o.window))
            let routed = RoutedEndpoint(endpoint, peer: id)
            s.router.route(id, to: routed)
            s.peers[id] = PeerSlot(endpoint: routed, name: name ?? id.description,
                                   core: EngineCore(options: o, maxChunk: maxChunk, receiveLimit: receives))
            return id
        }
        loop.wake.signal()
        return peer
    }

    /// Takes `peer` out: whoever waits on its operations gets `.disconnected`, its arrival
    /// sequences end after what had arrived. Outstanding requests are flushed (the endpoint is
    /// moved to the error state and its queues emptied) and the endpoint is disconnected
    /// within `timeout`. Other peers are not touched.
    public func remove(_ peer: PeerID, timeout: Duration? = nil) throws(TransferError) {
        let (slot, resumes) = loop.state.withLock { s in s.remove(peer, error: .disconnected(operation: "\(peer) was removed")) }
        ProgressLoop.run(resumes)
        guard let slot else { throw TransferError.invalidArgument("\(peer) is not in the engine (never added, or removed)") }
        try retire(peer, slot, timeout: timeout ?? options.timeout)
    }

    /// Flushes what a removed peer had outstanding, takes its completions off the queues it
    /// shares (the others' go to their peers, as in a round), ends its route and disconnects it.
    private func retire(_ peer: PeerID, _ slot: PeerSlot, timeout: Duration) throws(TransferError) {
        guard let endpoint = slot.endpoint as? RoutedEndpoint else { return }
        if !endpoint.drained {
            try? endpoint.abort()
            // Flushes come back at once: wait (bounded) for the completion of the last request
            // posted on each queue; after it RC leaves nothing of this peer's.
            let end = ContinuousClock.now.advanced(by: min(timeout, .seconds(1)))
            while !endpoint.drained && ContinuousClock.now < end {
                let routed = loop.state.withLock { s in s.router.pump().routed }
                if routed > 0 { loop.wake.signal() }
                if !endpoint.drained { usleep(100) }
            }
        }
        loop.state.withLock { s in s.router.end(peer) }
        try TransferError.bridge { () throws(VerbsError) in try endpoint.disconnect(timeout: timeout) }
    }

    /// The peers in the engine.
    public var peers: [PeerID] { loop.state.withLock { $0.peers.keys.sorted() } }

    /// The error that ended `peer`'s work, if one did (nil for a peer not in the engine).
    public func failure(of peer: PeerID) -> TransferError? { loop.state.withLock { $0.peers[peer]?.core.failure } }

    /// Operations posted on `peer` and not yet completed (not receives).
    public func outstanding(on peer: PeerID) -> Int { loop.state.withLock { $0.peers[peer]?.core.outstanding.count ?? 0 } }

    /// Callers waiting on `peer` now (operations, room, arrivals): for tests that must know a
    /// waiter is registered before they act.
    func waiters(on peer: PeerID) -> Int {
        loop.state.withLock { s in
            guard let slot = s.peers[peer] else { return 0 }
            return slot.completionWaiters.values.reduce(0) { $0 + $1.count } + slot.roomWaiters.count + slot.arrivalWaiters.count
        }
    }

    /// The completion queues the loop polls (one per queue however many peers share it), the
    /// polls it made of them, and the completions that named no peer of the engine.
    public var completionQueues: (queues: Int, polls: Int, stray: Int) {
        loop.state.withLock { ($0.router.queues.count, $0.router.polls, $0.router.stray) }
    }

    /// How often the progress loop went round, and how often it slept.
    public var loopCounts: (rounds: Int, sleeps: Int) { loop.state.withLock { ($0.rounds, $0.sleeps) } }

    /// Takes every peer out (as `remove`), then stops the progress thread. Idempotent.
    public func close() {
        let (slots, resumes) = loop.state.withLock { s in s.closeAll() }
        ProgressLoop.run(resumes)
        for (peer, slot) in slots { try? retire(peer, slot, timeout: .seconds(1)) }
        loop.stop()
    }

    // MARK: Waiting (one core for both APIs)

    private func park<V: Sendable>(timeout: Duration, what: String,
                                   _ register: (inout PeerEngineState, UInt64, Resumption<V>) -> Result<V, TransferError>?)
        -> Result<V, TransferError> {
        let parked = ParkedThread<V>()
        let now = loop.state.withLock { s in register(&s, s.newWaitID(), .thread(parked)) }
        if let now { return now }
        loop.wake.signal()
        return parked.park(limit: timeout + .seconds(5), what: what)
    }

    private func suspend<V: Sendable>(what: String,
                                      _ register: @Sendable (inout PeerEngineState, UInt64, Resumption<V>) -> Result<V, TransferError>?)
        async -> Result<V, TransferError> {
        let loop = self.loop
        let cancelled = Locked(false)
        let id = loop.state.withLock { $0.newWaitID() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<V, TransferError>, Never>) in
                let now: Result<V, TransferError>? = loop.state.withLock { s in
                    if cancelled.withLock({ $0 }) { return .failure(.cancelled(operation: what)) }
                    return register(&s, id, .task(c))
                }
                if let now { c.resume(returning: now) } else { loop.wake.signal() }
            }
        } onCancel: {
            cancelled.withLock { $0 = true }
            ProgressLoop.run(loop.state.withLock { $0.cancel(id) })
        }
    }

    // MARK: Posting

    /// Posts on `peer` once the operation's `requests` fit in its window, parking the thread
    /// meanwhile (resumed by the loop).
    private func post(_ peer: PeerID, requests: Int, timeout: Duration?,
                      _ body: (inout EngineCore, any ConnectedEndpoint) throws(TransferError) -> Ticket) throws(TransferError) -> PeerTicket {
        let limit = timeout ?? options.timeout
        let end = ContinuousClock.now.advanced(by: limit)
        while true {
            if let posted = try postIfRoom(peer, requests: requests, body) { return posted }
            let left = try timeLeft(for: peer, until: end, limit: limit)
            try park(timeout: left, what: "waiting for room in \(peer)'s window") { s, id, r in
                s.waitForRoom(peer, requests: requests, id: id, timeout: left, r)
            }.get()
        }
    }

    private func post(_ peer: PeerID, requests: Int, timeout: Duration?,
                      _ body: @Sendable (inout EngineCore, any ConnectedEndpoint) throws(TransferError) -> Ticket) async throws(TransferError)
        -> PeerTicket {
        let limit = timeout ?? options.timeout
        let end = ContinuousClock.now.advanced(by: limit)
        while true {
            if let posted = try postIfRoom(peer, requests: requests, body) { return posted }
            let left = try timeLeft(for: peer, until: end, limit: limit)
            try await suspend(what: "waiting for room in \(peer)'s window") { s, id, r in
                s.waitForRoom(peer, requests: requests, id: id, timeout: left, r)
            }.get()
        }
    }

    /// Posts now if the operation fits, and wakes the loop to watch for its completions; nil when
    /// the window is too full.
    private func postIfRoom(_ peer: PeerID, requests: Int,
                            _ body: (inout EngineCore, any ConnectedEndpoint) throws(TransferError) -> Ticket) throws(TransferError) -> PeerTicket? {
        let posted = try loop.state.withLock { (s) throws(TransferError) -> Ticket? in
            try Self.tryPost(&s, peer, requests: requests, body)
        }
        guard let posted else { return nil }
        loop.wake.signal()
        return PeerTicket(peer: peer, ticket: posted)
    }

    /// How long a poster may still wait for room in `peer`'s window; the typed timeout once none.
    private func timeLeft(for peer: PeerID, until end: ContinuousClock.Instant, limit: Duration) throws(TransferError) -> Duration {
        let left = end - .now
        guard left > .zero else { throw TransferError.timedOut(operation: "waiting for room in \(peer)'s window", after: limit) }
        return left
    }

    /// Posts now if it fits; nil when the window is too full.
    private static func tryPost(_ s: inout PeerEngineState, _ peer: PeerID, requests: Int,
                                _ body: (inout EngineCore, any ConnectedEndpoint) throws(TransferError) -> Ticket) throws(TransferError) -> Ticket? {
        guard var slot = s.peers[peer] else { throw s.missing(peer) }
        defer { s.peers[peer] = slot }
        if let failure = slot.core.failure { throw failure }
        guard requests <= slot.core.window else {
            throw TransferError.outOfBounds("an operation of \(requests) work requests exceeds \(peer)'s window of \(slot.core.window)"
                                            + " (\(slot.core.window) × \(slot.core.maxChunk) bytes): split it")
        }
        guard slot.core.hasRoom(for: requests) else { return nil }
        return try body(&slot.core, slot.endpoint)
    }

    private func requests(_ peer: PeerID, _ length: Int) -> Int {
        loop.state.withLock { $0.peers[peer]?.core.requests(for: length) } ?? 1
    }

    /// Posts an RDMA write of `segment` to `peer`'s `remote` at `offset`; with `immediate`, the
    /// last chunk carries it. Waits (bounded) for room in the peer's window, never for the write.
    public func postWrite(to peer: PeerID, _ segment: LocalSegment, remote: RemoteBuffer, at offset: UInt64 = 0,
                          immediate: UInt32? = nil, timeout: Duration? = nil) throws(TransferError) -> PeerTicket {
        try post(peer, requests: requests(peer, segment.length), timeout: timeout) { (c, e) throws(TransferError) -> Ticket in
            try c.postWrite(e, segment, to: remote, at: offset, immediate: immediate)
        }
    }

    /// Posts an RDMA read from `peer`'s `remote` at `offset` into `segment`.
    public func postRead(from peer: PeerID, into segment: LocalSegment, remote: RemoteBuffer, at offset: UInt64 = 0,
                         timeout: Duration? = nil) throws(TransferError) -> PeerTicket {
        try post(peer, requests: requests(peer, segment.length), timeout: timeout) { (c, e) throws(TransferError) -> Ticket in
            try c.postRead(e, into: segment, from: remote, at: offset)
        }
    }

    /// Posts a send to `peer` (one message; the peer's receive must hold it).
    public func postSend(to peer: PeerID, _ segment: LocalSegment?, immediate: UInt32? = nil,
                         timeout: Duration? = nil) throws(TransferError) -> PeerTicket {
        try post(peer, requests: 1, timeout: timeout) { (c, e) throws(TransferError) -> Ticket in try c.postSend(e, segment, immediate: immediate) }
    }

    /// Posts a receive for `peer`'s next send or write-with-immediate; what arrives is handed out
    /// by `nextArrival`, `arrival` or `arrivals`.
    public func postReceive(from peer: PeerID, _ segment: LocalSegment?) throws(TransferError) {
        _ = try loop.state.withLock { (s) throws(TransferError) -> Ticket in
            guard var slot = s.peers[peer] else { throw s.missing(peer) }
            defer { s.peers[peer] = slot }
            return try slot.core.postReceive(slot.endpoint, segment)
        }
        loop.wake.signal()
    }

    // MARK: Synchronous waits

    /// Waits until the operation has completed (at once if it has).
    public func wait(for t: PeerTicket, timeout: Duration? = nil) throws(TransferError) {
        let limit = timeout ?? options.timeout
        try park(timeout: limit, what: "waiting for operation \(t.ticket.id) on \(t.peer)") { s, id, r in
            s.waitForCompletion(t, id: id, timeout: limit, r)
        }.get()
    }

    /// Waits for the next arrival from `peer` on a posted receive.
    public func nextArrival(from peer: PeerID, timeout: Duration? = nil) throws(TransferError) -> Arrival {
        let limit = timeout ?? options.timeout
        let got = try park(timeout: limit, what: "waiting for an arrival from \(peer)") { s, id, r in
            s.waitForArrival(peer, id: id, timeout: limit, r)
        }.get()
        guard let got else { throw TransferError.disconnected(operation: "receive from \(peer): the peer was removed") }
        return got
    }

    /// RDMA write to `peer`, waiting for its completion.
    public func write(to peer: PeerID, _ segment: LocalSegment, remote: RemoteBuffer, at offset: UInt64 = 0,
                      immediate: UInt32? = nil, timeout: Duration? = nil) throws(TransferError) {
        try wait(for: try postWrite(to: peer, segment, remote: remote, at: offset, immediate: immediate, timeout: timeout), timeout: timeout)
    }

    /// RDMA read from `peer`, waiting for its completion.
    public func read(from peer: PeerID, into segment: LocalSegment, remote: RemoteBuffer, at offset: UInt64 = 0,
                     timeout: Duration? = nil) throws(TransferError) {
        try wait(for: try postRead(from: peer, into: segment, remote: remote, at: offset, timeout: timeout), timeout: timeout)
    }

    /// Send to `peer`, waiting for its completion.
    public func send(to peer: PeerID, _ segment: LocalSegment?, immediate: UInt32? = nil, timeout: Duration? = nil) throws(TransferError) {
        try wait(for: try postSend(to: peer, segment, immediate: immediate, timeout: timeout), timeout: timeout)
    }

    // MARK: async (continuations the loop resumes; no thread waits)

    /// Waits for the operation without a thread.
    public func completion(of t: PeerTicket, timeout: Duration? = nil) async throws(TransferError) {
        let limit = timeout ?? options.timeout
        try await suspend(what: "waiting for operation \(t.ticket.id) on \(t.peer)") { s, id, r in
            s.waitForCompletion(t, id: id, timeout: limit, r)
        }.get()
    }

    /// The next arrival from `peer`, without a thread; nil once the peer was removed (or the
    /// engine closed) and what had arrived was handed out.
    public func arrival(from peer: PeerID, timeout: Duration? = nil) async throws(TransferError) -> Arrival? {
        let limit = timeout ?? options.timeout
        return try await suspend(what: "waiting for an arrival from \(peer)") { s, id, r in
            s.waitForArrival(peer, id: id, timeout: limit, r)
        }.get()
    }

    /// `peer`'s arrivals as they come; each waits up to `timeout` (the options' when nil). It
    /// ends when the peer is removed, and throws the peer's failure.
    public func arrivals(from peer: PeerID, timeout: Duration? = nil) -> PeerArrivals {
        PeerArrivals(engine: self, peer: peer, timeout: timeout)
    }

    /// RDMA write to `peer`; waits for room and completion without a thread.
    public func write(to peer: PeerID, _ segment: LocalSegment, remote: RemoteBuffer, at offset: UInt64 = 0,
                      immediate: UInt32? = nil, timeout: Duration? = nil) async throws(TransferError) {
        let n = requests(peer, segment.length)
        let t = try await post(peer, requests: n, timeout: timeout) { (c, e) throws(TransferError) -> Ticket in
            try c.postWrite(e, segment, to: remote, at: offset, immediate: immediate)
        }
        try await completion(of: t, timeout: timeout)
    }

    /// RDMA read from `peer` without a thread.
    public func read(from peer: PeerID, into segment: LocalSegment, remote: RemoteBuffer, at offset: UInt64 = 0,
                     timeout: Duration? = nil) async throws(TransferError) {
        let n = requests(peer, segment.length)
        let t = try await post(peer, requests: n, timeout: timeout) { (c, e) throws(TransferError) -> Ticket in
            try c.postRead(e, into: segment, from: remote, at: offset)
        }
        try await completion(of: t, timeout: timeout)
    }

    /// Send to `peer` without a thread.
    public func send(to peer: PeerID, _ segment: LocalSegment?, immediate: UInt32? = nil, timeout: Duration? = nil) async throws(TransferError) {
        let t = try await post(peer, requests: 1, timeout: timeout) { (c, e) throws(TransferError) -> Ticket in
            try c.postSend(e, segment, immediate: immediate)
        }
        try await completion(of: t, timeout: timeout)
    }

    // MARK: Registration through the cache

    /// The registration cache for memory used with `peer` (one per protection domain).
    public func registrationCache(for peer: PeerID) throws(TransferError) -> RegistrationCache {
        let pd = try loop.state.withLock { (s) throws(TransferError) -> ProtectionDomain in
            guard let slot = s.peers[peer] else { throw s.missing(peer) }
            return slot.endpoint.pd
        }
        return caches.withLock { c in
            if let cache = c[ObjectIdentifier(pd)] { return cache }
            let cache = RegistrationCache(pd: pd)
            c[ObjectIdentifier(pd)] = cache
            return cache
        }
    }

    /// RDMA write of `range` of `memory` to `peer`, registered through the peer's cache (a
    /// hit when that memory was used before and its owner is alive), waiting for completion.
    public func write(to peer: PeerID, from memory: some CacheableMemory, range: Range<Int>, remote: RemoteBuffer,
                      at offset: UInt64 = 0, immediate: UInt32? = nil, timeout: Duration? = nil) throws(TransferError) {
        let registration = try register(memory, range, for: peer, access: .localWrite)
        try write(to: peer, try TransferError.bridge { () throws(VerbsError) in try registration.segment() }, remote: remote, at: offset,
                  immediate: immediate, timeout: timeout)
        withExtendedLifetime(registration) {}
    }

    /// RDMA read from `peer` into `range` of `memory`, registered through the peer's cache.
    public func read(from peer: PeerID, into memory: some CacheableMemory, range: Range<Int>, remote: RemoteBuffer,
                     at offset: UInt64 = 0, timeout: Duration? = nil) throws(TransferError) {
        let registration = try register(memory, range, for: peer, access: .localWrite)
        try read(from: peer, into: try TransferError.bridge { () throws(VerbsError) in try registration.segment() }, remote: remote,
                 at: offset, timeout: timeout)
        withExtendedLifetime(registration) {}
    }

    /// `range` of `memory` registered for `peer` through the cache (for posting by hand; keep
    /// the registration until the operation completed).
    public func register(_ memory: some CacheableMemory, _ range: Range<Int>, for peer: PeerID,
                         access: AccessFlags) throws(TransferError) -> Registration {
        let bytes = try memory.cacheableBytes()
        guard range.lowerBound >= 0, range.upperBound <= bytes.count, !range.isEmpty else {
            throw TransferError.outOfBounds("range \(range) is outside the \(bytes.count)-byte memory")
        }
        let cache = try registrationCache(for: peer)
        return try TransferError.bridge { () throws(VerbsError) in
            try cache.register(address: bytes.base + range.lowerBound, length: range.count, access: access, owner: bytes.owner)
        }
    }
}
