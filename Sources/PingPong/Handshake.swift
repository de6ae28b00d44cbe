#if canImport(Glibc)
import Glibc
#endif
import Hashing
import Verbs

/// A key both sides know, for the optional peer check in the handshake (HMAC-SHA256).
public struct SharedSecret: Sendable {
    private let bytes: [UInt8]

    /// At least 16 bytes, so a short password is not mistaken for a key.
    public init(_ bytes: [UInt8]) throws(VerbsError) {
        guard bytes.count >= 16 else {
            throw .invalidArgument("a shared secret needs at least 16 bytes, got \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// The file's bytes, one trailing newline dropped (so `echo KEY > file` works).
    public init(contentsOf path: String) throws(VerbsError) {
        guard var bytes = try readFileBytes(path, limit: 1 << 16) else {
            throw .invalidArgument("\(path) is over 64 KiB; a shared secret is a short key")
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        try self.init(bytes)
    }

    func tag(_ label: String, _ parts: [UInt8]...) -> [UInt8] {
        var mac = HMACSHA256(key: bytes)
        mac.update(Array(label.utf8))
        for part in parts { mac.update(part) }
        return mac.finalize()
    }
}

/// The connection handshake. The client's request is connect private data, which the IB CM limits
/// to 56 bytes for rdmacm, so it is packed: buffer lengths are implied by the buffer size, and
/// the peer check is a 96-bit truncated HMAC. The server's answer (accept private data, up to
/// 196 bytes) carries the full 256-bit HMAC over the request and the answer.
///
/// Request (56 bytes, big-endian):
/// `magic(4) version(1) op(1) measurement(1) memory(1) bufferSize(4) buffer.address(8) buffer.rkey(4)
///  mailbox.address(8) mailbox.rkey(4) time(4) random(4) tag(12)`;
/// the tag is zero without a secret. Answer: `magic(4) status(1) buffer(20) mailbox(20) [tag(32)]`.
enum Handshake {
    static let magic: [UInt8] = Array("VKPP".utf8)
    static let version: UInt8 = 2
    static let requestSize = 56
    static let signedRequestSize = 44
    static let requestTagSize = 12
    static let answerSize = 45
    static let answerTagSize = 32
    /// How far a request's clock may be from ours: the window in which the server remembers nonces.
    static let freshnessSeconds: Int64 = 120

    struct Request: Sendable {
        var operation: RDMAOperation
        var measurement: MeasurementKind
        /// Where the client's buffer lives (its `--memory`): the server logs it with the session.
        var memory: MemoryKind
        var bufferSize: Int
        var buffer: RemoteBuffer
        var mailbox: RemoteBuffer
        /// Seconds since the epoch on the client's clock, and the random half of the nonce.
        var time: UInt32
        var nonce: [UInt8]
        var tag: [UInt8]
        /// The 56 bytes as received, which the answer's tag covers.
        var raw: [UInt8]
    }

    static func now() -> UInt32 { UInt32(truncatingIfNeeded: time(nil)) }

    static func request(_ c: PingPongConfiguration, buffer: RemoteBuffer, mailbox: RemoteBuffer,
                        secret: SharedSecret? = nil, time: UInt32 = now()) -> [UInt8] {
        var out = magic + [version, c.operation.code, c.measurement == .latency ? 0 : 1, c.memory.code]
        append(&out, UInt32(clamping: c.bufferSize))  // validate() keeps it within 1 GiB
        append(&out, buffer.address)
        append(&out, buffer.rkey)
        append(&out, mailbox.address)
        append(&out, mailbox.rkey)
        append(&out, time)
        append(&out, UInt32.random(in: .min ... .max))
        out += secret.map { Array($0.tag("vkverbs-pingpong-request", out).prefix(requestTagSize)) }
            ?? [UInt8](repeating: 0, count: requestTagSize)
        return out
    }

    /// Decodes a request; anything malformed is an error, never a partial value. The peer
    /// check is separate (`authenticate`), so a server without a secret can still decode.
    static func decodeRequest(_ data: [UInt8]) throws(VerbsError) -> Request {
        guard data.count >= requestSize, Array(data[0..<4]) == magic else {
            throw .invalidArgument("not a vkverbs ping-pong client (bad magic or \(data.count) bytes)")
        }
        guard data[4] == version else { throw .invalidArgument("ping-pong protocol version \(data[4]), expected \(version)") }
        guard let op = RDMAOperation(code: data[5]), data[6] <= 1, let memory = MemoryKind(code: data[7]) else {
            throw .invalidArgument("unknown operation, measurement or memory kind")
        }
        let sizeWord = read(data, 8, UInt32.self)
        guard let size = Int(exactly: sizeWord), size > 0, size <= 1 << 30 else {
            throw .invalidArgument("requested buffer of \(sizeWord) bytes is out of range")
        }
        return Request(
            operation: op, measurement: data[6] == 0 ? .latency : .bandwidth, memory: memory, bufferSize: size,
            buffer: RemoteBuffer(address: read(data, 12, UInt64.self), length: UInt64(2 * size), rkey: read(data, 20, UInt32.self)),
            mailbox: RemoteBuffer(address: read(data, 24, UInt64.self), length: UInt64(Peer.mailboxSize), rkey: read(data, 32, UInt32.self)),
            time: read(data, 36, UInt32.self), nonce: Array(data[36..<44]),
            tag: Array(data[44..<56]), raw: Array(data[0..<requestSize]))
    }

    /// The server's peer check: the tag must be right and the clock within the freshness window.
    /// (The replay check against remembered nonces is the server's, see `ReplayGuard`.)
    static func authenticate(_ r: Request, secret: SharedSecret, now: UInt32 = now()) throws(PingPongError) {
        let expected = Array(secret.tag("vkverbs-pingpong-request", Array(r.raw[0..<signedRequestSize])).prefix(requestTagSize))
        guard HMACSHA256.equal(expected, r.tag) else {
            throw .authenticationFailed("the client's handshake does not carry a valid HMAC of the shared secret")
        }
        let skew = Int64(now) - Int64(r.time)
        guard abs(skew) <= freshnessSeconds else {
            throw .authenticationFailed("the client's handshake is \(skew) s away from this clock (at most \(freshnessSeconds) s)")
        }
    }

    static func answer(buffer: RemoteBuffer, mailbox: RemoteBuffer, request: [UInt8], secret: SharedSecret?) -> [UInt8] {
        let body = magic + [0] + buffer.encoded + mailbox.encoded
        guard let secret else { return body }
        return body + secret.tag("vkverbs-pingpong-answer", request, body)
    }

    static func decodeAnswer(_ data: [UInt8]) throws(VerbsError) -> (buffer: RemoteBuffer, mailbox: RemoteBuffer) {
        guard data.count >= answerSize, Array(data[0..<4]) == magic else { throw .invalidArgument("the server's answer is not a vkverbs ping-pong server's") }
        return (try RemoteBuffer(decoding: data[5..<25]), try RemoteBuffer(decoding: data[25..<45]))
    }

    /// The client's check that the server knows the secret too, bound to this very request.
    static func verifyAnswer(_ data: [UInt8], request: [UInt8], secret: SharedSecret) throws(PingPongError) {
        guard data.count >= answerSize + answerTagSize else {
            throw .authenticationFailed("the server's answer carries no HMAC: it does not check a shared secret")
        }
        let expected = secret.tag("vkverbs-pingpong-answer", request, Array(data[0..<answerSize]))
        guard HMACSHA256.equal(expected, Array(data[answerSize..<answerSize + answerTagSize])) else {
            throw .authenticationFailed("the server's answer does not carry a valid HMAC of the shared secret")
        }
    }

    private static func append<T: FixedWidthInteger>(_ out: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.bigEndian) { out += $0 }
    }

    private static func read<T: FixedWidthInteger>(_ data: [UInt8], _ at: Int, _: T.Type) -> T {
        (at..<at + MemoryLayout<T>.size).reduce(T(0)) { ($0 << 8) | T(data[$1]) }
    }
}

/// Nonces seen within the freshness window: a recorded request replayed is refused.
struct ReplayGuard {
    private var seen: [[UInt8]: UInt32] = [:]

    mutating func admit(_ r: Handshake.Request, now: UInt32 = Handshake.now()) throws(PingPongError) {
        seen = seen.filter { Int64(now) - Int64($0.value) <= 2 * Handshake.freshnessSeconds }
        guard seen[r.nonce] == nil else { throw .authenticationFailed("the client's handshake is a replay of an earlier one") }
        seen[r.nonce] = r.time
    }
}
