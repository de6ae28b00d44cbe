#if canImport(Glibc)
import Glibc
#endif
@testable import NumberedStream
import Verbs
import VerbsEmbedded

/// What a hostile stream sender does, one step at a time; the raw values are the input's codes.
enum StreamAction: UInt8, CaseIterable {
    /// seqDelta(1) length(2) kind(1) checksum(8) flags(1) byte(1): a message of `length` copies
    /// of the byte, numbered the sender's next sequence number plus the signed delta; kind 0 is
    /// data, 1 the end marker, anything else as it is; flags bit 0: the right checksum (else the
    /// given one), bit 1: the length field says `length` (else the raw checksum's low 32 bits).
    case message = 0
    /// length(1) bytes: a send of the bytes as they are.
    case raw
    /// A zero-length send.
    case empty
    /// A receive for the receiver's summary.
    case postReceive
    /// Nothing this time: the receiver waits once more.
    case idle
    /// The sender's queue pair goes to the error state.
    case flush
    /// The sender hangs up and does not come back; the rest of the input is not read.
    case hangUp
    /// The sender hangs up and connects again: the next input bytes are its next hello.
    case reconnect

    init(code: UInt8) { self = Self.allCases[Int(code) % Self.allCases.count] }
}

/// The numbered stream's receiver (`StreamReceiver.run`) against one hostile sender that
/// connects, sends, hangs up and reconnects as the input says, over in-memory links, on this
/// thread. The receiver gives a sender no time to come back (`reconnectWithin` zero): it ends
/// when the input does.
///
/// Input: `window(1)`, then per connection `length(1) hello(length % 41) action...` (actions:
/// `StreamAction`; `reconnect` starts the next connection). After each input every link must
/// hold no registered memory and no pending request once its queues were emptied, and every
/// endpoint handed to the receiver must be gone with it; anything else traps.
enum StreamReceiverTarget {
    static func run(_ input: inout InputReader) {
        var options = SequencedStream.Options()
        options.window = 1 + Int(input.byte() % 4)
        options.messageSize = 64
        options.timeout = .seconds(10)
        options.reconnectWithin = .zero
        options.maxReceiveMemory = 64 << 10
        let sender = StreamScript(input: input)
        var receiver: StreamReceiver? = StreamReceiver(acceptor: sender, options: options)
        _ = try? receiver!.run()
        receiver = nil
        for (index, link) in sender.links.enumerated() {
            link.peer.finish("stream connection \(index)")
            if link.endpoint.object != nil { leak("the receiver kept stream connection \(index)'s endpoint") }
        }
    }
}

/// The hostile sender: an acceptor that hands the receiver one connection per hello in the
/// input, and the steps it takes on each as the receiver waits.
private final class StreamScript: StreamAcceptor {
    var input: InputReader
    var links: [(peer: HostilePeer, endpoint: Weak<PacedEndpoint>)] = []
    var current: HostilePeer?
    /// The sender's next sequence number: the receiver's resume point at each connection.
    var next: UInt64 = 0
    var messages: UInt64 = 0

    init(input: InputReader) { self.input = input }

    func accept(wait: Duration, sendDepth: Int, receiveDepth: Int, timeout: Duration,
                decide: ([UInt8]) -> StreamDecision) throws(VerbsError) -> (any ConnectedEndpoint)? {
        guard current == nil, !input.isAtEnd else { return nil }
        let hello = input.bytes(Int(input.byte()) % 41)
        guard case let .accept(answer) = decide(hello) else { return nil }
        if let h = try? StreamWire.decodeHello(hello, maxMessageSize: SequencedStream.maxMessageSize) {
            messages = h.messages
            next = (try? StreamWire.decodeAnswer(answer, messages: h.messages)) ?? 0
        }
        let peer = HostilePeer(link: HostilePeer.link(sendQueueDepth: sendDepth, receiveQueueDepth: receiveDepth))
        let endpoint = PacedEndpoint(peer.link.b, step: { [unowned self, unowned peer] in self.step(on: peer) })
        let weak = Weak<PacedEndpoint>()
        weak.object = endpoint
        links.append((peer, weak))
        current = peer
        return endpoint
    }

    /// One step on `peer`'s connection; false once the sender has hung up on it.
    func step(on peer: HostilePeer) -> Bool {
        guard peer === current, !peer.hungUp else { return false }
        if input.isAtEnd {
            peer.hangUp()
            return false
        }
        let bytes = peer.bytes
        switch StreamAction(code: input.byte()) {
        case .message:
            let delta = Int8(bitPattern: input.byte()), length = Int(input.integer(UInt16.self)) % (HostilePeer.dataSize - 31)
            let kind = UInt32(input.byte()), rawChecksum = input.integer(UInt64.self), flags = input.byte()
            memset(bytes + StreamWire.headerSize, Int32(input.byte()), length)
            let seq = next &+ UInt64(bitPattern: Int64(delta))
            let checksum = flags & 1 != 0 ? SequencedStream.checksum(bytes + StreamWire.headerSize, count: length, seq: seq) : rawChecksum
            bytes.storeBytes(of: seq.littleEndian, as: UInt64.self)
            bytes.storeBytes(of: (flags & 2 != 0 ? UInt32(length) : UInt32(truncatingIfNeeded: rawChecksum)).littleEndian,
                             toByteOffset: 8, as: UInt32.self)
            bytes.storeBytes(of: kind.littleEndian, toByteOffset: 12, as: UInt32.self)
            bytes.storeBytes(of: checksum.littleEndian, toByteOffset: 16, as: UInt64.self)
            bytes.storeBytes(of: UInt64(0), toByteOffset: 24, as: UInt64.self)
            if kind == StreamWire.kindData && seq == next { next &+= 1 }
            peer.post(.send, length: StreamWire.headerSize + length)
        case .raw:
            let raw = input.bytes(Int(input.byte()))
            for (index, byte) in raw.enumerated() { bytes.storeBytes(of: byte, toByteOffset: index, as: UInt8.self) }
            peer.post(.send, length: raw.count)
        case .empty:
            peer.post(.send, length: 0)
        case .postReceive:
            peer.postReceives(1)
        case .idle:
            peer.reap()
        case .flush:
            peer.flush()
        case .hangUp:
            peer.hangUp()
            input = InputReader([])
            return false
        case .reconnect:
            peer.hangUp()
            current = nil
            return false
        }
        return true
    }
}
