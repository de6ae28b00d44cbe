import CVerbs

/// What one poll for one completion found, for a loop that only needs to know whether its
/// request succeeded: a success carries nothing (no `WorkCompletion` is built for it), a
/// failure carries the whole completion for its error.
public enum CompletionPoll: Sendable, Equatable {
    /// The queue was empty.
    case empty
    /// One completion, with status success.
    case success
    /// One completion that failed.
    case failure(WorkCompletion)
}

extension CompletionQueue {
    /// Takes at most one completion off the queue (`ibv_poll_cq` with one entry), without
    /// waiting or allocating: `pollOne` for a loop that needs only the status.
    public func pollOneStatus() throws(VerbsError) -> CompletionPoll {
        var wc = ibv_wc()
        let n = ibv_poll_cq(raw, 1, &wc)
        if n < 0 { throw VerbsError.system(verb: "ibv_poll_cq", errno: -n) }
        if n == 0 { return .empty }
        return wc.status == IBV_WC_SUCCESS ? .success : .failure(WorkCompletion(wc))
    }
}
