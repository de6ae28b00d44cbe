import Verbs

/// The frame stream's bytes on the wire, decoded with every field checked: whatever a peer sends,
/// a decoder returns a value in range or throws `FrameError`, never traps.
///
/// - Hello (the sender's connect private data, 13 bytes, big-endian):
///   `magic "VKFR"(4) version(1) frameSize(4) maxSlots(4)`; `maxSlots` is what the sender's queues hold.
/// - Answer (the receiver's accept private data, 12 bytes, big-endian): `magic(4) slots(4) slotSize(4)`.
/// - Ring descriptor (the receiver's first message, a send of 44 bytes): `magic(4) ring(20) headers(20)`,
///   its two regions as `RemoteBuffer`s (registered once the connection's protection domain exists).
/// - Credit descriptor (the sender's first message, a send of 24 bytes): `magic(4) creditWord(20)`.
/// - Header (32 bytes per slot in the receiver's header ring, little-endian, written before the
///   payload): `frame(8) sentAtNanoseconds(8) length(4) flags(4) checksum(8)`; flag bit 0: checksummed.
/// - Immediate of a frame's write: `slot << 16 | frame & 0xFFFF`.
/// - End (a zero-length send with immediate): the immediate is the count of frames sent, mod 2^32.
/// - Credit word (8 bytes, little-endian, RDMA-written into the sender's memory): frames released.
public enum FrameWire {
    static let magic: [UInt8] = Array("VKFR".utf8)
    /// 2: the frame checksum became `FrameChecksum` (sums a GPU can compute in parallel).
    static let version: UInt8 = 2
    static let helloSize = 13
    static let answerSize = 12
    static let ringDescriptorSize = 44
    static let descriptorSize = 24
    public static let headerSize = 32
    static let flagChecksummed: UInt32 = 1

    public struct Hello: Equatable, Sendable {
        public var frameSize: Int
        public var maxSlots: Int
    }

    public struct Answer: Equatable, Sendable {
        public var slots: Int
        public var slotSize: Int
    }

    /// Where the receiver's slots and their headers are.
    public struct RingDescriptor: Equatable, Sendable {
        public var ring: RemoteBuffer
        public var headers: RemoteBuffer
    }

    /// One slot's header as the sender wrote it.
    public struct Header: Equatable, Sendable {
        public var frame: UInt64
        public var sentAtNanoseconds: UInt64
        public var length: Int
        public var checksum: UInt64?
    }

    static func encode(_ hello: Hello) -> [UInt8] {
        var out = magic + [version]
        put(UInt32(clamping: hello.frameSize), into: &out)
        put(UInt32(clamping: hello.maxSlots), into: &out)
        return out
    }

    /// Decodes a sender's hello; a frame size or slot count out of range is refused.
    public static func decodeHello(_ bytes: [UInt8]) throws(FrameStream.FrameError) -> Hello {
        guard bytes.count >= helloSize, Array(bytes[0..<4]) == magic else {
            throw .protocolError("not a vkverbs frame sender (\(bytes.count) bytes of hello)")
        }
        guard bytes[4] == version else { throw .protocolError("frame protocol version \(bytes[4]), expected \(version)") }
        let frameSize = Int(get(bytes, 5, UInt32.self)), maxSlots = Int(get(bytes, 9, UInt32.self))
        guard frameSize >= 1, frameSize <= FrameStream.maxFrameSize else {
            throw .protocolError("frame size \(frameSize) outside 1...\(FrameStream.maxFrameSize)")
        }
        guard maxSlots >= 1 else { throw .protocolError("the sender takes 0 slots") }
        return Hello(frameSize: frameSize, maxSlots: min(maxSlots, FrameStream.maxSlots))
    }

    static func encode(_ answer: Answer) -> [UInt8] {
        var out = magic
        put(UInt32(clamping: answer.slots), into: &out)
        put(UInt32(clamping: answer.slotSize), into: &out)
        return out
    }

    /// Decodes a receiver's answer for a sender of `hello`: the slot count must be one the sender
    /// takes, and a slot must hold a frame.
    public static func decodeAnswer(_ bytes: [UInt8], for hello: Hello) throws(FrameStream.FrameError) -> Answer {
        guard bytes.count >= answerSize, Array(bytes[0..<4]) == magic else {
            throw .protocolError("the peer is not a vkverbs frame receiver (\(bytes.count) bytes of answer)")
        }
        let slots = Int(get(bytes, 4, UInt32.self)), slotSize = Int(get(bytes, 8, UInt32.self))
        guard slots >= 1, slots <= hello.maxSlots else { throw .protocolError("the receiver offers \(slots) slots, 1...\(hello.maxSlots) work") }
        guard slotSize >= hello.frameSize else { throw .protocolError("the receiver's \(slotSize)-byte slots cannot hold \(hello.frameSize)-byte frames") }
        return Answer(slots: slots, slotSize: slotSize)
    }

    static func encode(_ ring: RingDescriptor) -> [UInt8] { magic + ring.ring.encoded + ring.headers.encoded }

    /// Decodes the receiver's ring descriptor; both regions must hold every slot of `answer`.
    public static func decodeRing(_ bytes: UnsafeRawBufferPointer, for answer: Answer) throws(FrameStream.FrameError) -> RingDescriptor {
        guard bytes.count >= ringDescriptorSize, Array(bytes[0..<4]) == magic else {
            throw .protocolError("the receiver's first message (\(bytes.count) bytes) is not a ring descriptor")
        }
        let ring: RemoteBuffer, headers: RemoteBuffer
        do {
            ring = try RemoteBuffer(decoding: bytes[4..<24])
            headers = try RemoteBuffer(decoding: bytes[24..<44])
        } catch { throw .protocolError(error.description) }
        // slots <= 2^32 and slotSize < 2^32: the products cannot overflow 64 bits.
        guard ring.length >= UInt64(answer.slots) * UInt64(answer.slotSize),
              headers.length >= UInt64(answer.slots) * UInt64(headerSize) else {
            throw .protocolError("the receiver's regions (\(ring.length) and \(headers.length) bytes) do not hold \(answer.slots) slots")
        }
        return RingDescriptor(ring: ring, headers: headers)
    }

    static func encodeDescriptor(_ credit: RemoteBuffer) -> [UInt8] { magic + credit.encoded }

    /// Decodes the sender's credit descriptor: its credit word, 8 bytes at least.
    public static func decodeDescriptor(_ bytes: UnsafeRawBufferPointer) throws(FrameStream.FrameError) -> RemoteBuffer {
        guard bytes.count >= descriptorSize, Array(bytes[0..<4]) == magic else {
            throw .protocolError("the sender's first message (\(bytes.count) bytes) is not a credit descriptor")
        }
        let credit: RemoteBuffer
        do { credit = try RemoteBuffer(decoding: bytes[4..<24]) } catch { throw .protocolError(error.description) }
        guard credit.length >= 8 else { throw .protocolError("the sender's credit word has \(credit.length) bytes, 8 needed") }
        return credit
    }

    /// The immediate of frame `frame` in slot `slot`.
    public static func immediate(slot: Int, frame: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: slot) << 16 | UInt32(truncatingIfNeeded: frame & 0xFFFF) }

    /// Checks an arrival's immediate against the next frame `expected` of a `slots`-slot ring.
    public static func checkImmediate(_ immediate: UInt32, expected: UInt64, slots: Int) throws(FrameStream.FrameError) -> Int {
        let slot = Int(immediate >> 16)
        guard slot < slots else { throw .slotOutOfRange(slot: slot, slots: slots) }
        guard immediate == Self.immediate(slot: Int(expected % UInt64(slots)), frame: expected) else {
            throw .outOfOrder(expected: expected, immediate: immediate)
        }
        return slot
    }

    static func encode(_ header: Header, into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: header.frame.littleEndian, as: UInt64.self)
        p.storeBytes(of: header.sentAtNanoseconds.littleEndian, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: UInt32(clamping: header.length).littleEndian, toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: (header.checksum == nil ? 0 : flagChecksummed).littleEndian, toByteOffset: 20, as: UInt32.self)
        p.storeBytes(of: (header.checksum ?? 0).littleEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// Decodes the header of frame `frame` from its slot of a stream of `frameSize`-byte frames.
    public static func decodeHeader(_ bytes: UnsafeRawBufferPointer, frame: UInt64, frameSize: Int) throws(FrameStream.FrameError) -> Header {
        guard bytes.count >= headerSize else { throw .protocolError("a \(bytes.count)-byte header") }
        let number = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        let sentAt = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))
        let flags = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        let sum = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        guard number == frame else { throw .protocolError("the header of frame \(frame) names frame \(number)") }
        guard length <= frameSize else { throw .protocolError("frame \(frame) claims \(length) bytes, frames have at most \(frameSize)") }
        guard flags & ~flagChecksummed == 0 else { throw .protocolError("frame \(frame): unknown header flags 0x\(String(flags, radix: 16))") }
        return Header(frame: number, sentAtNanoseconds: sentAt, length: length, checksum: flags & flagChecksummed != 0 ? sum : nil)
    }

    static func put<T: FixedWidthInteger>(_ value: T, into out: inout [UInt8]) { withUnsafeBytes(of: value.bigEndian) { out += $0 } }

    /// Reads a big-endian integer; callers check the length first.
    static func get<T: FixedWidthInteger>(_ data: [UInt8], _ at: Int, _: T.Type) -> T {
        (at..<at + MemoryLayout<T>.size).reduce(T(0)) { ($0 << 8) | T(data[$1]) }
    }
}
