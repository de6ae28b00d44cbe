#if canImport(Glibc)
import Glibc
#endif
import Transfer
import Verbs

/// The sending end: `vkverbs stream --client`, and the fault tests.
public final class StreamSender {
    public typealias Options = SequencedStream.Options
    public typealias StreamError = SequencedStream.StreamError
    public let dialer: any StreamDialer
    let total: UInt64
    let options: Options
    let streamID = UInt64.random(in: 1 ... .max)
    let log: (String) -> Void
    /// Test hook: after posting these sequence numbers, the sender drives its own endpoint to the error state.
    public var faultAfter: Set<UInt64> = []
    /// Called with the number of completed messages now and then.
    public var progress: (UInt64) -> Void = { _ in }

    /// A sender to the receiver `dialer` reaches.
    public init(dialer: any StreamDialer, messages: UInt64, options: Options = .init(), log: @escaping (String) -> Void = { _ in }) {
        self.dialer = dialer
        total = messages
        self.options = options
        self.log = log
    }

    /// A sender over rdmacm to `host`:`port`.
    public convenience init(host: String, port: UInt16, messages: UInt64, options: Options = .init(),
                            log: @escaping (String) -> Void = { _ in }) {
        self.init(dialer: RDMAStreamDialer(host: host, port: port), messages: messages, options: options, log: log)
    }

    private struct Link {
        let engine: TransferEngine
        let region: MemoryRegion
        let resume: UInt64
    }

    /// Sends every message, reconnecting after faults, and checks the receiver's summary.
    public func run() throws(StreamError) -> SequencedStream.Summary {
        try options.validate()
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
                    summary.seconds = SequencedStream.seconds(since: started)
                    try? link.engine.endpoint.disconnect(timeout: .seconds(2))
                    return summary
                }
                while next < total && inFlight.count < options.window {
                    let index = Int(next % UInt64(options.window))
                    let length = fill(link.region, slot: index, seq: next)
                    let ticket = try link.engine.postSend(try TransferError.bridge { () throws(VerbsError) in
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

    /// Payload bytes that differ per message and per position (a splitmix sequence seeded by `seq`).
    static func fillPayload(_ p: UnsafeMutableRawPointer, count: Int, seq: UInt64) {
        var z = seq &* 0x9E37_79B9_7F4A_7C15
        var i = 0
        while i < count {
            z = z &+ 0x9E37_79B9_7F4A_7C15
            var w = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            w = (w ^ (w >> 27)) &* 0x94D0_49BB_1331_11EB
            w ^= w >> 31
            let n = min(8, count - i)
            withUnsafeBytes(of: w.littleEndian) { (p + i).copyMemory(from: $0.baseAddress!, byteCount: n) }
            i += n
        }
    }

    private func fill(_ region: MemoryRegion, slot index: Int, seq: UInt64) -> Int {
        let slot = SequencedStream.headerSize + options.messageSize
        let base = region.hostAddress! + index * slot
        let length = Self.payloadLength(seq, options.messageSize)
        Self.fillPayload(base + SequencedStream.headerSize, count: length, seq: seq)
        base.storeBytes(of: seq.littleEndian, as: UInt64.self)
        base.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: StreamWire.kindData.littleEndian, toByteOffset: 12, as: UInt32.self)
        let sum = SequencedStream.checksum(base + SequencedStream.headerSize, count: length, seq: seq)
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
        let receive = try link.engine.postReceive(try TransferError.bridge { () throws(VerbsError) in
            try link.region.segment(offset: answerOffset, length: 64)
        })
        base.storeBytes(of: total.littleEndian, as: UInt64.self)
        base.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: StreamWire.kindEnd.littleEndian, toByteOffset: 12, as: UInt32.self)
        try link.engine.send(try TransferError.bridge { () throws(VerbsError) in
            try link.region.segment(offset: 0, length: SequencedStream.headerSize)
        })
        let arrival = try link.engine.nextArrival(timeout: options.timeout)
        guard arrival.ticket == receive, arrival.byteCount >= 16 else {
            throw .invalidArgument("the receiver's summary is \(arrival.byteCount) bytes")
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
            } catch let error as StreamError {
                throw error
            } catch {
                // No device or no such address will not heal by waiting, nor a receiver that
                // refuses this stream and says why (a bad request, over its memory budget).
                if case .notFound = error as? VerbsError { throw StreamError.failed("\(error)") }
                if case let .connection(failure) = error as? VerbsError, failure.reason == .rejected, let why = failure.peerMessage {
                    throw StreamError.failed("the receiver at \(dialer.peerName) refused the stream: \(why)")
                }
                if "\(error)" != last { log("connect attempt \(attempt) failed: \(error); retrying") }
                last = "\(error)"
                usleep(attempt < 10 ? 200_000 : 1_000_000)
            }
        }
        throw StreamError.failed("could not reach the receiver at \(dialer.peerName) within \(options.reconnectWithin): \(last)")
    }

    /// One connection: the hello, the receiver's resume point, the engine and the message slots.
    private func connectOnce() throws -> Link {
        let hello = StreamWire.encode(.init(messageSize: options.messageSize, messages: total, streamID: streamID))
        let (endpoint, answer) = try dialer.dial(hello: hello, sendDepth: options.window + 4, receiveDepth: 4, timeout: .seconds(10))
        let resume: UInt64
        do { resume = try StreamWire.decodeAnswer(answer, messages: total) } catch {
            try? endpoint.disconnect(timeout: .seconds(1))
            throw error
        }
        let slot = SequencedStream.headerSize + options.messageSize
        // Local only: the receiver never reaches into the sender's memory.
        let region = try endpoint.pd.register(try HostBuffer(count: options.window * slot + 64), access: .local)
        var o = TransferOptions(window: options.window, signalInterval: 1, timeout: options.timeout)
        o.maxChunk = slot
        return Link(engine: TransferEngine(endpoint: endpoint, options: o), region: region, resume: resume)
    }
}
