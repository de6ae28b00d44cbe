#if canImport(Glibc)
import Glibc
#endif
import Sharing
import Verbs

/// The in-memory twin of a completion queue: one or several in-memory endpoints' send or receive
/// queues complete into it (a shared completion queue when several do), in each queue's own RC
/// order; how completions of different endpoints interleave is the twin's choice, as it is the
/// NIC's. Every endpoint has a private one of each unless `InMemoryLink` is given shared ones.
///
/// It holds at most `capacity` completions: a poll that finds more outstanding than that has
/// overrun it, as a CQ whose reader reserved too little does, and it fails from then on (a
/// verbs CQ overrun is an asynchronous error that leaves the CQ unusable).
public final class InMemoryCompletionQueue: CompletionSource {
    public let capacity: Int
    public var channel: CompletionChannel? { nil }

    private struct Attached {
        weak var endpoint: InMemoryEndpoint?
        let queue: InMemoryLink.Queue
    }

    private struct State {
        var attached: [Attached] = []
        var next = 0
        var overrun = false
        var most = 0
    }

    private let state = Locked(State())

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// `endpoint`'s `queue` completes into this one from now on.
    func attach(_ endpoint: InMemoryEndpoint, _ queue: InMemoryLink.Queue) {
        state.withLock { $0.attached.append(Attached(endpoint: endpoint, queue: queue)) }
    }

    /// Takes up to `max` of what the endpoints' queues have completed, each queue's in its order,
    /// starting with another endpoint each time. A completion stays with its endpoint until a
    /// poll takes it (so a send-queue slot frees when its completion is polled, as on a NIC).
    public func poll(max: Int) throws(VerbsError) -> [WorkCompletion] {
        try state.withLock { (s) throws(VerbsError) -> [WorkCompletion] in
            if s.overrun { throw VerbsError.system(verb: "ibv_poll_cq (overrun)", errno: EOVERFLOW) }
            s.attached.removeAll { $0.endpoint == nil }
            let outstanding = s.attached.reduce(0) { n, a in n + (a.endpoint?.completionsHeld(a.queue) ?? 0) }
            s.most = Swift.max(s.most, outstanding)
            if outstanding > capacity {
                s.overrun = true
                throw VerbsError.system(verb: "ibv_poll_cq (\(outstanding) completions in a queue of \(capacity))", errno: EOVERFLOW)
            }
            var out: [WorkCompletion] = []
            let n = s.attached.count
            for i in 0..<n where out.count < max {
                let a = s.attached[(s.next + i) % n]
                guard let e = a.endpoint else { continue }
                out += a.queue == .send ? e.takeSendCompletions(max: max - out.count) : e.takeReceiveCompletions(max: max - out.count)
            }
            if n > 0 { s.next = (s.next + 1) % n }
            return out
        }
    }

    /// The twin has no channel: nothing to arm.
    public func requestNotification(solicitedOnly: Bool) throws(VerbsError) {}

    /// Whether more completions were outstanding at once than the queue holds.
    public var overrun: Bool { state.withLock { $0.overrun } }

    /// The most completions outstanding in it at once, as its polls found them.
    public var mostHeld: Int { state.withLock { $0.most } }

    /// Endpoints completing into it and still alive.
    public var endpoints: Int { state.withLock { s in s.attached.filter { $0.endpoint != nil }.count } }
}
