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
