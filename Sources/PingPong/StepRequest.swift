/// A client's `start` control message, checked against the session's limits before any of its
/// values is used: what the server's next step does.
///
/// Wire layout (`ControlMessage` of kind `start`, as `PingPongClient` sends it): `a` holds the
/// message size in its low 32 bits and the inline size the client asks for in its high 32 bits;
/// `b` holds the step's iteration total, warm-up included. Every word comes from the peer, so the
/// decoder is pure (no system calls) and total: whatever the words, it returns a checked value or
/// throws `PingPongError.badRequest`; it never traps.
struct StepRequest: Equatable, Sendable {
    /// Bytes per message: 1 through the buffer half.
    let size: Int
    /// Iterations of the step: 1 through `maxTotal`.
    let total: Int
    /// Messages up to this many bytes go inline: what the client asked, within `inlineCap`.
    let inline: Int

    /// The most iterations one step may ask for (about 10^12; at a microsecond each, 12 days).
    static let maxTotal = 1 << 40
    /// The most inline bytes a client may ask for (as `PingPongConfiguration.validate` allows).
    static let maxInline = 1 << 16

    /// Decodes a `start` message. `bufferHalf` is the session's buffer half (the largest message),
    /// `inlineCap` what this side's QP grants for inline data (0: nothing goes inline).
    init(kind: ControlKind, a: UInt64, b: UInt64, bufferHalf: Int, inlineCap: Int) throws(PingPongError) {
        guard kind == .start else { throw .badRequest("expected a step's start or bye, got \(kind)") }
        let sizeWord = a & 0xFFFF_FFFF, inlineWord = a >> 32
        guard let size = Int(exactly: sizeWord), size >= 1, size <= bufferHalf else {
            throw .badRequest("step size \(sizeWord) outside 1...\(bufferHalf) bytes (the buffer)")
        }
        guard let total = Int(exactly: b), total >= 1, total <= Self.maxTotal else {
            throw .badRequest("step of \(b) iterations outside 1...\(Self.maxTotal)")
        }
        guard let inline = Int(exactly: inlineWord), inline <= Self.maxInline else {
            throw .badRequest("inline size \(inlineWord) above \(Self.maxInline) bytes")
        }
        self.size = size
        self.total = total
        self.inline = min(inline, max(0, inlineCap))
    }

    /// The `a` and `b` words of a `start` message (the client's side). The caller keeps the
    /// values in range (`PingPongConfiguration.validate`); out-of-range bits are cut, never trapped on.
    static func words(size: Int, total: Int, inline: Int) -> (a: UInt64, b: UInt64) {
        (UInt64(truncatingIfNeeded: size) & 0xFFFF_FFFF | UInt64(truncatingIfNeeded: inline) << 32,
         UInt64(truncatingIfNeeded: total))
    }
}
