/// The sender's view of its credit, apart from any connection: the receiver's credit word is
/// hostile until checked. A grant must not go backwards and must not release frames never sent;
/// frame `f` may be written only while `f < granted + slots`.
public struct FrameCredit: Sendable, Equatable {
    public let slots: Int
    /// Frames the receiver released, as last read.
    public private(set) var granted: UInt64 = 0
    /// Frames written so far.
    public private(set) var sent: UInt64 = 0

    public init(slots: Int) { self.slots = slots }

    /// Takes a fresh reading of the credit word.
    public mutating func update(_ word: UInt64) throws(FrameStream.FrameError) {
        guard word >= granted, word <= sent else { throw .badCredit(granted: word, sent: sent, previous: granted) }
        granted = word
    }

    /// Whether the next frame may be written.
    public var canSend: Bool { sent < granted + UInt64(slots) }

    /// Counts the next frame as written and returns its number; the caller checked `canSend`.
    public mutating func next() -> UInt64 {
        precondition(canSend, "a frame without credit")
        defer { sent += 1 }
        return sent
    }

    /// Frames written and not yet released by the receiver.
    public var outstanding: UInt64 { sent - granted }
}
