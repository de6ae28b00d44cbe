import CVerbs

/// `enum ibv_wc_status`, with the library's own text.
public struct WorkCompletionStatus: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let success = Self(rawValue: IBV_WC_SUCCESS.rawValue)
    public static let localLengthError = Self(rawValue: IBV_WC_LOC_LEN_ERR.rawValue)
    public static let localProtectionError = Self(rawValue: IBV_WC_LOC_PROT_ERR.rawValue)
    public static let flushed = Self(rawValue: IBV_WC_WR_FLUSH_ERR.rawValue)
    public static let remoteAccessError = Self(rawValue: IBV_WC_REM_ACCESS_ERR.rawValue)
    public static let remoteInvalidRequest = Self(rawValue: IBV_WC_REM_INV_REQ_ERR.rawValue)
    public static let remoteOperationError = Self(rawValue: IBV_WC_REM_OP_ERR.rawValue)
    public static let retryExceeded = Self(rawValue: IBV_WC_RETRY_EXC_ERR.rawValue)
    public static let rnrRetryExceeded = Self(rawValue: IBV_WC_RNR_RETRY_EXC_ERR.rawValue)

    /// `ibv_wc_status_str`.
    public var description: String { String(cString: ibv_wc_status_str(ibv_wc_status(rawValue))) }
}

/// `enum ibv_wc_opcode`.
public enum WorkCompletionOpcode: String, Sendable, Equatable {
    case send, rdmaWrite = "RDMA write", rdmaRead = "RDMA read", compareSwap, fetchAdd, bindMW
    case localInvalidate, receive, receiveWithImmediate = "receive with immediate"

    init?(_ raw: ibv_wc_opcode) {
        switch raw {
        case IBV_WC_SEND: self = .send
        case IBV_WC_RDMA_WRITE: self = .rdmaWrite
        case IBV_WC_RDMA_READ: self = .rdmaRead
        case IBV_WC_COMP_SWAP: self = .compareSwap
        case IBV_WC_FETCH_ADD: self = .fetchAdd
        case IBV_WC_BIND_MW: self = .bindMW
        case IBV_WC_LOCAL_INV: self = .localInvalidate
        case IBV_WC_RECV: self = .receive
        case IBV_WC_RECV_RDMA_WITH_IMM: self = .receiveWithImmediate
        default: return nil
        }
    }
}

/// One completion (`struct ibv_wc`).
public struct WorkCompletion: Sendable, Equatable {
    public var workRequestID: UInt64
    public var status: WorkCompletionStatus
    /// Only meaningful when `status` is success (the verbs spec leaves it undefined otherwise).
    public var opcode: WorkCompletionOpcode?
    public var byteCount: UInt32
    /// Immediate data in host order, when the completion carries any.
    public var immediate: UInt32?
    public var queuePairNumber: UInt32
    public var vendorError: UInt32

    init(_ wc: ibv_wc) {
        workRequestID = wc.wr_id
        status = WorkCompletionStatus(rawValue: wc.status.rawValue)
        opcode = wc.status == IBV_WC_SUCCESS ? WorkCompletionOpcode(wc.opcode) : nil
        byteCount = wc.byte_len
        immediate = (wc.wc_flags & UInt32(IBV_WC_WITH_IMM.rawValue)) != 0 ? UInt32(bigEndian: wc.imm_data) : nil
        queuePairNumber = wc.qp_num
        vendorError = wc.vendor_err
    }

    /// A completion made by an in-memory endpoint.
    package init(workRequestID: UInt64, status: WorkCompletionStatus, opcode: WorkCompletionOpcode?, byteCount: UInt32 = 0,
                 immediate: UInt32? = nil, queuePairNumber: UInt32, vendorError: UInt32 = 0) {
        self.workRequestID = workRequestID
        self.status = status
        self.opcode = status == .success ? opcode : nil
        self.byteCount = byteCount
        self.immediate = immediate
        self.queuePairNumber = queuePairNumber
        self.vendorError = vendorError
    }

    public var isSuccess: Bool { status == .success }

    /// Throws `.workCompletion` unless the status is success.
    public func check() throws(VerbsError) {
        guard isSuccess else {
            throw VerbsError.workCompletion(WorkCompletionFailure(
                status: status, opcode: opcode, workRequestID: workRequestID, vendorError: vendorError))
        }
    }
}
