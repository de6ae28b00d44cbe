import Verbs

/// A fault an in-memory link injects on demand, as a real fabric would produce it.
public enum InMemoryFault: Sendable, Equatable {
    /// The endpoint's next send-queue request completes with this status (remote access
    /// error, retry exceeded, RNR retry exceeded, ...); the endpoint then goes to the error
    /// state and everything after it completes as `.flushed`, as RC does.
    case failNextSend(WorkCompletionStatus)
    /// The endpoint goes to the error state now: everything outstanding completes as `.flushed`.
    case flush
    /// The link goes down: nothing moves any more, and each end sees the disconnect (and
    /// flushes) the next time it reads its connection events.
    case disconnect
}

/// What an in-memory link still held when it was finished: the work a test left behind.
public struct InMemoryLeftovers: Sendable, Equatable, CustomStringConvertible {
    public struct Side: Sendable, Equatable {
        /// Send requests posted and not yet executed (waiting for a receive, held, or linked down).
        public var pendingSends = 0
        /// Send requests whose queue slot no polled completion has freed yet.
        public var unretiredSends = 0
        /// Completions generated and never polled.
        public var unpolledSendCompletions = 0
        public var unpolledReceiveCompletions = 0
        /// Receives posted and not consumed.
        public var postedReceives = 0
        /// Memory regions of the endpoint's protection domain still registered.
        public var registeredRegions = 0

        public var isEmpty: Bool { self == Side() }
    }

    public var a: Side
    public var b: Side

    public var isEmpty: Bool { a.isEmpty && b.isEmpty }

    public var description: String {
        func text(_ s: Side) -> String {
            "\(s.pendingSends) pending sends, \(s.unretiredSends) unretired, \(s.unpolledSendCompletions)+\(s.unpolledReceiveCompletions) "
                + "unpolled completions, \(s.postedReceives) posted receives, \(s.registeredRegions) registered regions"
        }
        return isEmpty ? "nothing left" : "a: \(text(a)); b: \(text(b))"
    }
}
