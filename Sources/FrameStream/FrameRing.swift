/// The receiver's slots apart from any connection: which frame each slot holds and in what state,
/// what the policy drops, and the credit (frames released, in order) to return. Pure, so tests and
/// fuzzers drive it with any sequence of arrivals, takes and releases.
///
/// Frame `f` lives in slot `f % slots`. Frames in `released..<arrived` occupy their slots; each is
/// waiting for the consumer (ready), held by it, or freed out of order (released or dropped while
/// an older one is still held). The credit is `released`: the sender may write frame `f` only while
/// `f < released + slots`, so a slot is never written while its frame is ready or held.
public struct FrameRing: Sendable {
    public enum SlotState: Equatable, Sendable { case ready, held, freed }

    public let slots: Int
    public let policy: FrameStream.Policy
    /// Drop-oldest: the most frames waiting for the consumer.
    public let readyLimit: Int
    /// Frames that arrived (the next arrival must be this frame).
    public private(set) var arrived: UInt64 = 0
    /// Frames whose slots are free again, in order: the credit.
    public private(set) var released: UInt64 = 0
    public private(set) var delivered: UInt64 = 0
    public private(set) var dropped: UInt64 = 0
    /// The credit last sent to the sender.
    public private(set) var creditSent: UInt64 = 0
    private var state: [SlotState]
    /// Ready frames, oldest first (`readyHead` is the oldest's index).
    private var ready: [UInt64] = []
    private var readyHead = 0

    public init(slots: Int, policy: FrameStream.Policy, readyLimit: Int? = nil) throws(FrameStream.FrameError) {
        try FrameStream.checkGeometry(slots: slots, frameSize: 1)
        let limit = readyLimit ?? max(1, slots / 2)
        guard limit >= 1, limit <= slots else { throw .invalidOptions("ready limit must be in 1...\(slots), got \(limit)") }
        self.slots = slots
        self.policy = policy
        self.readyLimit = limit
        state = Array(repeating: .freed, count: slots)
    }

    public var waiting: Int { ready.count - readyHead }

    /// The state of frame `frame`'s slot, nil when the frame does not occupy it.
    public func state(of frame: UInt64) -> SlotState? {
        guard frame >= released, frame < arrived else { return nil }
        return state[Int(frame % UInt64(slots))]
    }

    /// Takes the arrival named by `immediate`: it must be the next frame, in its slot, and the
    /// sender must have had credit for it. Returns the frame number and its slot; applies the policy
    /// (the frames it drops are counted and their slots freed).
    public mutating func arrive(immediate: UInt32) throws(FrameStream.FrameError) -> (frame: UInt64, slot: Int) {
        let slot = try FrameWire.checkImmediate(immediate, expected: arrived, slots: slots)
        guard arrived < released + UInt64(slots) else {
            throw .protocolError("frame \(arrived) arrived without credit (\(released) released, \(slots) slots)")
        }
        let frame = arrived
        state[slot] = .ready
        ready.append(frame)
        arrived += 1
        switch policy {
        case .block: break
        case .dropOldest: while waiting > readyLimit { drop() }
        case .latestWins: while waiting > 1 { drop() }
        }
        return (frame, slot)
    }

    private mutating func drop() {
        let frame = ready[readyHead]
        readyHead += 1
        dropped += 1
        free(frame)
        compact()
    }

    /// The oldest waiting frame, now held by the consumer; nil when none waits.
    public mutating func take() -> (frame: UInt64, slot: Int)? {
        guard readyHead < ready.count else { return nil }
        let frame = ready[readyHead]
        readyHead += 1
        compact()
        let slot = Int(frame % UInt64(slots))
        state[slot] = .held
        delivered += 1
        return (frame, slot)
    }

    /// Frees a frame the consumer holds; a frame it does not hold is refused and nothing changes.
    public mutating func release(_ frame: UInt64) throws(FrameStream.FrameError) {
        guard state(of: frame) == .held else { throw .notHeld(frame: frame) }
        free(frame)
    }

    private mutating func free(_ frame: UInt64) {
        state[Int(frame % UInt64(slots))] = .freed
        while released < arrived, state[Int(released % UInt64(slots))] == .freed { released += 1 }
    }

    private mutating func compact() {
        if readyHead > 64, readyHead * 2 > ready.count {
            ready.removeFirst(readyHead)
            readyHead = 0
        }
    }

    /// The credit to send now, if any: when at least `batch` frames were released since the last
    /// one sent, or (`force`) when any were. Marks it sent.
    public mutating func creditToSend(batch: Int, force: Bool = false) -> UInt64? {
        let unsent = released - creditSent
        guard unsent > 0, force || unsent >= UInt64(max(1, batch)) else { return nil }
        creditSent = released
        return released
    }
}
