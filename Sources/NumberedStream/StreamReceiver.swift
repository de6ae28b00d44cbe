import Transfer
import Verbs

/// The receiving end: `vkverbs stream --server`. Keeps what it accepted across connections, so
/// a sender that reconnects (same stream id) resumes where the receiver stands.
public final class StreamReceiver {
    public typealias Options = SequencedStream.Options
    public typealias StreamError = SequencedStream.StreamError
    public let acceptor: any StreamAcceptor
    let options: Options
    let log: (String) -> Void
    public var progress: (UInt64) -> Void = { _ in }
    /// Test hook: after accepting this many messages, the receiver drives its endpoint to the error state.
    public var faultAfter: Set<UInt64> = []

    /// A receiver taking senders from `acceptor`.
    public init(acceptor: any StreamAcceptor, options: Options = .init(), log: @escaping (String) -> Void = { _ in }) {
        self.acceptor = acceptor
        self.options = options
        self.log = log
    }

    /// A receiver over an rdmacm listener on `bind`:`port` (0: any free port).
    public convenience init(bind: String?, port: UInt16, options: Options = .init(), log: @escaping (String) -> Void = { _ in })
        throws(VerbsError) {
        self.init(acceptor: try RDMAStreamAcceptor(bind: bind, port: port), options: options, log: log)
    }

    /// The rdmacm listener, when the acceptor is one.
    public var listener: Listener? { (acceptor as? RDMAStreamAcceptor)?.listener }

    private final class Link {
        let engine: TransferEngine
        let region: MemoryRegion
        let slot: Int
        var slotOf: [Ticket: Int] = [:]
        init(engine: TransferEngine, region: MemoryRegion, slot: Int) { self.engine = engine; self.region = region; self.slot = slot }
        func post(_ index: Int) throws(TransferError) {
            let ticket = try engine.postReceive(try TransferError.bridge { () throws(VerbsError) in
                try region.segment(offset: index * slot, length: slot)
            })
            slotOf[ticket] = index
        }
    }

    private var streamID: UInt64 = 0
    private var acceptance = StreamAcceptance(messages: 0, messageSize: 0)
    private var link: Link?

    /// Receives one stream to its end marker and returns what was accepted. Fails when no sender
    /// has been connected for `reconnectWithin`, or on a gap, a duplicate or a bad checksum.
    public func run() throws(StreamError) -> SequencedStream.Summary {
        try options.validate()
        let started = ContinuousClock.now
        defer { link = nil }
        var quietSince = ContinuousClock.now
        while true {
            if link == nil || ContinuousClock.now - quietSince > .seconds(1) {
                // A new request replaces the current connection: the sender reconnected (perhaps
                // after a link fault this side has not noticed yet).
                if let fresh = acceptNext(wait: link == nil ? .seconds(1) : .zero) {
                    // Every connection of this stream after its first is a reconnect, whether
                    // this side saw the old one end or not.
                    acceptance.noteConnection()
                    link = fresh
                    quietSince = ContinuousClock.now
                }
            }
            guard let current = link else {
                if ContinuousClock.now - quietSince > options.reconnectWithin {
                    throw StreamError.failed("no sender for \(options.reconnectWithin) (\(acceptance.summary.accepted) messages accepted)")
                }
                continue
            }
            let arrival: Arrival
            do {
                arrival = try current.engine.nextArrival(timeout: .seconds(1))
            } catch .timedOut {
                if ContinuousClock.now - quietSince > options.reconnectWithin {
                    throw StreamError.failed("nothing from the sender for \(options.reconnectWithin) (\(acceptance.summary.accepted) messages accepted)")
                }
                continue
            } catch {
                log("connection lost after \(acceptance.summary.accepted) accepted messages: \(error); waiting for the sender")
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
            guard arrival.byteCount <= current.slot else {
                throw StreamError.protocolError("a \(arrival.byteCount)-byte arrival in a \(current.slot)-byte slot")
            }
            if try acceptance.accept(UnsafeRawBufferPointer(start: base, count: arrival.byteCount)) {
                // The end marker: say what was accepted, then let the sender close.
                let out = current.region.hostAddress! + options.window * current.slot
                out.storeBytes(of: acceptance.summary.accepted.littleEndian, as: UInt64.self)
                out.storeBytes(of: acceptance.summary.digest.littleEndian, toByteOffset: 8, as: UInt64.self)
                do {
                    try current.engine.send(try TransferError.bridge { () throws(VerbsError) in
                        try current.region.segment(offset: options.window * current.slot, length: 16)
                    })
                    _ = try? current.engine.connection?.waitForPeerDisconnect(timeout: options.timeout)
                } catch {
                    log("could not send the summary: \(error)")
                }
                try? current.engine.endpoint.disconnect(timeout: .seconds(1))
                acceptance.finish(seconds: SequencedStream.seconds(since: started))
                return acceptance.summary
            }
            if acceptance.summary.accepted % options.progressEvery == 0 { progress(acceptance.summary.accepted) }
            if !faultAfter.isEmpty, faultAfter.remove(acceptance.summary.accepted) != nil {  // test hook, off the usual path
                log("fault injected: QP driven to the error state after accepting \(acceptance.summary.accepted) messages")
                try? current.engine.endpoint.abort()
            }
            do { try current.post(index) } catch {
                log("could not re-post a receive: \(error)")
            }
        }
    }

    /// What to say to a sender's hello; checked in full before anything is allocated for it.
    private func decide(_ hello: [UInt8]) -> StreamDecision {
        let h: StreamWire.Hello
        do { h = try StreamWire.decodeHello(hello, maxMessageSize: SequencedStream.maxMessageSize) } catch {
            log("refused a connection: \(error)")
            return .reject(reason: "bad request")
        }
        guard let bytes = options.receiveMemory(messageSize: h.messageSize), bytes <= options.maxReceiveMemory else {
            log("refused a connection: \(options.window) slots of \(h.messageSize)-byte messages exceed the \(options.maxReceiveMemory)-byte budget")
            return .reject(reason: "over memory budget: at most \(options.maxReceiveMemory) bytes")
        }
        if h.streamID != streamID || h.messageSize != acceptance.messageSize || h.messages != acceptance.messages {
            if streamID != 0 && acceptance.summary.accepted < acceptance.messages {
                log("a new stream replaces one left at \(acceptance.summary.accepted) of \(acceptance.messages) messages")
            }
            streamID = h.streamID
            acceptance = StreamAcceptance(messages: h.messages, messageSize: h.messageSize)
        }
        if let old = link {
            // A sender that connects again has given up on the old connection (perhaps after a
            // link fault this side never saw): it goes first, so no stale cm_id lingers.
            log("the sender reconnected; dropping the old connection")
            try? old.engine.endpoint.disconnect(timeout: .milliseconds(200))
            link = nil
        }
        return .accept(answer: StreamWire.encodeAnswer(resume: acceptance.summary.accepted))
    }

    /// Takes the next connection request, if one is there within `wait`, and sets it up with
    /// the resume point. A refused or failed request is logged and the receiver goes on.
    private func acceptNext(wait: Duration) -> Link? {
        let endpoint: any ConnectedEndpoint
        do {
            guard let accepted = try acceptor.accept(wait: wait, sendDepth: 4, receiveDepth: options.window + 4, timeout: .seconds(10),
                                                     decide: decide) else { return nil }
            endpoint = accepted
        } catch {
            log("refused a connection: \(error)")
            return nil
        }
        do {
            let slot = SequencedStream.headerSize + acceptance.messageSize
            // Local only: messages arrive by send/recv; nothing is exposed for RDMA write or read.
            let region = try endpoint.pd.register(try HostBuffer(count: options.window * slot + 64), access: .local)
            let engine = TransferEngine(endpoint: endpoint, options: TransferOptions(window: 4, signalInterval: 1, timeout: options.timeout))
            let link = Link(engine: engine, region: region, slot: slot)
            for index in 0..<options.window { try link.post(index) }
            log("sender connected: stream \(String(streamID, radix: 16)), \(acceptance.messages) messages of up to "
                + "\(acceptance.messageSize) bytes, resuming at \(acceptance.summary.accepted)")
            return link
        } catch {
            log("setting up a connection failed: \(error)")
            try? endpoint.disconnect(timeout: .milliseconds(200))
            return nil
        }
    }
}
