import Verbs

/// The handshake decoders as public entry points, for the fuzz target (Fuzz/, `make fuzz`):
/// whatever the bytes, each either decodes or throws a typed error; it never traps.
public enum HandshakeWire {
    /// Decodes connect private data as the server does.
    public static func checkRequest(_ bytes: [UInt8]) throws(VerbsError) {
        _ = try Handshake.decodeRequest(bytes)
    }

    /// Decodes accept private data as the client does.
    public static func checkAnswer(_ bytes: [UInt8]) throws(VerbsError) {
        _ = try Handshake.decodeAnswer(bytes)
    }
}

/// The control-message decoder as a public entry point, for the same fuzz target: a mailbox's
/// 32 bytes (see `ControlMessage`) decoded as a server's session decodes what a client writes
/// before a step. Whatever the bytes, it decodes or throws a typed error; it never traps.
public enum ControlWire {
    /// The bytes of one control message in a mailbox.
    public static let messageSize = ControlMessage.size

    /// Checks `bytes` as the client's first control message (sequence 1) into a session whose
    /// buffer half is `bufferHalf` bytes and whose QP grants `inlineCap` bytes of inline data:
    /// a bye, or a start whose step request (`StepRequest`) is within those limits.
    public static func checkStep(_ bytes: [UInt8], bufferHalf: Int = 1 << 20, inlineCap: Int = 256) throws(PingPongError) {
        let message = try ControlMessage(bytes: bytes, sequence: 1)
        if message.kind == .bye { return }
        _ = try StepRequest(kind: message.kind, a: message.a, b: message.b, bufferHalf: bufferHalf, inlineCap: inlineCap)
    }
}
