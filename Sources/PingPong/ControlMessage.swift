/// The kinds of control message; the raw values are the wire codes.
enum ControlKind: UInt64 { case start = 1, ready, done, bye }

/// One control message as it sits in a mailbox: four 64-bit words in host byte order, as
/// `Peer.sendControl` writes them: `sequence(8) a(8) b(8) kind|sequence<<8 (8)`. The sequence opens
/// and (in the kind word's high bits) closes the message, so one still being placed by the NIC
/// never passes for a whole one. What `a` and `b` mean depends on the kind (see `StepRequest`).
struct ControlMessage: Equatable, Sendable {
    static let size = 32

    var sequence: UInt64
    var kind: ControlKind
    var a: UInt64
    var b: UInt64

    init(sequence: UInt64, kind: ControlKind, a: UInt64 = 0, b: UInt64 = 0) {
        self.sequence = sequence
        self.kind = kind
        self.a = a
        self.b = b
    }

    /// The four words, in mailbox order.
    var words: [UInt64] { [sequence, a, b, kind.rawValue | sequence << 8] }

    /// Whether the first and last word say the message with `sequence` is all there. The kind
    /// word keeps 56 bits of the sequence; sequences count up from 1 per connection, so they never
    /// reach 2^56.
    static func isComplete(first: UInt64, last: UInt64, sequence: UInt64) -> Bool {
        first == sequence && last >> 8 == sequence & 0x00FF_FFFF_FFFF_FFFF
    }

    /// Decodes a complete message's words: an unknown kind is a protocol error, never a trap.
    init(sequence: UInt64, a: UInt64, b: UInt64, kindWord: UInt64) throws(PingPongError) {
        guard let kind = ControlKind(rawValue: kindWord & 0xFF) else {
            throw .protocolError("unknown control message \(kindWord & 0xFF)")
        }
        self.init(sequence: sequence, kind: kind, a: a, b: b)
    }

    /// The 32 bytes as they land in the peer's mailbox.
    var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.size)
        for word in words { withUnsafeBytes(of: word) { out += $0 } }
        return out
    }

    /// Decodes 32 mailbox bytes (more are ignored) that must carry message `sequence`.
    init(bytes: [UInt8], sequence: UInt64) throws(PingPongError) {
        guard bytes.count >= Self.size else { throw .protocolError("a control message is \(Self.size) bytes, got \(bytes.count)") }
        let word = { (index: Int) -> UInt64 in
            bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) }
        }
        guard Self.isComplete(first: word(0), last: word(3), sequence: sequence) else {
            throw .protocolError("control message \(sequence) is not all there")
        }
        try self.init(sequence: word(0), a: word(1), b: word(2), kindWord: word(3))
    }
}
