/// The numbered stream's bytes on the wire, decoded with every field checked: whatever a peer
/// sends, a decoder returns a value in range or throws `StreamError`, never traps.
///
/// - Hello (the sender's connect private data, 25 bytes, big-endian):
///   `magic "VKST"(4) version(1) messageSize(4) messages(8) streamID(8)`.
/// - Answer (the receiver's accept private data, big-endian): `magic(4) resume(8)`.
/// - Message (one send, little-endian): `seq(8) length(4) kind(4) checksum(8) reserved(8)`,
///   then `length` payload bytes; kind 0 is data, 1 the end marker (`seq` = the message count).
/// - Summary (the receiver's answer to the end marker, little-endian): `accepted(8) digest(8)`.
public enum StreamWire {
    public static let headerSize = 32
    static let magic: [UInt8] = Array("VKST".utf8)
    static let version: UInt8 = 1
    static let helloSize = 25
    static let answerSize = 12
    static let kindData: UInt32 = 0, kindEnd: UInt32 = 1

    public struct Hello: Equatable, Sendable {
        public var messageSize: Int
        public var messages: UInt64
        public var streamID: UInt64
    }

    /// One message's header, checked against the stream's message size and the bytes received.
    public enum Message: Equatable, Sendable {
        case data(seq: UInt64, length: Int, checksum: UInt64)
        case end(seq: UInt64)
    }

    static func encode(_ hello: Hello) -> [UInt8] {
        var out = magic + [version]
        put(UInt32(clamping: hello.messageSize), into: &out)
        put(hello.messages, into: &out)
        put(hello.streamID, into: &out)
        return out
    }

    /// Decodes a sender's hello; a message size outside 1...`maxMessageSize` is refused.
    public static func decodeHello(_ bytes: [UInt8], maxMessageSize: Int) throws(SequencedStream.StreamError) -> Hello {
        guard bytes.count >= helloSize, Array(bytes[0..<4]) == magic else {
            throw .protocolError("not a vkverbs stream sender (\(bytes.count) bytes of hello)")
        }
        guard bytes[4] == version else { throw .protocolError("stream protocol version \(bytes[4]), expected \(version)") }
        let size = Int(get(bytes, 5, UInt32.self))
        guard size >= 1, size <= maxMessageSize else {
            throw .protocolError("message size \(size) outside 1...\(maxMessageSize)")
        }
        return Hello(messageSize: size, messages: get(bytes, 9, UInt64.self), streamID: get(bytes, 17, UInt64.self))
    }

    static func encodeAnswer(resume: UInt64) -> [UInt8] {
        var out = magic
        put(resume, into: &out)
        return out
    }

    /// Decodes a receiver's answer: where to resume, which must lie within the stream.
    public static func decodeAnswer(_ bytes: [UInt8], messages: UInt64) throws(SequencedStream.StreamError) -> UInt64 {
        guard bytes.count >= answerSize, Array(bytes[0..<4]) == magic else {
            throw .protocolError("the peer is not a vkverbs stream receiver")
        }
        let resume = get(bytes, 4, UInt64.self)
        guard resume <= messages else { throw .protocolError("the receiver resumes at \(resume), past the \(messages) messages") }
        return resume
    }

    /// Decodes the header of a message of `byteCount` received bytes at `base`.
    public static func decodeMessage(_ bytes: UnsafeRawBufferPointer, messageSize: Int) throws(SequencedStream.StreamError) -> Message {
        guard bytes.count >= headerSize else { throw .protocolError("a \(bytes.count)-byte message has no header") }
        let seq = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        let length = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let kind = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        if kind == kindEnd { return .end(seq: seq) }
        guard kind == kindData, Int(length) <= messageSize, bytes.count - headerSize == Int(length) else {
            throw .protocolError("message \(seq): kind \(kind), \(length) payload bytes in a \(bytes.count)-byte message")
        }
        return .data(seq: seq, length: Int(length), checksum: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
    }

    static func put<T: FixedWidthInteger>(_ value: T, into out: inout [UInt8]) { withUnsafeBytes(of: value.bigEndian) { out += $0 } }

    /// Reads a big-endian integer; callers check the length first.
    static func get<T: FixedWidthInteger>(_ data: [UInt8], _ at: Int, _: T.Type) -> T {
        (at..<at + MemoryLayout<T>.size).reduce(T(0)) { ($0 << 8) | T(data[$1]) }
    }
}

/// The receiver's acceptance of messages, apart from any connection: message `n` only after
/// `0..<n`, with a matching checksum; a gap, a duplicate or a bad checksum is an error, never
/// skipped. Pure, so the fuzz target drives it with hostile messages.
public struct StreamAcceptance: Sendable {
    public private(set) var summary = SequencedStream.Summary()
    public let messages: UInt64
    public let messageSize: Int
    private var connected = false

    public init(messages: UInt64, messageSize: Int) {
        self.messages = messages
        self.messageSize = messageSize
    }

    /// Checks and counts one received message; true for the end marker (after all messages).
    public mutating func accept(_ bytes: UnsafeRawBufferPointer) throws(SequencedStream.StreamError) -> Bool {
        switch try StreamWire.decodeMessage(bytes, messageSize: messageSize) {
        case let .end(seq):
            guard seq == messages, summary.accepted == messages else {
                throw .protocolError("end marker at \(seq) after \(summary.accepted) accepted, the stream has \(messages) messages")
            }
            return true
        case let .data(seq, length, checksum):
            guard seq == summary.accepted else {
                throw seq < summary.accepted
                    ? .protocolError("message \(seq) again after \(summary.accepted) were accepted (a duplicate)")
                    : .lost("message \(seq) arrived while \(summary.accepted) was next: \(seq - summary.accepted) missing")
            }
            guard seq < messages else { throw .protocolError("message \(seq) beyond the stream's \(messages) messages") }
            let sum = SequencedStream.checksum(bytes.baseAddress! + StreamWire.headerSize, count: length, seq: seq)
            guard sum == checksum else { throw .corrupted("message \(seq) (\(length) bytes): checksum mismatch") }
            summary.accepted += 1
            summary.digest = SequencedStream.fold(summary.digest, seq: seq, checksum: sum)
            return false
        }
    }

    /// Counts a connection of this stream; each after the first is a reconnect in the summary.
    mutating func noteConnection() {
        if connected { summary.reconnects += 1 }
        connected = true
    }
    mutating func finish(seconds: Double) { summary.seconds = seconds }
}

extension StreamWire {
    /// Feeds `bytes` to a fresh receiver's `StreamAcceptance` as consecutive messages, each a
    /// header and the payload its length field claims (cut at the end of the input), as a
    /// receiver sees them arrive: the fuzz target's entry. Returns whether an end marker was
    /// accepted; anything malformed throws, nothing traps.
    public static func checkMessages(_ bytes: [UInt8], messages: UInt64 = 4, messageSize: Int = 64) throws(SequencedStream.StreamError) -> Bool {
        var acceptance = StreamAcceptance(messages: messages, messageSize: messageSize)
        let outcome: Result<Bool, SequencedStream.StreamError> = bytes.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let rest = all.count - offset
                var n = rest
                if rest >= headerSize {
                    let length = UInt32(littleEndian: all.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self))
                    n = min(rest, headerSize + Int(length))
                }
                do throws(SequencedStream.StreamError) {
                    if try acceptance.accept(UnsafeRawBufferPointer(rebasing: all[offset..<offset + n])) { return .success(true) }
                } catch {
                    return .failure(error)
                }
                offset += n
            }
            return .success(false)
        }
        return try outcome.get()
    }

    /// A valid run of `messages` messages of up to `messageSize` bytes and the end marker, as a
    /// sender puts them on the wire (the fuzz target's seeds).
    public static func sampleRun(messages: UInt64 = 4, messageSize: Int = 64) -> [UInt8] {
        var out: [UInt8] = []
        for seq in 0..<messages {
            let length = StreamSender.payloadLength(seq, messageSize)
            var message = [UInt8](repeating: 0, count: headerSize + length)
            message.withUnsafeMutableBytes { p in
                StreamSender.fillPayload(p.baseAddress! + headerSize, count: length, seq: seq)
                p.storeBytes(of: seq.littleEndian, as: UInt64.self)
                p.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 8, as: UInt32.self)
                p.storeBytes(of: kindData.littleEndian, toByteOffset: 12, as: UInt32.self)
                let sum = SequencedStream.checksum(p.baseAddress! + headerSize, count: length, seq: seq)
                p.storeBytes(of: sum.littleEndian, toByteOffset: 16, as: UInt64.self)
            }
            out += message
        }
        var end = [UInt8](repeating: 0, count: headerSize)
        end.withUnsafeMutableBytes { p in
            p.storeBytes(of: messages.littleEndian, as: UInt64.self)
            p.storeBytes(of: kindEnd.littleEndian, toByteOffset: 12, as: UInt32.self)
        }
        return out + end
    }

    /// A sender's hello and a receiver's answer (the fuzz target's seeds).
    public static func sampleHello(messageSize: Int = 64, messages: UInt64 = 4) -> [UInt8] {
        encode(Hello(messageSize: messageSize, messages: messages, streamID: 0x5EED))
    }

    public static func sampleAnswer(resume: UInt64 = 2) -> [UInt8] { encodeAnswer(resume: resume) }
}
