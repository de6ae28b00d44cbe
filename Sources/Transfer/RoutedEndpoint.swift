import Sharing
import Verbs

/// A peer's endpoint as its `PeerEngine` posts on it: every work request id carries the peer
/// (its number in the upper 32 bits, a receive bit, the low 31 bits of the engine's own id), so
/// that completion queues shared by many peers' queue pairs can be polled once per round and
/// each completion handed to its peer (`CompletionRouter`). Its polls read what the router
/// delivered, with the engine's ids restored; nothing here polls a queue.
final class RoutedEndpoint: ConnectedEndpoint {
    let inner: any ConnectedEndpoint
    let peer: PeerID

    static let receiveBit: UInt64 = 1 << 31
    static let lowBits: UInt64 = receiveBit - 1

    private struct Mailbox {
        var sends: [WorkCompletion] = []
        var receives: [WorkCompletion] = []
        /// The engine's id of the last request posted on each queue, and whether its completion
        /// has come (RC completes in order, and after an error every request completes, flushed:
        /// once the last one's has come, nothing of this peer is left on the queues).
        var lastSend: UInt64 = 0
        var lastReceive: UInt64 = 0
        var sendDone = true
        var receiveDone = true
        var delivered = 0
    }

    private let box = Locked(Mailbox())

    init(_ inner: any ConnectedEndpoint, peer: PeerID) {
        self.inner = inner
        self.peer = peer
    }

    /// The id a request of the engine's `id` carries on the wire.
    func wire(_ id: UInt64, receive: Bool) -> UInt64 {
        UInt64(peer.value) << 32 | (receive ? Self.receiveBit : 0) | (id & Self.lowBits)
    }

    /// The peer a completion's work request id names.
    static func peer(of workRequestID: UInt64) -> PeerID { PeerID(UInt32(truncatingIfNeeded: workRequestID >> 32)) }

    /// Takes a completion the router found for this peer: the engine's id restored (the
    /// nearest id at or below the last posted one with the same low bits: fewer than 2^31
    /// requests of a queue are ever outstanding).
    func deliver(_ wc: WorkCompletion) {
        box.withLock { m in
            var wc = wc
            let receive = wc.workRequestID & Self.receiveBit != 0
            let last = receive ? m.lastReceive : m.lastSend
            let id = last &- ((last &- wc.workRequestID) & Self.lowBits)
            wc.workRequestID = id
            if receive {
                m.receives.append(wc)
                if id == m.lastReceive { m.receiveDone = true }
            } else {
                m.sends.append(wc)
                if id == m.lastSend { m.sendDone = true }
            }
            m.delivered += 1
        }
    }

    /// Whether the completion of the last request posted on each queue has come.
    var drained: Bool { box.withLock { $0.sendDone && $0.receiveDone } }

    /// Completions delivered so far.
    var delivered: Int { box.withLock { $0.delivered } }

    // MARK: ConnectedEndpoint

    var pd: ProtectionDomain { inner.pd }
    var sendQueueDepth: Int { inner.sendQueueDepth }
    var receiveQueueDepth: Int { inner.receiveQueueDepth }
    var sendCompletionQueue: any CompletionSource { inner.sendCompletionQueue }
    var receiveCompletionQueue: any CompletionSource { inner.receiveCompletionQueue }
    var maxInlineData: Int { inner.maxInlineData }
    var maxMessageSize: Int { inner.maxMessageSize }
    var isConnected: Bool { inner.isConnected }
    @discardableResult func processEvents() -> Bool { inner.processEvents() }
    var connectionEventDescriptor: Int32? { inner.connectionEventDescriptor }

    func postSend(_ request: SendRequest) throws(VerbsError) {
        var r = request
        r.id = wire(request.id, receive: false)
        let before = box.withLock { m in
            defer { m.lastSend = request.id; m.sendDone = false }
            return (m.lastSend, m.sendDone)
        }
        do {
            try inner.postSend(r)
        } catch {
            box.withLock { m in (m.lastSend, m.sendDone) = before }
            throw error
        }
    }

    func prepare(_ request: SendRequest) throws(VerbsError) -> any PreparedPost {
        RoutedPreparedPost(endpoint: self, post: try inner.prepare(request))
    }

    /// A prepared request's post, through the tagging (`RoutedPreparedPost`).
    func postPrepared(_ post: any PreparedPost, id: UInt64, signaled: Bool, immediate: UInt32?) throws(VerbsError) {
        let before = box.withLock { m in
            defer { m.lastSend = id; m.sendDone = false }
            return (m.lastSend, m.sendDone)
        }
        do {
            try post.post(id: wire(id, receive: false), signaled: signaled, immediate: immediate)
        } catch {
            box.withLock { m in (m.lastSend, m.sendDone) = before }
            throw error
        }
    }

    func postReceive(id: UInt64, segment: LocalSegment?) throws(VerbsError) {
        let before = box.withLock { m in
            defer { m.lastReceive = id; m.receiveDone = false }
            return (m.lastReceive, m.receiveDone)
        }
        do {
            try inner.postReceive(id: wire(id, receive: true), segment: segment)
        } catch {
            box.withLock { m in (m.lastReceive, m.receiveDone) = before }
            throw error
        }
    }

    func pollSendCompletions(max: Int) throws(VerbsError) -> [WorkCompletion] {
        box.withLock { m in
            let n = Swift.min(Swift.max(0, max), m.sends.count)
            defer { m.sends.removeFirst(n) }
            return Array(m.sends.prefix(n))
        }
    }

    func pollReceiveCompletions(max: Int) throws(VerbsError) -> [WorkCompletion] {
        box.withLock { m in
            let n = Swift.min(Swift.max(0, max), m.receives.count)
            defer { m.receives.removeFirst(n) }
            return Array(m.receives.prefix(n))
        }
    }

    /// The engine's progress loop fills the mailbox; a wait here would wait for itself.
    func waitSendCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion] {
        throw VerbsError.invalidArgument("a peer engine's endpoint is polled by its progress loop, not waited on")
    }

    func waitReceiveCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion] {
        throw VerbsError.invalidArgument("a peer engine's endpoint is polled by its progress loop, not waited on")
    }

    func abort() throws(VerbsError) { try inner.abort() }
    func disconnect(timeout: Duration) throws(VerbsError) { try inner.disconnect(timeout: timeout) }
}

/// A request prepared on a peer's endpoint: each post carries the peer's tag.
final class RoutedPreparedPost: PreparedPost {
    private let endpoint: RoutedEndpoint
    private let post: any PreparedPost

    init(endpoint: RoutedEndpoint, post: any PreparedPost) {
        self.endpoint = endpoint
        self.post = post
    }

    func post(id: UInt64, signaled: Bool, immediate: UInt32?) throws(VerbsError) {
        try endpoint.postPrepared(post, id: id, signaled: signaled, immediate: immediate)
    }
}
