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
/// Message: `seq(8) length(4) kind(4) checksum(8) reserved(8)` then the payload, little-endian.
public enum SequencedStream {
    public static let headerSize = 32
    static let magic: [UInt8] = Array("VKST".utf8)
    static let version: UInt8 = 1
    static let kindData: UInt32 = 0, kindEnd: UInt32 = 1

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
        public init() {}
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

    static func put<T: FixedWidthInteger>(_ value: T, into out: inout [UInt8]) { withUnsafeBytes(of: value.bigEndian) { out += $0 } }
    static func get<T: FixedWidthInteger>(_ data: [UInt8], _ at: Int, _: T.Type) -> T? {
        guard data.count >= at + MemoryLayout<T>.size else { return nil }
        return (at..<at + MemoryLayout<T>.size).reduce(T(0)) { ($0 << 8) | T(data[$1]) }
    }
}

/// The sending end: `vkverbs stream --client`, and the fault tests.
public final class StreamSender {
    public typealias Options = SequencedStream.Options
    public typealias StreamError = SequencedStream.StreamError
    let host: String
    let port: UInt16
    let total: UInt64
    let options: Options
    let streamID = UInt64.random(in: 1 ... .max)
    let log: (String) -> Void
    /// Test hook: after posting these sequence numbers, the sender drives its own QP to the error state.
    public var faultAfter: Set<UInt64> = []
    /// Called with the number of completed messages now and then.
    public var progress: (UInt64) -> Void = { _ in }

    public init(host: String, port: UInt16, messages: UInt64, options: Options = .init(), log: @escaping (String) -> Void = { _ in }) {
        self.host = host
        self.port = port
        total = messages
        self.options = options
        self.log = log
    }

    private struct Link {
        let engine: TransferEngine
        let region: MemoryRegion
        let resume: UInt64
    }

    /// Sends every message, reconnecting after faults, and checks the receiver's summary.
    public func run() throws(StreamError) -> SequencedStream.Summary {
        let started = ContinuousClock.now
        var summary = SequencedStream.Summary()
        var completed: UInt64 = 0
        var current: Link? = try connect(completed: completed, firstTime: true)
        var next = current!.resume
        var inFlight: [(ticket: Ticket, seq: UInt64)] = []
        let slot = SequencedStream.headerSize + options.messageSize
        while true {
            let link = current!
            do {
                if completed == total {
                    // Everything is acknowledged: the end marker, then the receiver's summary.
                    let theirs = try finish(link, slot: slot)
                    var mine = SequencedStream.Summary()
                    mine.accepted = total
                    mine.digest = digest
                    guard theirs == mine else {
                        throw StreamError.lost("the receiver accepted \(theirs.accepted) messages (digest \(String(theirs.digest, radix: 16))), "
                                               + "the sender completed \(total) (digest \(String(mine.digest, radix: 16)))")
                    }
                    summary.accepted = theirs.accepted
                    summary.digest = theirs.digest
                    summary.seconds = Double((ContinuousClock.now - started).components.attoseconds) / 1e18
                        + Double((ContinuousClock.now - started).components.seconds)
                    try? link.engine.endpoint.disconnect(timeout: .seconds(2))
                    return summary
                }
                while next < total && inFlight.count < options.window {
                    let index = Int(next % UInt64(options.window))
                    let length = fill(link.region, slot: index, seq: next)
                    let ticket = try link.engine.postSend(try verbs { () throws(VerbsError) in
                        try link.region.segment(offset: index * slot, length: length)
                    })
                    inFlight.append((ticket, next))
                    if !faultAfter.isEmpty, faultAfter.remove(next) != nil {  // test hook, off the usual path
                        log("fault injected: QP driven to the error state after posting message \(next)")
                        try? link.engine.endpoint.abort()
                    }
                    next += 1
                }
                // RC completes in order: the oldest first.
                try link.engine.wait(for: inFlight[0].ticket, timeout: options.timeout)
                completed = inFlight.removeFirst().seq + 1
                if completed % options.progressEvery == 0 { progress(completed) }
            } catch let error as StreamError {
                throw error
            } catch {
                // The connection broke: whatever is in flight may or may not have arrived. The
                // receiver says where to resume; it must not be behind what completed here.
                log("connection lost after \(completed) completed messages: \(error)")
                // The old connection goes before a new one is tried: a cm_id still disconnecting
                // (its DREQ lost with the link) must not linger beside the new connection.
                try? link.engine.endpoint.disconnect(timeout: .seconds(1))
                current = nil
                let fresh = try connect(completed: completed, firstTime: false)
                current = fresh
                summary.reconnects += 1
                summary.faults.append((completed, fresh.resume))
                guard fresh.resume >= completed else {
                    throw StreamError.lost("the receiver resumes at \(fresh.resume) but \(completed) messages had completed")
                }
                summary.resent += next > fresh.resume ? next - fresh.resume : 0
                next = fresh.resume
                completed = fresh.resume
                inFlight.removeAll()
            }
        }
    }

    /// The digest the receiver must reach: folded over each message the first time it is filled
    /// (a message sent again after a reconnect is the same message).
    private var digest = SequencedStream.digestSeed
    private var digested: UInt64 = 0

    /// Lengths vary (1 byte to the full size), so short and long messages both cross faults.
    static func payloadLength(_ seq: UInt64, _ messageSize: Int) -> Int {
        seq % 7 == 3 ? Int(seq % UInt64(messageSize)) + 1 : messageSize
    }

    private func fill(_ region: MemoryRegion, slot index: Int, seq: UInt64) -> Int {
        let slot = SequencedStream.headerSize + options.messageSize
        let base = region.hostAddress! + index * slot
        let length = Self.payloadLength(seq, options.messageSize)
        let payload = UnsafeMutableRawBufferPointer(start: base + SequencedStream.headerSize, count: length)
        Pattern.fill(payload, count: length, seed: seq)
        base.storeBytes(of: seq.littleEndian, as: UInt64.self)
        base.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: SequencedStream.kindData.littleEndian, toByteOffset: 12, as: UInt32.self)
        let sum = SequencedStream.checksum(payload.baseAddress!, count: length, seq: seq)
        base.storeBytes(of: sum.littleEndian, toByteOffset: 16, as: UInt64.self)
        if seq == digested {
            digest = SequencedStream.fold(digest, seq: seq, checksum: sum)
            digested += 1
        }
        return SequencedStream.headerSize + length
    }

    private func finish(_ link: Link, slot: Int) throws(TransferError) -> SequencedStream.Summary {
        let base = link.region.hostAddress!
        // Slot 0 carries the end marker; the receive for the answer lands past the last slot.
        let answerOffset = options.window * slot
        let receive = try link.engine.postReceive(try verbs { () throws(VerbsError) in try link.region.segment(offset: answerOffset, length: 64) })
        base.storeBytes(of: total.littleEndian, as: UInt64.self)
        base.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: SequencedStream.kindEnd.littleEndian, toByteOffset: 12, as: UInt32.self)
        try link.engine.send(try verbs { () throws(VerbsError) in try link.region.segment(offset: 0, length: SequencedStream.headerSize) })
        let arrival = try link.engine.nextArrival(timeout: options.timeout)
        guard arrival.ticket == receive, arrival.byteCount >= 16 else {
            throw .verbs(.invalidArgument("the receiver's summary is \(arrival.byteCount) bytes"))
        }
        var theirs = SequencedStream.Summary()
        theirs.accepted = UInt64(littleEndian: (base + answerOffset).loadUnaligned(as: UInt64.self))
        theirs.digest = UInt64(littleEndian: (base + answerOffset + 8).loadUnaligned(as: UInt64.self))
        return theirs
    }

    /// Connects, retrying while the receiver is unreachable or not listening (a fault in
    /// progress), until `reconnectWithin` has passed.
    private func connect(completed: UInt64, firstTime: Bool) throws(StreamError) -> Link {
        let deadline = ContinuousClock.now + options.reconnectWithin
        var last = ""
        var attempt = 0
        while ContinuousClock.now < deadline {
            attempt += 1
            do {
                let link = try connectOnce()
                log(firstTime ? "connected; the receiver resumes at \(link.resume)"
                              : "reconnected (attempt \(attempt)); the receiver resumes at \(link.resume)")
                return link
            } catch {
                // No device or no such address will not heal by waiting.
                if case .notFound = error { throw StreamError.failed("\(error)") }
                if "\(error)" != last { log("connect attempt \(attempt) failed: \(error); retrying") }
                last = "\(error)"
                usleep(attempt < 10 ? 200_000 : 1_000_000)
            }
        }
        throw StreamError.failed("could not reach the receiver at \(host):\(port) within \(options.reconnectWithin): \(last)")
    }

    private func connectOnce() throws(VerbsError) -> Link {
        let route = try ResolvedRoute.resolve(host: host, port: port, timeout: .seconds(5))
        let context = route.context
        let pd = try ProtectionDomain(context: context)
        let channel = try CompletionChannel(context: context)
        let send = try CompletionQueue(context: context, capacity: options.window * 2 + 8, channel: channel)
        let receive = try CompletionQueue(context: context, capacity: 8, channel: channel)
        let slot = SequencedStream.headerSize + options.messageSize
        // Local only: the receiver never reaches into the sender's memory.
        let region = try pd.register(try HostBuffer(count: options.window * slot + 64), access: .local)
        let prepared = try route.prepare(pd: pd, sendCQ: send, receiveCQ: receive,
                                         capabilities: QueuePairCapabilities(maxSendRequests: UInt32(options.window + 4), maxReceiveRequests: 4))
        var hello = SequencedStream.magic + [SequencedStream.version]
        SequencedStream.put(UInt32(options.messageSize), into: &hello)
        SequencedStream.put(total, into: &hello)
        SequencedStream.put(streamID, into: &hello)
        let connection = try prepared.connect(privateData: hello, timeout: .seconds(10))
        let answer = connection.peerPrivateData
        guard answer.count >= 12, Array(answer[0..<4]) == SequencedStream.magic, let resume = SequencedStream.get(answer, 4, UInt64.self),
              resume <= total else {
            try? connection.disconnect(timeout: .seconds(1))
            throw .invalidArgument("the peer is not a vkverbs stream receiver (or resumes past the end)")
        }
        let engine: TransferEngine
        do {
            var o = TransferOptions(window: options.window, signalInterval: 1, timeout: options.timeout)
            o.maxChunk = slot
            engine = try TransferEngine(connection: connection, options: o)
        } catch {
            throw .invalidArgument("\(error)")
        }
        return Link(engine: engine, region: region, resume: resume)
    }
}

func verbs<T>(_ body: () throws(VerbsError) -> T) throws(TransferError) -> T {
    do { return try body() } catch { throw .verbs(error) }
}

/// The receiving end: `vkverbs stream --server`. Keeps what it accepted across connections, so
/// a sender that reconnects (same stream id) resumes where the receiver stands.
public final class StreamReceiver {
    public typealias Options = SequencedStream.Options
    public typealias StreamError = SequencedStream.StreamError
    public let listener: Listener
    let options: Options
    let log: (String) -> Void
    public var progress: (UInt64) -> Void = { _ in }
    /// Test hook: after accepting this many messages, the receiver drives its QP to the error state.
    public var faultAfter: Set<UInt64> = []
    static let maxMessageSize = 16 << 20

    public init(bind: String?, port: UInt16, options: Options = .init(), log: @escaping (String) -> Void = { _ in }) throws(VerbsError) {
        listener = try Listener(address: bind, port: port)
        self.options = options
        self.log = log
    }

    private final class Link {
        let engine: TransferEngine
        let region: MemoryRegion
        let slot: Int
        var slotOf: [Ticket: Int] = [:]
        init(engine: TransferEngine, region: MemoryRegion, slot: Int) { self.engine = engine; self.region = region; self.slot = slot }
        func post(_ index: Int) throws(TransferError) {
            let ticket = try engine.postReceive(try verbs { () throws(VerbsError) in try region.segment(offset: index * slot, length: slot) })
            slotOf[ticket] = index
        }
    }

    private var streamID: UInt64 = 0
    private var total: UInt64 = 0
    private var messageSize = 0
    private var summary = SequencedStream.Summary()

    /// Receives one stream to its end marker and returns what was accepted. Fails when no sender
    /// has been connected for `reconnectWithin`, or on a gap, a duplicate or a bad checksum.
    private var link: Link?

    public func run() throws(StreamError) -> SequencedStream.Summary {
        let started = ContinuousClock.now
        defer { link = nil }
        var quietSince = ContinuousClock.now
        while true {
            if link == nil || ContinuousClock.now - quietSince > .seconds(1) {
                // A new request replaces the current connection: the sender reconnected (perhaps
                // after a link fault this side has not noticed yet).
                let hadLink = link != nil
                if let fresh = try acceptNext(wait: link == nil ? .seconds(1) : .zero) {
                    if hadLink { summary.reconnects += 1 }
                    link = fresh
                    quietSince = ContinuousClock.now
                }
            }
            if link == nil {
                if ContinuousClock.now - quietSince > options.reconnectWithin {
                    throw StreamError.failed("no sender for \(options.reconnectWithin) (\(summary.accepted) messages accepted)")
                }
                continue
            }
            let current = link!
            let arrival: Arrival
            do {
                arrival = try current.engine.nextArrival(timeout: .seconds(1))
            } catch .timedOut {
                if ContinuousClock.now - quietSince > options.reconnectWithin {
                    throw StreamError.failed("nothing from the sender for \(options.reconnectWithin) (\(summary.accepted) messages accepted)")
                }
                continue
            } catch {
                log("connection lost after \(summary.accepted) accepted messages: \(error); waiting for the sender")
                try? current.engine.endpoint.disconnect(timeout: .milliseconds(200))
                link = nil
                quietSince = ContinuousClock.now
                continue
            }
            quietSince = ContinuousClock.now
            guard let index = current.slotOf.removeValue(forKey: arrival.ticket) else {
                throw StreamError.protocolError("an arrival on a receive that was not posted")
            }
            let base = current.region.hostAddress! + index * current.slot
            if try accept(base, byteCount: arrival.byteCount) {
                // The end marker: say what was accepted, then let the sender close.
                let out = current.region.hostAddress! + options.window * current.slot
                out.storeBytes(of: summary.accepted.littleEndian, as: UInt64.self)
                out.storeBytes(of: summary.digest.littleEndian, toByteOffset: 8, as: UInt64.self)
                do {
                    try current.engine.send(try verbs { () throws(VerbsError) in
                        try current.region.segment(offset: options.window * current.slot, length: 16)
                    })
                    _ = try? current.engine.connection?.waitForPeerDisconnect(timeout: options.timeout)
                } catch {
                    log("could not send the summary: \(error)")
                }
                try? current.engine.endpoint.disconnect(timeout: .seconds(1))
                summary.seconds = Double((ContinuousClock.now - started).components.seconds)
                    + Double((ContinuousClock.now - started).components.attoseconds) / 1e18
                return summary
            }
            if !faultAfter.isEmpty, faultAfter.remove(summary.accepted) != nil {  // test hook, off the usual path
                log("fault injected: QP driven to the error state after accepting \(summary.accepted) messages")
                try? current.engine.endpoint.abort()
            }
            do { try current.post(index) } catch {
                log("could not re-post a receive: \(error)")
            }
        }
    }

    /// Checks and counts one message; true for the end marker.
    private func accept(_ base: UnsafeMutableRawPointer, byteCount: Int) throws(StreamError) -> Bool {
        guard byteCount >= SequencedStream.headerSize else { throw StreamError.protocolError("a \(byteCount)-byte message has no header") }
        let seq = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        let length = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let kind = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        if kind == SequencedStream.kindEnd {
            guard seq == total else { throw StreamError.protocolError("end marker at \(seq), the stream has \(total) messages") }
            return true
        }
        guard kind == SequencedStream.kindData, length <= messageSize, byteCount == SequencedStream.headerSize + length else {
            throw StreamError.protocolError("message \(seq): kind \(kind), \(length) payload bytes in a \(byteCount)-byte message")
        }
        guard seq == summary.accepted else {
            throw seq < summary.accepted
                ? StreamError.protocolError("message \(seq) again after \(summary.accepted) were accepted (a duplicate)")
                : StreamError.lost("message \(seq) arrived while \(summary.accepted) was next: \(seq - summary.accepted) missing")
        }
        let sum = SequencedStream.checksum(base + SequencedStream.headerSize, count: length, seq: seq)
        guard sum == UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) else {
            throw StreamError.corrupted("message \(seq) (\(length) bytes): checksum mismatch")
        }
        summary.accepted += 1
        summary.digest = SequencedStream.fold(summary.digest, seq: seq, checksum: sum)
        if summary.accepted % options.progressEvery == 0 { progress(summary.accepted) }
        return false
    }

    /// Takes the next connection request, if one is there within `wait`, and accepts it with the
    /// resume point. A malformed request is rejected and the receiver goes on.
    private func acceptNext(wait: Duration) throws(StreamError) -> Link? {
        let request: ConnectionRequest
        do { request = try listener.accept(timeout: wait) } catch { return nil }
        do {
            return try setUp(request)
        } catch {
            log("refused a connection: \(error)")
            return nil
        }
    }

    private func setUp(_ request: consuming ConnectionRequest) throws(VerbsError) -> Link {
        let hello = request.privateData
        guard hello.count >= 25, Array(hello[0..<4]) == SequencedStream.magic, hello[4] == SequencedStream.version,
              let size = SequencedStream.get(hello, 5, UInt32.self), size > 0, Int(size) <= Self.maxMessageSize,
              let count = SequencedStream.get(hello, 9, UInt64.self), let id = SequencedStream.get(hello, 17, UInt64.self) else {
            try? request.reject(privateData: Array("bad request".utf8))
            throw .invalidArgument("not a vkverbs stream sender")
        }
        if id != streamID || Int(size) != messageSize || count != total {
            if streamID != 0 && summary.accepted < total {
                log("a new stream replaces one left at \(summary.accepted) of \(total) messages")
            }
            streamID = id
            messageSize = Int(size)
            total = count
            summary = SequencedStream.Summary()
        }
        let context = request.context
        let pd = try ProtectionDomain(context: context)
        let channel = try CompletionChannel(context: context)
        let send = try CompletionQueue(context: context, capacity: 8, channel: channel)
        let receive = try CompletionQueue(context: context, capacity: options.window * 2 + 8, channel: channel)
        let slot = SequencedStream.headerSize + messageSize
        // Local only: messages arrive by send/recv; nothing is exposed for RDMA write or read.
        let region = try pd.register(try HostBuffer(count: options.window * slot + 64), access: .local)
        let prepared = try request.prepare(pd: pd, sendCQ: send, receiveCQ: receive,
                                           capabilities: QueuePairCapabilities(maxSendRequests: 4, maxReceiveRequests: UInt32(options.window + 4)))
        if let old = link {
            // A sender that connects again has given up on the old connection (perhaps after a
            // link fault this side never saw): it goes first, so no stale cm_id lingers.
            log("the sender reconnected; dropping the old connection")
            try? old.engine.endpoint.disconnect(timeout: .milliseconds(200))
            link = nil
        }
        let engine: TransferEngine
        do {
            engine = try TransferEngine(connection: try prepared.accept(privateData: answer(), timeout: .seconds(10)),
                                        options: TransferOptions(window: 4, signalInterval: 1, timeout: options.timeout))
        } catch let error as VerbsError {
            throw error
        } catch {
            throw .invalidArgument("\(error)")
        }
        let link = Link(engine: engine, region: region, slot: slot)
        do {
            for index in 0..<options.window { try link.post(index) }
        } catch {
            try? engine.endpoint.disconnect(timeout: .milliseconds(200))
            throw .invalidArgument("posting receives: \(error)")
        }
        log("sender connected: stream \(String(streamID, radix: 16)), \(total) messages of up to \(messageSize) bytes, resuming at \(summary.accepted)")
        return link
    }

    private func answer() -> [UInt8] {
        var out = SequencedStream.magic
        SequencedStream.put(summary.accepted, into: &out)
        return out
    }
}
