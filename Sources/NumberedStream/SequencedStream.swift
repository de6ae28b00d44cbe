#if canImport(Glibc)
import Glibc
#endif
import Transfer
import Verbs

/// A stream of numbered, checksummed messages (send/recv over RC) that survives faults: when the
/// connection breaks, the sender reconnects and the receiver says where to resume, so every
/// message is delivered once, in order. What it proves, and checks itself:
/// - the receiver accepts message `n` only after `0..<n`, with a matching checksum (a gap,
///   a duplicate past the resume point or a bad checksum is an error, never skipped);
/// - at every reconnect, the resume point is at least what the sender was told completed (a
///   completed message is never lost); it may be more (a completion lost with the link);
/// - at the end, the receiver's count and digest equal the sender's for all messages.
///
/// The bytes on the wire are `StreamWire`'s; the receiver's checks are `StreamAcceptance`'s;
/// how the ends get connected is a `StreamDialer` / `StreamAcceptor` (rdmacm, or in memory).
public enum SequencedStream {
    public static let headerSize = StreamWire.headerSize
    /// The largest message size a receiver takes, whatever its memory budget.
    public static let maxMessageSize = 16 << 20

    public struct Options: Sendable {
        /// Payload bytes per message.
        public var messageSize: Int = 64 << 10
        /// Messages in flight (sender) and receives posted (receiver).
        public var window: Int = 16
        /// Bound on each wait for the peer while connected.
        public var timeout: Duration = .seconds(10)
        /// How long a side keeps trying to get a connection back after a fault.
        public var reconnectWithin: Duration = .seconds(90)
        /// `progress` is called every this many messages.
        public var progressEvery: UInt64 = 4096
        /// Receiver: memory one sender may make it allocate and register (its window of
        /// message slots); a hello asking more is refused before anything is allocated.
        public var maxReceiveMemory = 64 << 20
        public init() {}

        /// The bytes a receiver registers for a stream of `messageSize`-byte messages.
        func receiveMemory(messageSize: Int) -> Int? {
            let (slot, o1) = (StreamWire.headerSize).addingReportingOverflow(messageSize)
            let (all, o2) = slot.multipliedReportingOverflow(by: window)
            let (total, o3) = all.addingReportingOverflow(64)
            return o1 || o2 || o3 ? nil : total
        }

        /// Rejects settings that cannot run, before anything connects.
        public func validate() throws(StreamError) {
            guard messageSize >= 1, messageSize <= SequencedStream.maxMessageSize else {
                throw .failed("message size must be in 1...\(SequencedStream.maxMessageSize) bytes, got \(messageSize)")
            }
            guard window >= 1, window <= 4096 else { throw .failed("window must be in 1...4096, got \(window)") }
            guard progressEvery >= 1 else { throw .failed("progress interval must be at least 1") }
        }
    }

    /// What one side saw; both sides' `accepted` and `digest` must agree at the end.
    public struct Summary: Sendable, Equatable, CustomStringConvertible {
        public var accepted: UInt64 = 0
        public var digest: UInt64 = digestSeed
        public var reconnects = 0
        /// Messages the sender posted again after a reconnect (their completion was lost with the link).
        public var resent: UInt64 = 0
        /// Sender: messages whose completion was seen before each fault, and the receiver's resume point then.
        public var faults: [(completed: UInt64, resumedAt: UInt64)] = []
        public var seconds: Double = 0

        public static func == (a: Summary, b: Summary) -> Bool { a.accepted == b.accepted && a.digest == b.digest }

        public var description: String {
            var text = "\(accepted) messages, digest \(String(digest, radix: 16)), \(reconnects) reconnect(s)"
            if resent > 0 { text += ", \(resent) resent" }
            for f in faults { text += "; fault after \(f.completed) completed, resumed at \(f.resumedAt)" }
            return text
        }
    }

    public enum StreamError: Error, CustomStringConvertible, Sendable {
        case lost(String)
        case corrupted(String)
        case protocolError(String)
        case failed(String)
        public var description: String {
            switch self {
            case let .lost(t): return "messages lost: \(t)"
            case let .corrupted(t): return "corrupted message: \(t)"
            case let .protocolError(t): return "stream protocol: \(t)"
            case let .failed(t): return t
            }
        }
    }

    static let digestSeed: UInt64 = 0xCBF2_9CE4_8422_2325

    /// A checksum of the payload, seeded with the sequence number, 8 bytes at a time.
    static func checksum(_ p: UnsafeRawPointer, count: Int, seq: UInt64) -> UInt64 {
        var h = 0x9E37_79B9_7F4A_7C15 ^ seq
        let words = count / 8
        for i in 0..<words {
            h = (h ^ p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x0000_0100_0000_01B3
            h ^= h >> 29
        }
        for i in words * 8..<count { h = (h ^ UInt64(p.load(fromByteOffset: i, as: UInt8.self))) &* 0x0000_0100_0000_01B3 }
        return h ^ UInt64(count)
    }

    static func fold(_ digest: UInt64, seq: UInt64, checksum: UInt64) -> UInt64 {
        var h = digest
        for v in [seq, checksum] { h = (h ^ v) &* 0x0000_0100_0000_01B3; h ^= h >> 31 }
        return h
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = (ContinuousClock.now - start).components
        return Double(d.seconds) + Double(d.attoseconds) / 1e18
    }
}
