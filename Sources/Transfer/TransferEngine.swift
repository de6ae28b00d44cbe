import Sharing
import Verbs

/// How the engine posts and waits.
public struct TransferOptions: Sendable {
    /// Send work requests in flight at most (bounded by the endpoint's send queue).
    public var window: Int
    /// Every this many requests one is signaled, so completions stay few but the send
    /// queue still drains; the last request of each operation is always signaled.
    public var signalInterval: Int
    /// Largest single work request; nil: the endpoint's max message size, capped at 8 MiB so
    /// long transfers pipeline.
    public var maxChunk: Int?
    public var waitMode: CompletionWaitMode
    /// Bound on each blocking call.
    public var timeout: Duration

    public init(window: Int = 64, signalInterval: Int = 16, maxChunk: Int? = nil,
                waitMode: CompletionWaitMode = .event, timeout: Duration = .seconds(30)) {
        self.window = window
        self.signalInterval = signalInterval
        self.maxChunk = maxChunk
        self.waitMode = waitMode
        self.timeout = timeout
    }
}

/// Identifies one posted operation (all its chunks).
public struct Ticket: Hashable, Sendable, Comparable {
    public let id: UInt64
    public static func < (a: Ticket, b: Ticket) -> Bool { a.id < b.id }
}

/// A message or write-with-immediate that arrived.
public struct Arrival: Sendable, Equatable {
    public var ticket: Ticket
    public var byteCount: Int
    /// Set for send-with-immediate and write-with-immediate.
    public var immediate: UInt32?
}

/// Moves bytes over one connected endpoint: RDMA write (optionally with immediate), read,
/// send/recv; chunked to the endpoint's message size, a window of outstanding requests,
/// selective signaling, bounds and access checks before posting, typed errors for error
/// completions, and prompt failure of everything outstanding when the peer goes away.
///
/// - The endpoint is a `Connection` (verbs) or any other `ConnectedEndpoint`, such as
///   VerbsEmbedded's in-memory twin, on which the same logic runs without a device.
/// - Failure is sticky: once a work request fails (send or receive) or the connection goes
///   down, every later post, progress and drain throws that same error, and so does a wait for
///   an operation that had not completed. What completed before the failure is still reported:
///   a finished operation's wait returns, and messages that arrived before it are still handed
///   out by `nextArrival` (the peer saw them delivered). A timeout is not a failure.
/// - Thread safety: the engine's state sits behind one lock, which every call, synchronous or
///   `async`, takes; a blocking synchronous call holds it while it waits, so calls from several
///   threads are serialized, never interleaved. The `async` calls never block a thread on a
///   completion: they post, then poll without waiting, suspending between looks.
public final class TransferEngine: Sendable {
    public let endpoint: any ConnectedEndpoint
    public let options: TransferOptions
    public let maxChunk: Int
    private let core: Locked<EngineCore>

    /// The verbs connection underneath, when the endpoint is one.
    public var connection: Connection? { endpoint as? Connection }
    /// The protection domain the engine's memory must be registered in.
    public var pd: ProtectionDomain { endpoint.pd }

    /// An engine over a verbs connection, which needs separate send and receive completion queues.
    public convenience init(connection: Connection, options: TransferOptions = .init()) throws(TransferError) {
        guard connection.queuePair.sendCQ !== connection.queuePair.receiveCQ else {
            throw TransferError.invalidArgument("the engine needs separate send and receive completion queues")
        }
        self.init(endpoint: connection, options: options)
    }

    public init(endpoint: any ConnectedEndpoint, options: TransferOptions = .init()) {
        self.endpoint = endpoint
        var o = options
        o.window = max(1, min(o.window, endpoint.sendQueueDepth))
        o.signalInterval = max(1, min(o.signalInterval, o.window))
        self.options = o
        maxChunk = max(1, min(o.maxChunk ?? (8 << 20), endpoint.maxMessageSize))
        core = Locked(EngineCore(options: o, maxChunk: maxChunk))
    }

    // MARK: Posting

    /// Posts an RDMA write of `segment` into `remote` at `offset`; with `immediate`, the last
    /// chunk carries it, so the peer is told once, after all the bytes are there.
    public func postWrite(_ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64 = 0,
                          immediate: UInt32? = nil) throws(TransferError) -> Ticket {
        try core.withLock { (c) throws(TransferError) -> Ticket in
            try c.postWrite(endpoint, segment, to: remote, at: offset, immediate: immediate)
        }
    }

    /// Posts an RDMA read from `remote` at `offset` into `segment`.
    public func postRead(into segment: LocalSegment, from remote: RemoteBuffer, at offset: UInt64 = 0) throws(TransferError) -> Ticket {
        try core.withLock { (c) throws(TransferError) -> Ticket in try c.postRead(endpoint, into: segment, from: remote, at: offset) }
    }

    /// Posts a send (one message: it is not chunked, the peer's receive must hold it).
    public func postSend(_ segment: LocalSegment?, immediate: UInt32? = nil) throws(TransferError) -> Ticket {
        try core.withLock { (c) throws(TransferError) -> Ticket in try c.postSend(endpoint, segment, immediate: immediate) }
    }

    /// Posts a receive for the next incoming send or write-with-immediate.
    public func postReceive(_ segment: LocalSegment?) throws(TransferError) -> Ticket {
        try core.withLock { (c) throws(TransferError) -> Ticket in try c.postReceive(endpoint, segment) }
    }

    // MARK: Progress

    /// Takes what has completed without waiting; returns the operations that finished.
    /// A finished operation may still be waited for: `wait(for:)` returns at once.
    /// A failed request throws its typed error (and the engine stays failed).
    public func progress() throws(TransferError) -> [Ticket] {
        try core.withLock { (c) throws(TransferError) -> [Ticket] in try c.progress(endpoint) }
    }

    /// Waits until `ticket` (a write, read or send) has completed; returns at once when it
    /// already has. Receives are waited for with `nextArrival`.
    public func wait(for ticket: Ticket, timeout: Duration? = nil) throws(TransferError) {
        try core.withLock { (c) throws(TransferError) in try c.wait(endpoint, for: ticket, timeout: timeout ?? options.timeout) }
    }

    /// Waits until nothing is in flight.
    public func drain(timeout: Duration? = nil) throws(TransferError) {
        try core.withLock { (c) throws(TransferError) in try c.drain(endpoint, timeout: timeout ?? options.timeout) }
    }

    /// Operations posted and not yet completed (sends, writes, reads; not receives).
    public var outstanding: Int { core.withLock { $0.outstanding.count } }

    /// The error that ended the engine, if one did.
    public var failure: TransferError? { core.withLock { $0.failure } }

    // MARK: Receiving

    /// Waits for the next arrival on a posted receive.
    public func nextArrival(timeout: Duration? = nil) throws(TransferError) -> Arrival {
        try core.withLock { (c) throws(TransferError) -> Arrival in try c.nextArrival(endpoint, timeout: timeout ?? options.timeout) }
    }

    // MARK: Blocking conveniences

    /// RDMA write, waiting for completion.
    public func write(_ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64 = 0,
                      immediate: UInt32? = nil) throws(TransferError) {
        try wait(for: try postWrite(segment, to: remote, at: offset, immediate: immediate))
    }

    /// RDMA read, waiting for completion.
    public func read(into segment: LocalSegment, from remote: RemoteBuffer, at offset: UInt64 = 0) throws(TransferError) {
        try wait(for: try postRead(into: segment, from: remote, at: offset))
    }

    /// Send, waiting for completion.
    public func send(_ segment: LocalSegment?, immediate: UInt32? = nil) throws(TransferError) {
        try wait(for: try postSend(segment, immediate: immediate))
    }

    // MARK: async

    /// Polls `step` (which must not block) until it yields a value, suspending between looks:
    /// a few yields first, then sleeps growing from 20 us to 1 ms. No thread waits meanwhile.
    private func poll<T: Sendable>(timeout: Duration, what: String,
                                   _ step: @Sendable (inout EngineCore) throws(TransferError) -> T?) async throws(TransferError) -> T {
        let end = ContinuousClock.now.advanced(by: timeout)
        var pause = Duration.microseconds(20)
        var looks = 0
        while true {
            let got = try core.withLock { (c) throws(TransferError) -> T? in try step(&c) }
            if let got { return got }
            if ContinuousClock.now >= end { throw TransferError.timedOut(operation: what, after: timeout) }
            looks += 1
            if looks < 16 {
                await Task.yield()
            } else {
                do { try await Task.sleep(for: pause) } catch { throw TransferError.cancelled(operation: what) }
                pause = min(pause * 2, .milliseconds(1))
            }
        }
    }

    /// Waits for `ticket` without blocking a thread.
    public func completion(of ticket: Ticket, timeout: Duration? = nil) async throws(TransferError) {
        let endpoint = self.endpoint
        _ = try await poll(timeout: timeout ?? options.timeout, what: "waiting for operation \(ticket.id)") { (c) throws(TransferError) -> Bool? in
            try c.isFinished(endpoint, ticket) ? true : nil
        }
    }

    /// RDMA write without blocking the caller's thread on its completion (posting waits while
    /// the window is full).
    public func write(_ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64 = 0,
                      immediate: UInt32? = nil) async throws(TransferError) {
        try await completion(of: try postWrite(segment, to: remote, at: offset, immediate: immediate))
    }

    /// RDMA read without blocking the caller's thread on its completion.
    public func read(into segment: LocalSegment, from remote: RemoteBuffer, at offset: UInt64 = 0) async throws(TransferError) {
        try await completion(of: try postRead(into: segment, from: remote, at: offset))
    }

    /// Send without blocking the caller's thread on its completion.
    public func send(_ segment: LocalSegment?, immediate: UInt32? = nil) async throws(TransferError) {
        try await completion(of: try postSend(segment, immediate: immediate))
    }

    /// Waits for the next arrival without blocking a thread.
    public func arrival(timeout: Duration? = nil) async throws(TransferError) -> Arrival {
        let endpoint = self.endpoint
        return try await poll(timeout: timeout ?? options.timeout, what: "waiting for an arrival") { (c) throws(TransferError) -> Arrival? in
            try c.pollArrival(endpoint)
        }
    }
}
