/// A peer of a `PeerEngine`, numbered by the engine as it is added (never reused).
public struct PeerID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let value: UInt32
    public init(_ value: UInt32) { self.value = value }
    public static func < (a: PeerID, b: PeerID) -> Bool { a.value < b.value }
    public var description: String { "peer \(value)" }
}

/// One posted operation of a `PeerEngine`: the peer, and the ticket on that peer's queue.
public struct PeerTicket: Hashable, Sendable {
    public let peer: PeerID
    public let ticket: Ticket
}
