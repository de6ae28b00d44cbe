/// A completion queue as a poller sees it: what `CompletionQueue` (verbs) and VerbsEmbedded's
/// `InMemoryCompletionQueue` both are. Several endpoints' queues may complete into one source
/// (a shared completion queue); its reader routes each completion by its work request id, so a
/// source has one reader (an engine's progress loop), never one per endpoint.
public protocol CompletionSource: AnyObject, Sendable {
    /// Completions the queue holds at once; more outstanding than this overruns it.
    var capacity: Int { get }
    /// The channel an armed queue signals, if it has one.
    var channel: CompletionChannel? { get }
    /// Takes up to `max` completions that are there, without waiting.
    func poll(max: Int) throws(VerbsError) -> [WorkCompletion]
    /// Arms the queue to signal its channel on the next completion.
    func requestNotification(solicitedOnly: Bool) throws(VerbsError)
}

extension CompletionQueue: CompletionSource {}
