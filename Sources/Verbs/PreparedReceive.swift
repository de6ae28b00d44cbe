import CVerbs

/// A receive checked and built once, then posted again and again as the same work request
/// (`ibv_post_recv` copies the request into the queue, so one request can go out many times):
/// the repost of a latency loop costs the provider's call and little else. Checked as
/// `QueuePair.postReceive` checks: the segment's region must allow local write.
public final class PreparedReceive {
    public let queuePair: QueuePair
    /// Kept so the segment's memory region outlives every post.
    public let segment: LocalSegment?
    @usableFromInline let rawQP: UnsafeMutablePointer<ibv_qp>
    @usableFromInline let wr: UnsafeMutablePointer<ibv_recv_wr>
    private let sge: UnsafeMutablePointer<ibv_sge>
    /// Where `ibv_post_recv` says which request it refused (see `PreparedSend.bad`).
    @usableFromInline let bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_recv_wr>?>

    /// Work request `id` receiving into `segment` (nil: zero-length messages and
    /// write-with-immediate notifications).
    public init(queuePair: QueuePair, id: UInt64, segment: LocalSegment?) throws(VerbsError) {
        try checkReceive(segment)
        self.queuePair = queuePair
        self.segment = segment
        rawQP = queuePair.raw
        sge = .allocate(capacity: 1)
        sge.initialize(to: segment?.sge ?? ibv_sge())
        wr = .allocate(capacity: 1)
        wr.initialize(to: ibv_recv_wr(wr_id: id, next: nil, sg_list: segment == nil ? nil : sge, num_sge: segment == nil ? 0 : 1))
        bad = .allocate(capacity: 1)
        bad.initialize(to: nil)
    }

    deinit {
        wr.deallocate()
        sge.deallocate()
        bad.deallocate()
    }

    /// Posts the receive again.
    @inlinable @inline(__always)
    public func post() throws(VerbsError) {
        let rc = ibv_post_recv(rawQP, wr, bad)
        if rc != 0 { throw Self.failure(rc) }
    }

    @usableFromInline
    static func failure(_ rc: Int32) -> VerbsError { VerbsError.fromErrno("ibv_post_recv", rc > 0 ? rc : -rc) }
}

/// The request is rewritten by nobody after init, but its pointers are handed to C on every
/// post; like `PreparedSend`, it stays with one thread at a time.
@available(*, unavailable)
extension PreparedReceive: Sendable {}
