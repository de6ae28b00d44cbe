import CVerbs

/// A send request checked and built once, then posted many times (`ibv_post_send` on a work
/// request kept in memory of its own). A latency loop pays per iteration for the post and
/// nothing else: `postSend`'s checks, the request's enum and the segment's reference count
/// stay out of it. Not for use from several threads at once (each post rewrites the request).
public final class PreparedSend {
    public let queuePair: QueuePair
    /// Kept so the segment's memory region outlives every post.
    public let request: SendRequest
    @usableFromInline let rawQP: UnsafeMutablePointer<ibv_qp>
    @usableFromInline let wr: UnsafeMutablePointer<ibv_send_wr>
    private let sge: UnsafeMutablePointer<ibv_sge>
    @usableFromInline let flags: UInt32
    /// Where `ibv_post_send` says which request it refused: kept with the request, so a post
    /// needs no address-taken local (and no stack-protector check) of its own.
    @usableFromInline let bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_send_wr>?>
    private let verb: String

    /// Checks `request` as `QueuePair.postSend` would; its `id` and `signaled` are chosen per post.
    public init(queuePair: QueuePair, request: SendRequest) throws(VerbsError) {
        var built = try queuePair.workRequest(for: request)
        self.queuePair = queuePair
        self.request = request
        rawQP = queuePair.raw
        sge = .allocate(capacity: 1)
        sge.initialize(to: request.segment?.sge ?? ibv_sge())
        built.sg_list = request.segment == nil ? nil : sge
        built.num_sge = request.segment == nil ? 0 : 1
        flags = built.send_flags & ~IBV_SEND_SIGNALED.rawValue
        wr = .allocate(capacity: 1)
        wr.initialize(to: built)
        bad = .allocate(capacity: 1)
        bad.initialize(to: nil)
        verb = request.operation.name
    }

    deinit {
        wr.deallocate()
        sge.deallocate()
        bad.deallocate()
    }

    /// Posts the request again (`ibv_post_send`) as work request `id`, with a completion when
    /// `signaled`. `immediate` replaces the immediate data of a write or send with immediate.
    /// Inlined: a latency loop's post is these few stores and the provider's call; the failure's
    /// message is built out of line. Called as `PreparedSend`'s (not through `PreparedPost`,
    /// whose witness the compiler then kept in the loop specialized for `PreparedSend`).
    @inlinable @inline(__always)
    public func post(id: UInt64, signaled: Bool, immediate: UInt32? = nil) throws(VerbsError) {
        wr.pointee.wr_id = id
        wr.pointee.send_flags = signaled ? flags | IBV_SEND_SIGNALED.rawValue : flags
        if let immediate { wr.pointee.imm_data = immediate.bigEndian }
        let rc = ibv_post_send(rawQP, wr, bad)
        if rc != 0 { throw failure(rc) }
    }

    @usableFromInline
    func failure(_ rc: Int32) -> VerbsError { VerbsError.fromErrno("ibv_post_send(\(verb))", rc > 0 ? rc : -rc) }
}

/// Each post rewrites the request in place, so a PreparedSend stays with one thread at a time.
@available(*, unavailable)
extension PreparedSend: Sendable {}
