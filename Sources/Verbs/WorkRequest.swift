import CVerbs

/// A bounds-checked slice of a memory region, made by `MemoryRegion.segment(offset:length:)`.
public struct LocalSegment: Sendable {
    public let region: MemoryRegion
    public let offset: Int
    public let length: Int

    var sge: ibv_sge {
        ibv_sge(addr: region.address + UInt64(offset), length: UInt32(length), lkey: region.lkey)
    }
}

/// What a send-queue work request does (`enum ibv_wr_opcode`).
public enum SendOperation: Sendable, Equatable {
    /// `IBV_WR_SEND`: consumes a receive posted by the peer.
    case send
    /// `IBV_WR_SEND_WITH_IMM`.
    case sendWithImmediate(UInt32)
    /// `IBV_WR_RDMA_WRITE` into the peer's buffer at `offset`.
    case write(RemoteBuffer, offset: UInt64)
    /// `IBV_WR_RDMA_WRITE_WITH_IMM`: the write, then a completion with `immediate` on the
    /// peer's receive queue (it consumes one posted receive).
    case writeWithImmediate(RemoteBuffer, offset: UInt64, immediate: UInt32)
    /// `IBV_WR_RDMA_READ` from the peer's buffer at `offset` into the local segment.
    case read(RemoteBuffer, offset: UInt64)

    public var name: String {
        switch self {
        case .send: return "send"
        case .sendWithImmediate: return "send with immediate"
        case .write: return "RDMA write"
        case .writeWithImmediate: return "RDMA write with immediate"
        case .read: return "RDMA read"
        }
    }
}

/// A send-queue work request (`struct ibv_send_wr` with at most one SGE).
public struct SendRequest: Sendable {
    public var id: UInt64
    public var operation: SendOperation
    /// The local bytes; nil for a zero-length operation.
    public var segment: LocalSegment?
    /// Ask for a completion (`IBV_SEND_SIGNALED`); unsignaled requests still need an
    /// occasional signaled one so the send queue drains.
    public var signaled: Bool
    /// Copy the payload into the work request (`IBV_SEND_INLINE`), up to the QP's inline limit.
    public var inline: Bool
    /// `IBV_SEND_FENCE`: wait for earlier RDMA reads first.
    public var fence: Bool
    /// `IBV_SEND_SOLICITED`: wake a peer that armed its CQ for solicited events only.
    public var solicited: Bool

    public init(id: UInt64, operation: SendOperation, segment: LocalSegment?, signaled: Bool = true,
                inline: Bool = false, fence: Bool = false, solicited: Bool = false) {
        self.id = id
        self.operation = operation
        self.segment = segment
        self.signaled = signaled
        self.inline = inline
        self.fence = fence
        self.solicited = solicited
    }
}

extension SendRequest {
    /// What every endpoint checks before posting: the inline size, the remote range, and the
    /// local right a read needs to land.
    package func check(maxInlineData: Int) throws(VerbsError) {
        let length = segment?.length ?? 0
        if inline && length > maxInlineData {
            throw VerbsError.invalidArgument("inline payload of \(length) bytes exceeds the QP's \(maxInlineData)")
        }
        switch operation {
        case .send, .sendWithImmediate:
            break
        case let .write(remote, offset), let .writeWithImmediate(remote, offset, _):
            try remote.check(offset: offset, length: length)
        case let .read(remote, offset):
            try remote.check(offset: offset, length: length)
            if let segment, !segment.region.access.contains(.localWrite) {
                throw VerbsError.invalidArgument("an RDMA read lands in local memory: the region needs local write access")
            }
        }
    }
}

/// What every endpoint checks before posting a receive: the buffer must be writable.
package func checkReceive(_ segment: LocalSegment?) throws(VerbsError) {
    if let segment, !segment.region.access.contains(.localWrite) {
        throw VerbsError.invalidArgument("a receive buffer needs local write access")
    }
}
