#if canImport(Glibc)
import Glibc
#endif
import Verbs

/// One end of an `InMemoryLink`: a `ConnectedEndpoint` without a device. Register its memory
/// in `pd` (host memory only), then use it as a `Connection`.
public final class InMemoryEndpoint: ConnectedEndpoint {
    struct Limits {
        var sendQueueDepth: Int
        var receiveQueueDepth: Int
        var maxInlineData: Int
        var maxMessageSize: Int
    }

    public let pd: ProtectionDomain
    let side: Int
    let limits: Limits
    let state: LinkState
    let sendQueue: InMemoryCompletionQueue
    let receiveQueue: InMemoryCompletionQueue

    init(side: Int, pd: ProtectionDomain, limits: Limits, state: LinkState,
         sendQueue: InMemoryCompletionQueue? = nil, receiveQueue: InMemoryCompletionQueue? = nil) {
        self.side = side
        self.pd = pd
        self.limits = limits
        self.state = state
        self.sendQueue = sendQueue ?? InMemoryCompletionQueue(capacity: limits.sendQueueDepth)
        self.receiveQueue = receiveQueue ?? InMemoryCompletionQueue(capacity: limits.receiveQueueDepth)
        self.sendQueue.attach(self, .send)
        self.receiveQueue.attach(self, .receive)
    }

    public var sendQueueDepth: Int { limits.sendQueueDepth }
    public var receiveQueueDepth: Int { limits.receiveQueueDepth }
    public var sendCompletionQueue: any CompletionSource { sendQueue }
    public var receiveCompletionQueue: any CompletionSource { receiveQueue }
    public var maxInlineData: Int { limits.maxInlineData }
    public var maxMessageSize: Int { limits.maxMessageSize }
    public var isConnected: Bool { state.core.withLock { $0.sides[side].connected } }

    @discardableResult
    public func processEvents() -> Bool {
        state.core.withLock { c in
            let up = c.processEvents(side)
            c.pump(state)
            return up
        }
    }

    /// What `postSend` checks before it takes a queue slot: inline size, remote range, local
    /// rights, the segment's domain and the message size limit.
    func check(_ request: SendRequest) throws(VerbsError) {
        try request.check(maxInlineData: limits.maxInlineData)
        if let segment = request.segment {
            guard segment.region.pd === pd else {
                throw VerbsError.invalidArgument("the segment's memory region belongs to another protection domain")
            }
            guard segment.length <= limits.maxMessageSize else {
                throw VerbsError.invalidArgument("a message of \(segment.length) bytes exceeds the \(limits.maxMessageSize)-byte limit")
            }
        }
    }

    /// Checks `request` now; each post of the result goes through `postSend`.
    public func prepare(_ request: SendRequest) throws(VerbsError) -> any PreparedPost {
        try check(request)
        return InMemoryPreparedPost(endpoint: self, request: request)
    }

    public func postSend(_ request: SendRequest) throws(VerbsError) {
        try check(request)
        let result: Int32? = state.core.withLock { c in
            var s = c.sides[side]
            guard s.postedSeq - s.retiredSeq < UInt64(limits.sendQueueDepth) else { return ENOMEM }
            s.postedSeq += 1
            s.pending.append(LinkCore.Posted(request: request, seq: s.postedSeq))
            c.sides[side] = s
            c.pump(state)
            return nil
        }
        if let result { throw VerbsError.system(verb: "ibv_post_send(\(request.operation.name))", errno: result) }
    }

    public func postReceive(id: UInt64, segment: LocalSegment?) throws(VerbsError) {
        try checkReceive(segment)
        if let segment, segment.region.pd !== pd {
            throw VerbsError.invalidArgument("the receive's memory region belongs to another protection domain")
        }
        let full: Bool = state.core.withLock { c in
            if c.sides[side].inError {
                // Posting on a QP in the error state succeeds; the receive flushes at once.
                c.sides[side].receiveCompletions.append(WorkCompletion(workRequestID: id, status: .flushed, opcode: nil,
                                                                       queuePairNumber: LinkCore.queuePairNumber(side)))
                return false
            }
            guard c.sides[side].receives.count < limits.receiveQueueDepth else { return true }
            c.sides[side].receives.append((id, segment))
            c.pump(state)
            return false
        }
        if full { throw VerbsError.system(verb: "ibv_post_recv", errno: ENOMEM) }
    }

    /// Polls this endpoint's completion queue: the completions of every endpoint that shares it.
    public func pollSendCompletions(max: Int) throws(VerbsError) -> [WorkCompletion] { try sendQueue.poll(max: max) }

    public func pollReceiveCompletions(max: Int) throws(VerbsError) -> [WorkCompletion] { try receiveQueue.poll(max: max) }

    /// The send completions this endpoint's queue pair has generated and its completion queue
    /// has not taken yet (a held completion stays).
    func takeSendCompletions(max: Int = .max) -> [WorkCompletion] {
        state.core.withLock { c in
            c.pump(state)
            let taken = c.sides[side].sendCompletions.prefix(Swift.max(0, Swift.min(max, c.sides[side].visibleSend)))
            c.sides[side].sendCompletions.removeFirst(taken.count)
            c.sides[side].tookSend(taken.count)
            if let last = taken.last { c.sides[side].retiredSeq = Swift.max(c.sides[side].retiredSeq, last.seq) }
            return taken.map(\.wc)
        }
    }

    /// Completions generated for `queue` that no poll has taken (held ones included).
    func completionsHeld(_ queue: InMemoryLink.Queue) -> Int {
        state.core.withLock { c in
            c.pump(state)
            return queue == .send ? c.sides[side].sendCompletions.count : c.sides[side].receiveCompletions.count
        }
    }

    func takeReceiveCompletions(max: Int = .max) -> [WorkCompletion] {
        state.core.withLock { c in
            c.pump(state)
            let taken = c.sides[side].receiveCompletions.prefix(Swift.max(0, Swift.min(max, c.sides[side].visibleReceive)))
            c.sides[side].receiveCompletions.removeFirst(taken.count)
            c.sides[side].tookReceive(taken.count)
            return Array(taken)
        }
    }

    public func waitSendCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion] {
        try wait(timeout: timeout) { () throws(VerbsError) in try pollSendCompletions(max: max) }
    }

    public func waitReceiveCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion] {
        try wait(timeout: timeout) { () throws(VerbsError) in try pollReceiveCompletions(max: max) }
    }

    /// Polls until something arrives or `timeout` passes, reading connection events as a
    /// `Connection`'s wait does; sleeps briefly between looks (the peer may be another thread).
    private func wait(timeout: Duration, _ poll: () throws(VerbsError) -> [WorkCompletion]) throws(VerbsError) -> [WorkCompletion] {
        let end = ContinuousClock.now.advanced(by: timeout)
        while true {
            processEvents()
            let got = try poll()
            if !got.isEmpty { return got }
            if ContinuousClock.now >= end { throw VerbsError.timedOut(operation: "waiting for a completion", after: timeout) }
            usleep(50)
        }
    }

    public func abort() throws(VerbsError) {
        state.core.withLock { c in c.moveToError(side) }
    }

    public func disconnect(timeout: Duration) throws(VerbsError) {
        state.core.withLock { c in
            guard c.sides[side].connected else { return }
            c.linkDown()
            _ = c.processEvents(side)
        }
    }
}
