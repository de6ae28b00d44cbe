#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// Sizes of a queue pair's queues (`struct ibv_qp_cap`).
public struct QueuePairCapabilities: Sendable, Equatable {
    public var maxSendRequests: UInt32
    public var maxReceiveRequests: UInt32
    public var maxSendSGE: UInt32
    public var maxReceiveSGE: UInt32
    public var maxInlineData: UInt32
    /// When the device refuses `maxInlineData` (EINVAL: drivers cap inline data differently and
    /// no query reports the cap), create the QP with this much instead. The QP's `capabilities`
    /// say what was granted.
    public var fallbackInlineData: UInt32?

    public init(maxSendRequests: UInt32 = 128, maxReceiveRequests: UInt32 = 128, maxSendSGE: UInt32 = 1,
                maxReceiveSGE: UInt32 = 1, maxInlineData: UInt32 = 0, fallbackInlineData: UInt32? = nil) {
        self.maxSendRequests = maxSendRequests
        self.maxReceiveRequests = maxReceiveRequests
        self.maxSendSGE = maxSendSGE
        self.maxReceiveSGE = maxReceiveSGE
        self.maxInlineData = maxInlineData
        self.fallbackInlineData = fallbackInlineData
    }

    var raw: ibv_qp_cap {
        ibv_qp_cap(max_send_wr: maxSendRequests, max_recv_wr: maxReceiveRequests, max_send_sge: maxSendSGE,
                   max_recv_sge: maxReceiveSGE, max_inline_data: maxInlineData)
    }
}

/// `enum ibv_qp_state`.
public enum QueuePairState: String, Sendable, Equatable {
    case reset, initialized, readyToReceive, readyToSend, sendQueueDrain, sendQueueError, error, unknown

    init(_ raw: ibv_qp_state) {
        switch raw {
        case IBV_QPS_RESET: self = .reset
        case IBV_QPS_INIT: self = .initialized
        case IBV_QPS_RTR: self = .readyToReceive
        case IBV_QPS_RTS: self = .readyToSend
        case IBV_QPS_SQD: self = .sendQueueDrain
        case IBV_QPS_SQE: self = .sendQueueError
        case IBV_QPS_ERR: self = .error
        default: self = .unknown
        }
    }
}

/// What one side tells the other to connect an RC queue pair by hand (without rdmacm).
public struct QueuePairEndpoint: Sendable, Equatable, Codable {
    public var queuePairNumber: UInt32
    public var packetSequenceNumber: UInt32
    public var gid: GID
    public var lid: UInt16

    public init(queuePairNumber: UInt32, packetSequenceNumber: UInt32, gid: GID, lid: UInt16 = 0) {
        self.queuePairNumber = queuePairNumber
        self.packetSequenceNumber = packetSequenceNumber & 0xFF_FFFF
        self.gid = gid
        self.lid = lid
    }
}

/// A reliable-connected queue pair (`ibv_create_qp` or, for rdmacm connections,
/// `rdma_create_qp`). It keeps its completion queues and protection domain alive.
public final class QueuePair: Sendable {
    private let handle: CHandle<ibv_qp>
    public let pd: ProtectionDomain
    public let sendCQ: CompletionQueue
    public let receiveCQ: CompletionQueue
    public let capabilities: QueuePairCapabilities
    /// rdmacm's id when the QP was made on one; it must outlive the QP.
    let cmID: CMID?

    /// Creates an RC queue pair in RESET (`ibv_create_qp`); move it through
    /// `modifyToInit`, `modifyToReadyToReceive` and `modifyToReadyToSend`.
    public convenience init(pd: ProtectionDomain, sendCQ: CompletionQueue, receiveCQ: CompletionQueue,
                            capabilities: QueuePairCapabilities = .init()) throws(VerbsError) {
        try self.init(pd: pd, sendCQ: sendCQ, receiveCQ: receiveCQ, capabilities: capabilities, cmID: nil)
    }

    init(pd: ProtectionDomain, sendCQ: CompletionQueue, receiveCQ: CompletionQueue,
         capabilities: QueuePairCapabilities, cmID: CMID?) throws(VerbsError) {
        for cq in [sendCQ, receiveCQ] where !cq.context.isSameDevice(as: pd.context) {
            throw VerbsError.invalidArgument("a completion queue belongs to \(cq.context.name), the protection domain to \(pd.context.name)")
        }
        var attr = ibv_qp_init_attr()
        attr.send_cq = sendCQ.raw
        attr.recv_cq = receiveCQ.raw
        attr.cap = capabilities.raw
        attr.qp_type = IBV_QPT_RC
        attr.sq_sig_all = 0
        if let cmID, !pd.context.isSameDevice(as: try Context.forCMID(cmID.raw.pointee.verbs)) {
            throw VerbsError.invalidArgument(
                "the protection domain is on \(pd.context.name), but the connection runs over another device")
        }
        do {
            handle = CHandle(try Self.create(&attr, pd: pd, cmID: cmID))
        } catch .system(_, EINVAL) where capabilities.fallbackInlineData.map({ $0 < capabilities.maxInlineData }) ?? false {
            attr.cap = capabilities.raw
            attr.cap.max_inline_data = capabilities.fallbackInlineData!
            handle = CHandle(try Self.create(&attr, pd: pd, cmID: cmID))
        }
        self.pd = pd
        self.sendCQ = sendCQ
        self.receiveCQ = receiveCQ
        self.cmID = cmID
        // The device may round the sizes up; report what it granted.
        self.capabilities = QueuePairCapabilities(
            maxSendRequests: attr.cap.max_send_wr, maxReceiveRequests: attr.cap.max_recv_wr,
            maxSendSGE: attr.cap.max_send_sge, maxReceiveSGE: attr.cap.max_recv_sge,
            maxInlineData: attr.cap.max_inline_data)
    }

    private static func create(_ attr: inout ibv_qp_init_attr, pd: ProtectionDomain, cmID: CMID?) throws(VerbsError)
        -> UnsafeMutablePointer<ibv_qp> {
        if let cmID {
            try checkSetsErrno("rdma_create_qp", rdma_create_qp(cmID.raw, try pd.raw("rdma_create_qp"), &attr))
            return cmID.raw.pointee.qp
        }
        return try checkPointer("ibv_create_qp", ibv_create_qp(try pd.raw("ibv_create_qp"), &attr))
    }

    deinit {
        if let cmID { rdma_destroy_qp(cmID.raw) } else { ibv_destroy_qp(raw) }
    }

    var raw: UnsafeMutablePointer<ibv_qp> { handle.pointer }

    public var number: UInt32 { raw.pointee.qp_num }

    /// The current state (`ibv_query_qp`).
    public func state() throws(VerbsError) -> QueuePairState {
        var attr = ibv_qp_attr()
        var initAttr = ibv_qp_init_attr()
        try checkReturnedErrno("ibv_query_qp", ibv_query_qp(raw, &attr, Int32(IBV_QP_STATE.rawValue), &initAttr))
        return QueuePairState(attr.qp_state)
    }

    private func modify(_ attr: inout ibv_qp_attr, _ mask: ibv_qp_attr_mask, _ step: String) throws(VerbsError) {
        let rc = ibv_modify_qp(raw, &attr, Int32(bitPattern: mask.rawValue))
        if rc != 0 {
            let code = rc > 0 ? rc : -rc
            throw VerbsError.fromErrno("ibv_modify_qp(\(step))", code)
        }
    }

    /// RESET -> INIT (`ibv_modify_qp`), granting peers `access` to this QP's traffic.
    public func modifyToInit(port: UInt8, access: AccessFlags, pkeyIndex: UInt16 = 0) throws(VerbsError) {
        var attr = ibv_qp_attr()
        attr.qp_state = IBV_QPS_INIT
        attr.port_num = port
        attr.pkey_index = pkeyIndex
        attr.qp_access_flags = UInt32(bitPattern: access.rawValue)
        try modify(&attr, ibv_qp_attr_mask(IBV_QP_STATE.rawValue | IBV_QP_PKEY_INDEX.rawValue | IBV_QP_PORT.rawValue
            | IBV_QP_ACCESS_FLAGS.rawValue), "INIT")
    }

    /// INIT -> RTR (`ibv_modify_qp`): addresses the remote QP through its GID (RoCE, or IB with GRH).
    public func modifyToReadyToReceive(remote: QueuePairEndpoint, port: UInt8, gidIndex: Int, mtu: MTU,
                                       maxDestinationReadAtomic: UInt8 = 16, minRNRTimer: UInt8 = 12) throws(VerbsError) {
        var attr = ibv_qp_attr()
        attr.qp_state = IBV_QPS_RTR
        attr.path_mtu = mtu.raw
        attr.dest_qp_num = remote.queuePairNumber
        attr.rq_psn = remote.packetSequenceNumber
        attr.max_dest_rd_atomic = maxDestinationReadAtomic
        attr.min_rnr_timer = minRNRTimer
        attr.ah_attr.is_global = 1
        attr.ah_attr.grh.dgid = remote.gid.raw
        attr.ah_attr.grh.sgid_index = UInt8(clamping: gidIndex)
        attr.ah_attr.grh.hop_limit = 64
        attr.ah_attr.dlid = remote.lid
        attr.ah_attr.port_num = port
        try modify(&attr, ibv_qp_attr_mask(IBV_QP_STATE.rawValue | IBV_QP_AV.rawValue | IBV_QP_PATH_MTU.rawValue
            | IBV_QP_DEST_QPN.rawValue | IBV_QP_RQ_PSN.rawValue | IBV_QP_MAX_DEST_RD_ATOMIC.rawValue
            | IBV_QP_MIN_RNR_TIMER.rawValue), "RTR")
    }

    /// RTR -> RTS (`ibv_modify_qp`). `timeout` is the IB exponent: 4.096 us * 2^timeout per retry.
    public func modifyToReadyToSend(packetSequenceNumber: UInt32, timeout: UInt8 = 14, retryCount: UInt8 = 7,
                                    rnrRetry: UInt8 = 7, maxReadAtomic: UInt8 = 16) throws(VerbsError) {
        var attr = ibv_qp_attr()
        attr.qp_state = IBV_QPS_RTS
        attr.sq_psn = packetSequenceNumber & 0xFF_FFFF
        attr.timeout = timeout
        attr.retry_cnt = retryCount
        attr.rnr_retry = rnrRetry
        attr.max_rd_atomic = maxReadAtomic
        try modify(&attr, ibv_qp_attr_mask(IBV_QP_STATE.rawValue | IBV_QP_SQ_PSN.rawValue | IBV_QP_TIMEOUT.rawValue
            | IBV_QP_RETRY_CNT.rawValue | IBV_QP_RNR_RETRY.rawValue | IBV_QP_MAX_QP_RD_ATOMIC.rawValue), "RTS")
    }

    /// Any state -> ERR (`ibv_modify_qp`): outstanding work requests complete as flushed.
    public func modifyToError() throws(VerbsError) {
        var attr = ibv_qp_attr()
        attr.qp_state = IBV_QPS_ERR
        try modify(&attr, IBV_QP_STATE, "ERR")
    }

    /// Any state -> RESET (`ibv_modify_qp`).
    public func modifyToReset() throws(VerbsError) {
        var attr = ibv_qp_attr()
        attr.qp_state = IBV_QPS_RESET
        try modify(&attr, IBV_QP_STATE, "RESET")
    }

    /// Posts one send-queue work request (`ibv_post_send`). Bounds and access are checked
    /// here, so a bad request is an error before the device sees it.
    public func postSend(_ request: SendRequest) throws(VerbsError) {
        var wr = try workRequest(for: request)
        try post(&wr, segment: request.segment, verb: request.operation.name)
    }

    /// Checks `request` against this QP and builds its `ibv_send_wr` (without the gather list).
    func workRequest(for request: SendRequest) throws(VerbsError) -> ibv_send_wr {
        var wr = ibv_send_wr()
        wr.wr_id = request.id
        var flags: UInt32 = 0
        if request.signaled { flags |= IBV_SEND_SIGNALED.rawValue }
        if request.inline { flags |= IBV_SEND_INLINE.rawValue }
        if request.fence { flags |= IBV_SEND_FENCE.rawValue }
        if request.solicited { flags |= IBV_SEND_SOLICITED.rawValue }
        wr.send_flags = flags
        try request.check(maxInlineData: Int(capabilities.maxInlineData))
        switch request.operation {
        case .send:
            wr.opcode = IBV_WR_SEND
        case let .sendWithImmediate(imm):
            wr.opcode = IBV_WR_SEND_WITH_IMM
            wr.imm_data = imm.bigEndian
        case let .write(remote, offset):
            wr.opcode = IBV_WR_RDMA_WRITE
            wr.wr.rdma.remote_addr = remote.address &+ offset
            wr.wr.rdma.rkey = remote.rkey
        case let .writeWithImmediate(remote, offset, imm):
            wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM
            wr.wr.rdma.remote_addr = remote.address &+ offset
            wr.wr.rdma.rkey = remote.rkey
            wr.imm_data = imm.bigEndian
        case let .read(remote, offset):
            wr.opcode = IBV_WR_RDMA_READ
            wr.wr.rdma.remote_addr = remote.address &+ offset
            wr.wr.rdma.rkey = remote.rkey
        }
        return wr
    }

    private func post(_ wr: inout ibv_send_wr, segment: LocalSegment?, verb: String) throws(VerbsError) {
        var sge = segment?.sge ?? ibv_sge()
        let rc = withUnsafeMutablePointer(to: &sge) { sgePointer in
            wr.sg_list = sgePointer
            wr.num_sge = segment == nil ? 0 : 1
            var bad: UnsafeMutablePointer<ibv_send_wr>?
            return ibv_post_send(raw, &wr, &bad)
        }
        wr.sg_list = nil
        if rc != 0 { throw VerbsError.fromErrno("ibv_post_send(\(verb))", rc > 0 ? rc : -rc) }
    }

    /// Posts one receive (`ibv_post_recv`); `segment` nil receives zero-length messages
    /// and write-with-immediate notifications.
    public func postReceive(id: UInt64, segment: LocalSegment?) throws(VerbsError) {
        try checkReceive(segment)
        var sge = segment?.sge ?? ibv_sge()
        let rc = withUnsafeMutablePointer(to: &sge) { sgePointer in
            var wr = ibv_recv_wr(wr_id: id, next: nil, sg_list: sgePointer, num_sge: segment == nil ? 0 : 1)
            var bad: UnsafeMutablePointer<ibv_recv_wr>?
            return ibv_post_recv(raw, &wr, &bad)
        }
        if rc != 0 { throw VerbsError.fromErrno("ibv_post_recv", rc > 0 ? rc : -rc) }
    }
}
