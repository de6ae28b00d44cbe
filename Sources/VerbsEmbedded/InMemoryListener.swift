#if canImport(Glibc)
import Glibc
#endif
import Synchronization
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
    }

    private enum Outcome {
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

    private let state = Mutex(State())
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
        let link = InMemoryLink(sendQueueDepth: sendQueueDepth, receiveQueueDepth: receiveQueueDepth)
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
