import Verbs
import VulkanMemory

/// A stream of frames into a ring of slots of receiver memory (host or Vulkan, any strategy the
/// caller registered), with credits. The sender writes frame `f` into slot `f % slots` with an RDMA
/// write-with-immediate naming the slot and the frame; the receiver hands arrivals to its consumer
/// in order (signalling a timeline semaphore to `f + 1` where one is given), and a released slot
/// returns a credit: an RDMA write of the count of frames released so far into the sender's credit
/// word, batched. The sender may write frame `f` only while `f < credit + slots`.
///
/// What backs up when the consumer is slow is decided at the receiver by `Policy`; the sender
/// always waits for credit (bounded by its timeout), so a slot is never overwritten while the
/// consumer may read it.
///
/// The bytes on the wire are `FrameWire`'s, the receiver's slot states `FrameRing`'s, the sender's
/// credit checks `FrameCredit`'s; connections come from NumberedStream's `StreamDialer` and
/// `StreamAcceptor` (rdmacm, or the in-memory twin).
public enum FrameStream {
    /// The most slots a ring may have (the slot number travels in 16 bits of the immediate).
    public static let maxSlots = 4096
    /// The largest frame a stream carries.
    public static let maxFrameSize = 256 << 20

    /// What the receiver does with frames that arrived while its consumer is behind.
    public enum Policy: String, Sendable, CaseIterable, Codable {
        /// Every frame is delivered; a consumer that falls behind holds its slots and the sender
        /// waits for credit (back-pressure). Nothing is dropped.
        case block
        /// At most `readyLimit` frames wait for the consumer; an arrival beyond that drops the
        /// oldest waiting frame (its slot is released at once).
        case dropOldest = "drop-oldest"
        /// Only the newest arrival waits for the consumer; every older waiting frame is dropped.
        case latestWins = "latest-wins"
    }

    /// How the sender makes a frame's bytes visible before the receiver is told of it.
    public enum Visibility: String, Sendable, CaseIterable, Codable {
        /// The write-with-immediate's completion is the signal (host memory, coherent device memory).
        case none
        /// The payload is written without the immediate, then read back one byte (an RDMA read,
        /// which the receiving NIC serves only after the payload's PCIe writes), then a fenced
        /// zero-length write-with-immediate announces the frame: NCCL's flush technique, for device
        /// memory a NIC writes through a PCIe BAR that GPU reads could otherwise overtake.
        case readAfterWrite = "read-after-write"
    }

    /// Errors of a frame stream; each carries its typed source.
    public enum FrameError: Error, Equatable, Sendable, CustomStringConvertible {
        /// Settings that cannot run (0 slots, a frame size of 0, a slot smaller than the frame).
        case invalidOptions(String)
        /// `send` of a frame larger than the stream's frame size; nothing was sent, the stream goes on.
        case frameTooLarge(size: Int, limit: Int)
        /// The peer refused the connection (its reason), or is not a frame stream peer.
        case rejected(String)
        /// The peer broke the protocol (a bad hello, answer or header); the stream ends.
        case protocolError(String)
        /// A credit word granting frames the sender never sent, or going backwards; the stream ends.
        case badCredit(granted: UInt64, sent: UInt64, previous: UInt64)
        /// An immediate naming a slot outside the ring; the stream ends.
        case slotOutOfRange(slot: Int, slots: Int)
        /// An immediate naming another frame than the next one in order; the stream ends.
        case outOfOrder(expected: UInt64, immediate: UInt32)
        /// A frame whose bytes do not match the sender's checksum.
        case corrupted(frame: UInt64)
        /// The consumer released a frame it does not hold; nothing changes.
        case notHeld(frame: UInt64)
        /// A wait ran out: no credit (a stalled receiver), no frame, no completion.
        case timedOut(String, after: Duration)
        /// The peer is gone: a disconnect, or a request that failed on the link.
        case peerLost(String)
        /// An error of the verbs below.
        case transport(VerbsError)
        /// An error of Vulkan (signalling the timeline semaphore).
        case vulkan(VulkanError)

        public var description: String {
            switch self {
            case let .invalidOptions(t): return "frame stream settings: \(t)"
            case let .frameTooLarge(size, limit): return "a \(size)-byte frame does not fit the stream's \(limit)-byte frames"
            case let .rejected(t): return "the peer refused the frame stream: \(t)"
            case let .protocolError(t): return "frame stream protocol: \(t)"
            case let .badCredit(granted, sent, previous):
                return "the receiver's credit word says \(granted) frames released (before: \(previous)), but \(sent) were sent"
            case let .slotOutOfRange(slot, slots): return "an arrival names slot \(slot) of a \(slots)-slot ring"
            case let .outOfOrder(expected, immediate):
                return "an arrival's immediate 0x\(String(immediate, radix: 16)) is not frame \(expected), the next one"
            case let .corrupted(frame): return "frame \(frame): checksum mismatch"
            case let .notHeld(frame): return "frame \(frame) is not held by the consumer"
            case let .timedOut(what, after): return "timed out after \(after) \(what)"
            case let .peerLost(t): return "the peer is gone: \(t)"
            case let .transport(e): return e.description
            case let .vulkan(e): return e.description
            }
        }

        /// Runs `body`, carrying its verbs error across as `.transport` (a failed completion or a
        /// disconnect as `.peerLost`, a timeout as `.timedOut`).
        static func bridge<T>(_ body: () throws(VerbsError) -> T) throws(FrameError) -> T {
            do { return try body() } catch { throw FrameError(error) }
        }

        init(_ error: VerbsError) {
            switch error {
            case let .timedOut(operation, after): self = .timedOut(operation, after: after)
            case .workCompletion, .connection: self = .peerLost(error.description)
            default: self = .transport(error)
            }
        }
    }

    /// The bytes of one slot's payload area for a frame of `frameSize` bytes: the frame itself.
    /// A slot's header (timestamp, length, checksum) lives in the receiver's host header ring.
    static func checkGeometry(slots: Int, frameSize: Int) throws(FrameError) {
        guard slots >= 1, slots <= maxSlots else { throw .invalidOptions("slots must be in 1...\(maxSlots), got \(slots)") }
        guard frameSize >= 1, frameSize <= maxFrameSize else {
            throw .invalidOptions("frame size must be in 1...\(maxFrameSize) bytes, got \(frameSize)")
        }
    }

    /// A frame's checksum (`FrameChecksum`): the function the sender, the receiver's CPU and its GPU compute.
    public static func checksum(_ p: UnsafeRawBufferPointer, frame: UInt64) -> UInt64 {
        FrameChecksum.checksum(p, frame: frame)
    }
}
