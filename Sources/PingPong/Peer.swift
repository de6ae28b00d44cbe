import CVerbs
import Synchronization
import Verbs

/// Set from a signal handler (Ctrl-C): loops stop and report what they measured.
public let stopRequested = Atomic<Bool>(false)

/// What both sides share: the connected endpoint, the data buffer, a mailbox the peer
/// RDMA-writes control messages into (so control never competes with data for posted
/// receives), and the spin loops with their timeouts.
///
/// The endpoint is a `Connection` (verbs) or any other `ConnectedEndpoint` (VerbsEmbedded's
/// in-memory twin in tests); the memory, mailbox and outbox are registered in its `pd`.
/// Everything goes through the endpoint, with two fast paths for verbs that keep a latency
/// iteration at most one indirect call dearer than direct verbs calls: requests posted many
/// times go through the endpoint's `PreparedPost` (a `PreparedSend` on verbs), and the polls and
/// receive posts of the spin loops go straight to the connection's queue pair when the endpoint
/// is a `Connection`. Either way the same work requests go out.
final class Peer {
    let endpoint: any ConnectedEndpoint
    /// The connection's queue pair when the endpoint is a `Connection`: the spin loops' fast path.
    private let verbs: QueuePair?
    /// On a `Connection` whose buffer takes local writes: the receive into `receiveHalf`,
    /// built once, that `postReceives` posts again and again.
    private let preparedReceive: PreparedReceive?
    let memory: PingPongMemory
    let mailbox: MemoryRegion
    let outbox: MemoryRegion
    var peerBuffer = RemoteBuffer(address: 0, length: 0, rkey: 0)
    var peerMailbox = RemoteBuffer(address: 0, length: 0, rkey: 0)
    let timeout: Duration
    private var sendSeq: UInt64 = 0
    private var receiveSeq: UInt64 = 0
    private var wrID: UInt64 = 0
    private var unsignaled = 0
    var postedReceives = 0
    static let receiveDepth = 64
    /// 32 bytes of control message, then the client's 8-byte heartbeat counter.
    static let mailboxSize = 64
    static let heartbeatOffset: UInt64 = 32
    /// Heartbeats posted so far (the last value written into the peer's mailbox).
    private(set) var heartbeat: UInt64 = 0

    /// The first half of the buffer, where every receive lands.
    let receiveHalf: LocalSegment

    /// `memory`, `mailbox` and `outbox` are registered in `endpoint.pd`; the mailbox (open to
    /// remote write) and the outbox are `mailboxSize` bytes of host memory each.
    init(endpoint: any ConnectedEndpoint, memory: PingPongMemory, mailbox: MemoryRegion, outbox: MemoryRegion,
         timeout: Duration) throws(PingPongError) {
        self.endpoint = endpoint
        verbs = (endpoint as? Connection)?.queuePair
        self.memory = memory
        self.mailbox = mailbox
        self.outbox = outbox
        self.timeout = timeout
        do {
            receiveHalf = try memory.region.segment(offset: 0, length: memory.region.length / 2)
            // Without local write no receive can be posted into the buffer: postReceives then
            // goes through the queue pair, which says why.
            if let verbs, memory.region.access.contains(.localWrite) {
                preparedReceive = try PreparedReceive(queuePair: verbs, id: 0, segment: receiveHalf)
            } else {
                preparedReceive = nil
            }
        } catch {
            throw .verbs(error)
        }
    }

    /// A peer on an already connected `endpoint` with a buffer of two `bufferSize`-byte halves of
    /// host memory (registered with `access`), a mailbox and an outbox, all in `endpoint.pd`. The
    /// caller sets `peerBuffer` and `peerMailbox` to what the other side told it.
    static func onHostMemory(_ endpoint: any ConnectedEndpoint, bufferSize: Int, access: AccessFlags,
                             timeout: Duration) throws(PingPongError) -> Peer {
        let (doubled, overflow) = bufferSize.multipliedReportingOverflow(by: 2)
        guard bufferSize >= 1, !overflow else { throw .verbs(.invalidArgument("buffer size \(bufferSize) out of range")) }
        let memory = try PingPongMemory(hostMemoryOf: doubled, pd: endpoint.pd, access: access)
        let (mailbox, outbox) = try Resources.mailboxes(pd: endpoint.pd)
        return try Peer(endpoint: endpoint, memory: memory, mailbox: mailbox, outbox: outbox, timeout: timeout)
    }

    var timeoutNanoseconds: UInt64 { UInt64(timeout.components.seconds) * 1_000_000_000 + UInt64(timeout.components.attoseconds / 1_000_000_000) }

    /// Set by the spin loops when the peer's next control message has arrived (the client
    /// ended the step early); the loop then stops and the message is read as usual.
    var watchMailbox = false
    var peerFinishedEarly = false

    /// Fails when the peer disconnected (read from the connection's events) or the user stopped.
    func checkAlive(_ what: String) throws(PingPongError) {
        if stopRequested.load(ordering: .relaxed) { throw .interrupted }
        if !endpoint.processEvents() { throw .peerGone("while \(what)") }
        if watchMailbox && controlArrived { peerFinishedEarly = true }
    }

    /// Whether the next control message is there (without consuming it).
    var controlArrived: Bool {
        let box = mailbox.bytes!.baseAddress!
        return ControlMessage.isComplete(first: vkv_load_acquire_u64(box), last: vkv_load_acquire_u64(box + 24), sequence: receiveSeq + 1)
    }

    // MARK: Control messages through the mailbox

    func sendControl(_ kind: ControlKind, _ a: UInt64 = 0, _ b: UInt64 = 0) throws(PingPongError) {
        sendSeq += 1
        let out = outbox.bytes!
        for (index, word) in ControlMessage(sequence: sendSeq, kind: kind, a: a, b: b).words.enumerated() {
            out.storeBytes(of: word, toByteOffset: index * 8, as: UInt64.self)
        }
        let message: any PreparedPost
        do {
            message = try endpoint.prepare(SendRequest(id: 0, operation: .write(peerMailbox, offset: 0), segment: try outbox.segment()))
        } catch {
            throw .verbs(error)
        }
        try post(message, signaled: true)
        try waitSend("sending a control message")
    }

    func receiveControl(_ expected: ControlKind?, what: String) throws(PingPongError) -> (ControlKind, UInt64, UInt64) {
        receiveSeq += 1
        let box = mailbox.bytes!.baseAddress!
        var start = vkv_monotonic_ns()
        var beat = vkv_load_acquire_u64(box + Int(Self.heartbeatOffset))
        var spins = 0
        while true {
            if ControlMessage.isComplete(first: vkv_load_acquire_u64(box), last: vkv_load_acquire_u64(box + 24), sequence: receiveSeq) {
                break
            }
            spins += 1
            if spins & 0xFFF == 0 {
                do {
                    try checkAlive(what)
                } catch .peerGone(let text) {
                    // A peer that says bye and hangs up: its last message may have landed just
                    // after our look at the mailbox and before its disconnect reached us.
                    if ControlMessage.isComplete(first: vkv_load_acquire_u64(box), last: vkv_load_acquire_u64(box + 24),
                                                 sequence: receiveSeq) { break }
                    throw .peerGone(text)
                }
                // A peer busy with a long one-sided step says it is alive; that restarts the clock.
                let now = vkv_monotonic_ns()
                let latest = vkv_load_acquire_u64(box + Int(Self.heartbeatOffset))
                if latest != beat { beat = latest; start = now }
                if now - start > timeoutNanoseconds { throw .timedOut("\(what) (after \(timeout) without word from the peer)") }
            }
        }
        let message = try ControlMessage(sequence: receiveSeq, a: vkv_load_acquire_u64(box + 8), b: vkv_load_acquire_u64(box + 16),
                                         kindWord: vkv_load_acquire_u64(box + 24))
        if let expected, message.kind != expected { throw .protocolError("expected \(expected), got \(message.kind) \(what)") }
        return (message.kind, message.a, message.b)
    }

    /// Bumps the heartbeat counter in the peer's mailbox: an unsignaled 8-byte inline write, so it
    /// needs no completion of its own and the source may change right after posting.
    func sendHeartbeat() throws(PingPongError) {
        heartbeat += 1
        let value = heartbeat
        let scratch = outbox.bytes!.baseAddress! + Int(Self.heartbeatOffset)
        scratch.storeBytes(of: value, as: UInt64.self)
        let segment = try v { () throws(VerbsError) in try outbox.segment(offset: Int(Self.heartbeatOffset), length: 8) }
        try v { () throws(VerbsError) in
            try endpoint.postSend(SendRequest(id: 0, operation: .write(peerMailbox, offset: Self.heartbeatOffset), segment: segment,
                                              signaled: false, inline: true))
        }
    }

    // MARK: Posting and polling

    /// Posts a prepared request; unsignaled ones are retired by the next signaled one, and one
    /// in 32 is signaled so the send queue never fills up with unretired requests. Generic, so a
    /// loop that knows its request is a `PreparedSend` posts it without a dynamic call: its post
    /// is called as `PreparedSend`'s own (the cast folds away once `P` is known), which inlines it;
    /// through the `PreparedPost` requirement the compiler called it out of line or through the
    /// witness table.
    @inline(__always)
    func post<P: PreparedPost>(_ prepared: P, signaled: Bool = false, immediate: UInt32? = nil) throws(PingPongError) {
        wrID += 1
        let signal = signaled || unsignaled >= 31
        do {
            if let send = prepared as? PreparedSend {
                try send.post(id: wrID, signaled: signal, immediate: immediate)
            } else {
                try prepared.post(id: wrID, signaled: signal, immediate: immediate)
            }
        } catch {
            throw .verbs(error)
        }
        if signal { unsignaled = 0; pendingSignals += 1 } else { unsignaled += 1 }
    }

    /// What a step of `operation` posts for `size` bytes: the peer's buffer as the target (reads
    /// land in our first half, everything else goes out of our second), and whether it goes
    /// inline (it fits `inlineLimit`; reads have no payload to inline).
    func request(_ operation: RDMAOperation, size: Int) throws(PingPongError) -> SendRequest {
        let op: SendOperation
        switch operation {
        case .write: op = .write(peerBuffer, offset: 0)
        case .writeImm: op = .writeWithImmediate(peerBuffer, offset: 0, immediate: 0)
        case .send: op = .send
        case .read: op = .read(peerBuffer, offset: 0)
        }
        let segment = try operation == .read ? receiveSegment(size) : sendSegment(size)
        return SendRequest(id: 0, operation: op, segment: segment, inline: operation != .read && size <= inlineLimit)
    }

    /// `request`, checked and built once for the step's loop.
    func prepare(_ operation: RDMAOperation, size: Int) throws(PingPongError) -> any PreparedPost {
        let built = try request(operation, size: size)
        do { return try endpoint.prepare(built) } catch { throw .verbs(error) }
    }

    /// Messages up to this many bytes are posted inline: what was asked, within this QP's cap.
    var inlineLimit = 0

    var pendingSignals = 0
    var aliveCounter = 0

    /// Retires send completions that are there, without waiting.
    @inline(__always)
    func reapSends() throws(PingPongError) {
        if pendingSignals > 0 { try reapPendingSends() }
    }

    private func reapPendingSends() throws(PingPongError) {
        while pendingSignals > 0 {
            var failure: WorkCompletion?
            let n = try v { () throws(VerbsError) in try pollSends { wc in if !wc.isSuccess && failure == nil { failure = wc } } }
            if let failure { do { try failure.check() } catch { throw .verbs(error) } }
            if n == 0 { return }
            pendingSignals -= n
        }
    }

    /// Waits for every signaled send to complete.
    func waitSend(_ what: String) throws(PingPongError) {
        var clock = WaitClock()
        var spins = 0
        while pendingSignals > 0 {
            try reapSends()
            spins += 1
            if spins & 0xFFF == 0 { _ = try spunAWhile(&clock, what, endsWhenPeerFinished: false) }
        }
    }

    /// What a busy-poll wait does every few thousand spins: checks that the peer is still there
    /// (`checkAlive`: a system call on the connection's events) and, with `endsWhenPeerFinished`,
    /// whether it ended the step (returns true), then whether the wait's timeout has passed (a
    /// clock read). Kept out of line, so the spin itself stays a few instructions, and one function
    /// that `make bench-count` leaves out by name: how often it runs is set by how long the wait
    /// lasts, not by the messages (docs/iteration-cost.md).
    @inline(never)
    func spunAWhile(_ clock: inout WaitClock, _ what: String, endsWhenPeerFinished: Bool) throws(PingPongError) -> Bool {
        try checkAlive(what)
        if endsWhenPeerFinished && peerFinishedEarly { return true }
        if clock.expired(after: timeoutNanoseconds) { throw .timedOut("\(what) (after \(timeout))") }
        return false
    }

    /// Event mode: the receive queue (made with a completion channel) whose waits sleep on the
    /// channel instead of spinning. Set only on a `Connection`'s peer.
    var eventQueue: CompletionQueue?
    /// How long one sleep on the channel lasts at most before the loop checks the peer, Ctrl-C
    /// and the mailbox (a peer that ended the step writes no completion).
    static let eventSlice: Duration = .milliseconds(50)

    /// Waits for one receive completion: busy-polls the receive queue, or in event mode
    /// (`eventQueue`) sleeps on its channel. The caller posts a receive in its place
    /// (`postReceives`) once its answer is on the way: with `receiveDepth` posted there is no
    /// hurry, and the repost then stays off the round trip.
    /// Returns true for a receive that succeeded, false when the peer ended the step instead.
    @inline(__always)
    func waitReceive(_ what: String) throws(PingPongError) -> Bool {
        if let eventQueue { return try waitReceiveEvent(eventQueue, what) }
        var clock = WaitClock()
        var spins = 0
        while true {
            let got: CompletionPoll
            do { got = try pollOneReceive() } catch { throw .verbs(error) }
            switch got {
            case .empty: break
            case .success:
                postedReceives -= 1
                return true
            case .failure(let wc): try failed(wc, what)
            }
            spins += 1
            if spins & 0xFFF == 0, try spunAWhile(&clock, what, endsWhenPeerFinished: true) { return false }
        }
    }

    /// A failed receive completion taken off the queue ends the step with its cause.
    private func failed(_ wc: WorkCompletion, _ what: String) throws(PingPongError) -> Never {
        if wc.status == .flushed { throw .peerGone("while \(what)") }
        do { try wc.check() } catch { throw .verbs(error) }
        throw .protocolError("receive failed with \(wc.status)")
    }

    /// `waitReceive` in event mode: arms the queue and sleeps on its channel (the connection's
    /// events watched too, so a peer that leaves wakes it), `eventSlice` at a time, the whole wait
    /// bounded by the peer's timeout.
    private func waitReceiveEvent(_ cq: CompletionQueue, _ what: String) throws(PingPongError) -> Bool {
        let start = vkv_monotonic_ns()
        let connection = endpoint as? Connection
        while true {
            let got: [WorkCompletion]
            do {
                got = try cq.wait(timeout: Self.eventSlice, mode: .event, max: 1, watching: connection)
            } catch .timedOut {
                got = []
            } catch {
                throw .verbs(error)
            }
            if let wc = got.first {
                guard wc.isSuccess else { try failed(wc, what) }
                postedReceives -= 1
                return true
            }
            try checkAlive(what)
            if peerFinishedEarly { return false }
            if vkv_monotonic_ns() - start > timeoutNanoseconds { throw .timedOut("\(what) (after \(timeout))") }
        }
    }

    /// The receive `postReceives` reposts on verbs, for a loop to hold while it runs
    /// (`postReceives(through:)`).
    var receivePost: PreparedReceive? { preparedReceive }

    /// Keeps `receiveDepth` receives posted into the receive half (sends and write-with-immediate consume them).
    @inline(__always)
    func postReceives() throws(PingPongError) { try postReceives(through: preparedReceive) }

    /// `postReceives` through `prepared` (this peer's `receivePost`), which the caller holds for
    /// the whole loop, so no post takes and drops a reference to it.
    @inline(__always)
    func postReceives(through prepared: PreparedReceive?) throws(PingPongError) {
        while postedReceives < Self.receiveDepth {
            do {
                if let prepared {
                    try prepared.post()
                } else if let verbs {
                    try verbs.postReceive(id: 0, segment: receiveHalf)
                } else {
                    try endpoint.postReceive(id: 0, segment: receiveHalf)
                }
            } catch {
                throw .verbs(error)
            }
            postedReceives += 1
        }
    }

    /// Takes up to 16 send completions that are there, without waiting, and hands each to `body`.
    /// Returns how many there were.
    func pollSends(_ body: (WorkCompletion) -> Void) throws(VerbsError) -> Int {
        if let verbs { return try Self.poll(verbs.sendCQ, body) }
        let got = try endpoint.pollSendCompletions(max: 16)
        got.forEach(body)
        return got.count
    }

    /// Takes up to 16 receive completions that are there, without waiting, and hands each to
    /// `body`. Returns how many there were. `postedReceives` is the caller's to keep.
    func pollReceives(_ body: (WorkCompletion) -> Void) throws(VerbsError) -> Int {
        if let verbs { return try Self.poll(verbs.receiveCQ, body) }
        let got = try endpoint.pollReceiveCompletions(max: 16)
        got.forEach(body)
        return got.count
    }

    /// At most one receive completion, without waiting or allocating on verbs.
    @inline(__always)
    private func pollOneReceive() throws(VerbsError) -> CompletionPoll {
        if let verbs { return try verbs.receiveCQ.pollOneStatus() }
        guard let wc = try endpoint.pollReceiveCompletions(max: 1).first else { return .empty }
        return wc.isSuccess ? .success : .failure(wc)
    }

    /// `CompletionQueue.poll` with a body that cannot throw: only its own errors come out.
    private static func poll(_ cq: CompletionQueue, _ body: (WorkCompletion) -> Void) throws(VerbsError) -> Int {
        do { return try cq.poll(max: 16, body) } catch let error as VerbsError { throw error } catch {
            throw VerbsError.invalidArgument("polling \(cq) failed: \(error)")
        }
    }

    /// The buffer's halves: peers write and send into the first, we post from the second.
    var half: Int { memory.region.length / 2 }

    func sendSegment(_ size: Int) throws(PingPongError) -> LocalSegment {
        try v { () throws(VerbsError) in try memory.region.segment(offset: half, length: size) }
    }

    func receiveSegment(_ size: Int) throws(PingPongError) -> LocalSegment {
        try v { () throws(VerbsError) in try memory.region.segment(offset: 0, length: size) }
    }

    /// Spins until the last byte of the first `size` bytes of our buffer holds `tag` (write latency).
    /// Returns false when the peer ended the step instead.
    @discardableResult
    func waitLastByte(size: Int, tag: UInt8, _ what: String) throws(PingPongError) -> Bool {
        try waitByte(memory.hostBytes! + (size - 1), tag: tag, what)
    }

    /// `waitLastByte` with the byte's address worked out once per step (`p`, in our buffer).
    @inline(__always)
    func waitByte(_ p: UnsafeMutableRawPointer, tag: UInt8, _ what: String) throws(PingPongError) -> Bool {
        var clock = WaitClock()
        var spins = 0
        while vkv_load_acquire_u8(p) != tag {
            spins += 1
            if spins & 0xFFFF == 0, try spunAWhile(&clock, what, endsWhenPeerFinished: true) { return false }
        }
        return true
    }
}

/// A wait's timeout clock that reads the time only once the wait has spun a while: most waits in
/// a ping-pong end within microseconds, and a clock read at each wait's start would cost a system
/// call per iteration where the clocksource is not the TSC. The timeout thus starts a few
/// thousand spins late, which is far below its resolution.
struct WaitClock {
    private var start: UInt64 = 0
    mutating func expired(after nanoseconds: UInt64) -> Bool {
        let now = vkv_monotonic_ns()
        if start == 0 { start = now; return false }
        return now - start > nanoseconds
    }
}
