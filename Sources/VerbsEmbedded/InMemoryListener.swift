#if canImport(Glibc)
import Glibc
#endif
import Sharing
import Verbs

/// A rendezvous of in-memory connections, as rdmacm's listen/connect/accept with private data:
/// `dial` hands a request (its private data) to whoever calls `accept`, and waits for the
/// answer or the refusal; each accepted connection is a fresh `InMemoryLink`, whose ends the
/// two sides get. A test reaches the links to inject faults (`links`), and can make the
/// listener unreachable for a while (`unreachable`), as a link that is down.
public final class InMemoryListener: Sendable {
    private struct Request {
        var id: Int
        var privateData: [UInt8]
        var link: InMemoryLink
        /// The dialer never completes the handshake (`dialHalfOpen`).
        var halfOpen = false
    }

    enum Outcome {
        case accepted([UInt8])
        case rejected([UInt8])
    }

    private struct State {
        var nextID = 0
        var waiting: [Request] = []
        var outcomes: [Int: Outcome] = [:]
        var links: [InMemoryLink] = []
        var unreachable = false
    }

    private let state = Locked(State())
    private let sendQueueDepth: Int
    private let receiveQueueDepth: Int

    public init(sendQueueDepth: Int = 128, receiveQueueDepth: Int = 128) {
        self.sendQueueDepth = sendQueueDepth
        self.receiveQueueDepth = receiveQueueDepth
    }

    /// Every link accepted so far, oldest first (the last is the current connection).
    public var links: [InMemoryLink] { state.withLock { $0.links } }

    /// While set, `dial` fails at once as an unreachable peer does.
    public var unreachable: Bool {
        get { state.withLock { $0.unreachable } }
        set { state.withLock { $0.unreachable = newValue } }
    }

    /// Connects with `privateData`; returns this side's endpoint and the acceptor's answer.
    /// A refusal is `.connection(.rejected)` carrying the reason; no acceptor within `timeout`
    /// is `.timedOut`.
    public func dial(privateData: [UInt8], timeout: Duration) throws(VerbsError) -> (endpoint: InMemoryEndpoint, answer: [UInt8]) {
        try dial(timeout: timeout) { _ in privateData }
    }

    /// Connects as `dial(privateData:timeout:)`, with the private data `prepare` returns given
    /// this side's endpoint before the request goes out: as with rdmacm, a dialer can register
    /// memory in `endpoint.pd` first and name it in its request. The endpoint is connected only
    /// once this returned it.
    public func dial(timeout: Duration, prepare: (InMemoryEndpoint) -> [UInt8]) throws(VerbsError)
        -> (endpoint: InMemoryEndpoint, answer: [UInt8]) {
        let link = InMemoryLink(sendQueueDepth: sendQueueDepth, receiveQueueDepth: receiveQueueDepth)
        let privateData = prepare(link.a)
        let id: Int? = state.withLock { s in
            guard !s.unreachable else { return nil }
            s.nextID += 1
            s.waiting.append(Request(id: s.nextID, privateData: privateData, link: link))
            return s.nextID
        }
        guard let id else {
            throw .connection(ConnectionFailure(reason: .unreachable, event: "in-memory dial", status: -EHOSTUNREACH, privateData: []))
        }
        let end = ContinuousClock.now.advanced(by: timeout)
        while true {
            let outcome: Outcome? = state.withLock { s in
                if let o = s.outcomes.removeValue(forKey: id) { return o }
                if ContinuousClock.now >= end { s.waiting.removeAll { $0.id == id } }
                return nil
            }
            switch outcome {
            case let .accepted(answer)?: return (link.a, answer)
            case let .rejected(reason)?:
                throw .connection(ConnectionFailure(reason: .rejected, event: "in-memory dial", status: 28, privateData: reason))
            case nil:
                if ContinuousClock.now >= end { throw .timedOut(operation: "connecting in memory", after: timeout) }
                usleep(100)
            }
        }
    }

    /// Sends a connection request with `privateData` and never completes the handshake: as a
    /// client that sends its connect and then goes quiet. An acceptor's `accept` of it times out.
    public func dialHalfOpen(privateData: [UInt8]) {
        let link = InMemoryLink(sendQueueDepth: sendQueueDepth, receiveQueueDepth: receiveQueueDepth)
        state.withLock { s in
            s.nextID += 1
            s.waiting.append(Request(id: s.nextID, privateData: privateData, link: link, halfOpen: true))
        }
    }

    /// Takes the oldest request within `wait` without answering it (nil when none came): the
    /// acceptor registers its memory in the request's `endpoint.pd` first, then answers it with
    /// `accept` or `reject`, as with rdmacm's connection request.
    public func take(wait: Duration) -> InMemoryConnectionRequest? {
        let end = ContinuousClock.now.advanced(by: wait)
        while true {
            let request: Request? = state.withLock { s in s.waiting.isEmpty ? nil : s.waiting.removeFirst() }
            if let request {
                return InMemoryConnectionRequest(listener: self, id: request.id, privateData: request.privateData,
                                                 link: request.link, halfOpen: request.halfOpen)
            }
            if ContinuousClock.now >= end { return nil }
            usleep(100)
        }
    }

    /// Settles request `id` for its dialer; an accepted one's link joins `links`.
    func settle(_ id: Int, _ outcome: Outcome, link: InMemoryLink) {
        state.withLock { s in
            s.outcomes[id] = outcome
            if case .accepted = outcome { s.links.append(link) }
        }
    }

    /// Takes the oldest request within `wait`; `answer` returns the private data to accept it
    /// with, or nil and a reason to refuse it. Returns the accepting side's endpoint.
    public func accept(wait: Duration, answer: ([UInt8]) -> (accept: [UInt8]?, reason: [UInt8])) -> InMemoryEndpoint? {
        let end = ContinuousClock.now.advanced(by: wait)
        while true {
            let request: Request? = state.withLock { s in s.waiting.isEmpty ? nil : s.waiting.removeFirst() }
            if let request {
                let decision = answer(request.privateData)
                return state.withLock { s in
                    if let data = decision.accept {
                        s.outcomes[request.id] = .accepted(data)
                        s.links.append(request.link)
                        return request.link.b
                    }
                    s.outcomes[request.id] = .rejected(decision.reason)
                    return nil
                }
            }
            if ContinuousClock.now >= end { return nil }
            usleep(100)
        }
    }
}
