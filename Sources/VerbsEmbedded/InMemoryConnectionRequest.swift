#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Verbs

/// A connection request taken off an `InMemoryListener` (`take`), answered once: as rdmacm's
/// `ConnectionRequest`, the acceptor registers its memory in `endpoint.pd`, then accepts with
/// its answer as private data, or rejects with a reason. A request dropped unanswered leaves
/// its dialer to time out.
public final class InMemoryConnectionRequest: Sendable {
    private let listener: InMemoryListener
    private let id: Int
    private let link: InMemoryLink
    private let halfOpen: Bool
    private let answered = Atomic<Bool>(false)
    /// The dialer's private data.
    public let privateData: [UInt8]

    init(listener: InMemoryListener, id: Int, privateData: [UInt8], link: InMemoryLink, halfOpen: Bool) {
        self.listener = listener
        self.id = id
        self.privateData = privateData
        self.link = link
        self.halfOpen = halfOpen
    }

    /// The accepting side's endpoint: register memory in its `pd` before `accept`. It is
    /// connected only once `accept` returned it.
    public var endpoint: InMemoryEndpoint { link.b }

    /// Accepts with `answer` as private data and returns the endpoint once the dialer has the
    /// answer; a dialer that never completes the handshake (`dialHalfOpen`) makes it throw
    /// `.timedOut` after `timeout`. Answering twice is `.invalidArgument`.
    public func accept(answer: [UInt8], timeout: Duration) throws(VerbsError) -> InMemoryEndpoint {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else {
            throw .invalidArgument("the connection request was answered already")
        }
        if halfOpen {
            let end = ContinuousClock.now.advanced(by: timeout)
            while ContinuousClock.now < end { usleep(1000) }
            throw .timedOut(operation: "accepting an in-memory connection", after: timeout)
        }
        listener.settle(id, .accepted(answer), link: link)
        return link.b
    }

    /// Refuses the request with `reason` as the reject's private data (once; later calls do nothing).
    public func reject(reason: [UInt8]) {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return }
        listener.settle(id, .rejected(reason), link: link)
    }
}
