/// One end of a reliable connection as the layers above the verbs drive it: post send and
/// receive work requests, take their completions, learn whether the connection is up.
///
/// `Connection` is the implementation over libibverbs and rdmacm. VerbsEmbedded's
/// `InMemoryEndpoint` is the other: it moves bytes between host buffers registered in in-memory
/// protection domains with the same ordering, key and bounds rules, and fails on demand, so the
/// logic above runs in tests without an RDMA device.
///
/// The contract both keep:
/// - Completions of send-queue requests arrive in posting order; an unsignaled request is
///   retired by the next signaled one. A request that fails completes with its error status
///   whether or not it was signaled, and every request after it completes as `.flushed`.
/// - Posting on an endpoint in the error state succeeds; the request completes as `.flushed`.
/// - Waits return the completions that are there (at least one) or throw `.timedOut`.
/// - Implementations are safe to call from several threads; callers that need an order among
///   their own calls (an engine's window, say) serialize them themselves.
public protocol ConnectedEndpoint: AnyObject, Sendable {
    /// The protection domain this endpoint's memory must be registered in.
    var pd: ProtectionDomain { get }
    /// Send-queue requests the endpoint holds at once.
    var sendQueueDepth: Int { get }
    /// Receives the endpoint holds posted at once.
    var receiveQueueDepth: Int { get }
    /// The queue its send-queue requests complete into (other endpoints' may too: a shared
    /// completion queue). Whoever polls it directly takes every endpoint's completions.
    var sendCompletionQueue: any CompletionSource { get }
    /// The queue its receives complete into (may be `sendCompletionQueue`, may be shared).
    var receiveCompletionQueue: any CompletionSource { get }
    /// Inline payload a send request may carry.
    var maxInlineData: Int { get }
    /// The largest message one work request may move.
    var maxMessageSize: Int { get }
    /// Whether the connection is up, as far as the connection events read so far say.
    var isConnected: Bool { get }
    /// Reads connection events that are there without waiting; a disconnect moves the
    /// endpoint to the error state. Returns `isConnected`.
    @discardableResult func processEvents() -> Bool
    /// A descriptor that turns readable when connection events wait to be read, for a progress
    /// loop to sleep on beside its completion channels (nil: none; `processEvents` must be called
    /// to learn of them).
    var connectionEventDescriptor: Int32? { get }

    /// Posts one send-queue work request; bounds and rights are checked before posting.
    func postSend(_ request: SendRequest) throws(VerbsError)
    /// Checks and builds `request` once for posting many times (a latency loop's request);
    /// throws what `postSend` would throw for it. `Connection` returns its `PreparedSend`
    /// (`ibv_post_send` on a work request built once); others may repost through `postSend`.
    /// The request's `id` and `signaled` are chosen per post.
    func prepare(_ request: SendRequest) throws(VerbsError) -> any PreparedPost
    /// Posts one receive; `segment` nil takes zero-length messages and write-with-immediate.
    func postReceive(id: UInt64, segment: LocalSegment?) throws(VerbsError)

    /// Send-queue completions that are there, without waiting.
    func pollSendCompletions(max: Int) throws(VerbsError) -> [WorkCompletion]
    /// Receive-queue completions that are there, without waiting.
    func pollReceiveCompletions(max: Int) throws(VerbsError) -> [WorkCompletion]
    /// Waits up to `timeout` for send-queue completions, reading connection events meanwhile.
    func waitSendCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion]
    /// Waits up to `timeout` for receive-queue completions, reading connection events meanwhile.
    func waitReceiveCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion]

    /// Moves the endpoint to the error state: everything outstanding completes as `.flushed`.
    func abort() throws(VerbsError)
    /// Disconnects (bounded by `timeout`); outstanding requests complete as `.flushed`.
    func disconnect(timeout: Duration) throws(VerbsError)
}

/// A send request checked once and posted many times on the endpoint that prepared it
/// (`ConnectedEndpoint.prepare`). Each post is one send-queue work request under the
/// endpoint's contract. Not for use from several threads at once.
public protocol PreparedPost: AnyObject {
    /// Posts the request again as work request `id`, with a completion when `signaled`.
    /// `immediate`, when given, replaces the immediate data of a write or send with immediate.
    func post(id: UInt64, signaled: Bool, immediate: UInt32?) throws(VerbsError)
}

extension PreparedSend: PreparedPost {}

extension ConnectedEndpoint {
    public var connectionEventDescriptor: Int32? { nil }
}

extension Connection: ConnectedEndpoint {
    public var sendQueueDepth: Int { Int(queuePair.capabilities.maxSendRequests) }
    public var receiveQueueDepth: Int { Int(queuePair.capabilities.maxReceiveRequests) }
    public var sendCompletionQueue: any CompletionSource { queuePair.sendCQ }
    public var receiveCompletionQueue: any CompletionSource { queuePair.receiveCQ }
    public var maxInlineData: Int { Int(queuePair.capabilities.maxInlineData) }

    /// The active port's message size limit (1 GiB when the port cannot be read).
    public var maxMessageSize: Int {
        (try? context.activePort().maxMessageSize).map { Int(clamping: $0) } ?? (1 << 30)
    }

    /// The connection's own rdmacm event channel.
    public var connectionEventDescriptor: Int32? { eventFileDescriptor }

    public func postSend(_ request: SendRequest) throws(VerbsError) { try queuePair.postSend(request) }

    public func prepare(_ request: SendRequest) throws(VerbsError) -> any PreparedPost {
        try PreparedSend(queuePair: queuePair, request: request)
    }

    public func postReceive(id: UInt64, segment: LocalSegment?) throws(VerbsError) {
        try queuePair.postReceive(id: id, segment: segment)
    }

    public func pollSendCompletions(max: Int) throws(VerbsError) -> [WorkCompletion] { try queuePair.sendCQ.poll(max: max) }

    public func pollReceiveCompletions(max: Int) throws(VerbsError) -> [WorkCompletion] { try queuePair.receiveCQ.poll(max: max) }

    public func waitSendCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion] {
        try queuePair.sendCQ.wait(timeout: timeout, mode: mode, max: max, watching: self)
    }

    public func waitReceiveCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion] {
        try queuePair.receiveCQ.wait(timeout: timeout, mode: mode, max: max, watching: self)
    }

    public func abort() throws(VerbsError) { try queuePair.modifyToError() }
}
