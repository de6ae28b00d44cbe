import Verbs

/// The transfer engine's bookkeeping: tickets, the window, selective signaling, retirement
/// and the sticky failure. It does no I/O of its own: every post, poll and wait goes to the
/// endpoint it is handed, so the same logic runs over verbs and over the in-memory twin.
/// It lives behind the engine's lock; nothing here is shared.
struct EngineCore {
    /// A signaled request in flight: it retires every request up to `wr`, and ends `ends`.
    struct Signaled {
        var wr: UInt64
        var covers: Int
        var ends: Ticket?
        var name: String
    }

    let window: Int
    let signalInterval: Int
    let maxChunk: Int
    let waitMode: CompletionWaitMode
    let defaultTimeout: Duration
    /// Receives that may be posted at once (what the completion queue has room for).
    let receiveLimit: Int

    private var nextWR: UInt64 = 1
    private var nextOp: UInt64 = 1
    private var lastSignaledWR: UInt64 = 0
    private var signaled: [Signaled] = []
    private var inFlight = 0
    private var emptyPolls = 0
    /// Send-side operations posted and not yet completed. A ticket below `nextOp` that is not
    /// here has finished (or was a receive), so nothing finished needs remembering.
    private(set) var outstanding: Set<Ticket> = []
    /// Receives posted, in posting order (RC completes them in that order).
    private var receives: [Ticket] = []
    private(set) var failure: TransferError?

    init(options: TransferOptions, maxChunk: Int, receiveLimit: Int = .max) {
        self.receiveLimit = receiveLimit
        window = options.window
        signalInterval = options.signalInterval
        self.maxChunk = maxChunk
        waitMode = options.waitMode
        defaultTimeout = options.timeout
    }

    // MARK: Posting

    mutating func postWrite(_ endpoint: any ConnectedEndpoint, _ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64,
                            immediate: UInt32?) throws(TransferError) -> Ticket {
        try checkRemote(remote, offset: offset, length: segment.length, "RDMA write")
        return try postChunked(endpoint, segment, name: immediate == nil ? "RDMA write" : "RDMA write with immediate") { delta, last in
            if let immediate, last { return .writeWithImmediate(remote, offset: offset + delta, immediate: immediate) }
            return .write(remote, offset: offset + delta)
        }
    }

    mutating func postRead(_ endpoint: any ConnectedEndpoint, into segment: LocalSegment, from remote: RemoteBuffer,
                           at offset: UInt64) throws(TransferError) -> Ticket {
        try checkRemote(remote, offset: offset, length: segment.length, "RDMA read")
        guard segment.region.access.contains(.localWrite) else {
            throw TransferError.accessDenied("an RDMA read lands in local memory registered without local write")
        }
        return try postChunked(endpoint, segment, name: "RDMA read") { delta, _ in .read(remote, offset: offset + delta) }
    }

    mutating func postSend(_ endpoint: any ConnectedEndpoint, _ segment: LocalSegment?, immediate: UInt32?) throws(TransferError) -> Ticket {
        if let segment, segment.length > maxChunk {
            throw TransferError.outOfBounds("a send of \(segment.length) bytes exceeds the message size \(maxChunk)")
        }
        let op: SendOperation = immediate.map { .sendWithImmediate($0) } ?? .send
        let name = op == .send ? "send" : "send with immediate"
        try checkUsable(endpoint, name)
        let ticket = newTicket()
        outstanding.insert(ticket)
        try postOne(endpoint, op, segment: segment, name: name, last: true, ticket: ticket)
        return ticket
    }

    mutating func postReceive(_ endpoint: any ConnectedEndpoint, _ segment: LocalSegment?) throws(TransferError) -> Ticket {
        try checkUsable(endpoint, "receive")
        guard receives.count < receiveLimit else {
            throw TransferError.outOfBounds("\(receives.count) receives are posted, as many as the completion queue has room for")
        }
        let ticket = newTicket()
        try TransferError.bridge { () throws(VerbsError) in try endpoint.postReceive(id: ticket.id, segment: segment) }
        receives.append(ticket)
        return ticket
    }

    private mutating func newTicket() -> Ticket { defer { nextOp += 1 }; return Ticket(id: nextOp) }

    private func checkRemote(_ remote: RemoteBuffer, offset: UInt64, length: Int, _ name: String) throws(TransferError) {
        guard offset <= remote.length, UInt64(length) <= remote.length - offset else {
            throw TransferError.outOfBounds("\(name) of \(length) bytes at offset \(offset) exceeds the \(remote.length)-byte remote buffer")
        }
    }

    /// Throws the sticky failure, or `.disconnected` (recorded) when the connection is down.
    private mutating func checkUsable(_ endpoint: any ConnectedEndpoint, _ name: String) throws(TransferError) {
        if let failure { throw failure }
        if !endpoint.isConnected { throw fail(.disconnected(operation: name)) }
    }

    private mutating func postChunked(_ endpoint: any ConnectedEndpoint, _ segment: LocalSegment, name: String,
                                      _ operation: (UInt64, Bool) -> SendOperation) throws(TransferError) -> Ticket {
        try checkUsable(endpoint, name)
        let ticket = newTicket()
        outstanding.insert(ticket)
        var done = 0
        repeat {
            let n = min(maxChunk, segment.length - done)
            let chunk = try TransferError.bridge { () throws(VerbsError) in try segment.region.segment(offset: segment.offset + done, length: n) }
            let last = done + n == segment.length
            try postOne(endpoint, operation(UInt64(done), last), segment: chunk, name: name, first: done == 0, last: last, ticket: ticket)
            done += n
        } while done < segment.length
        return ticket
    }

    private mutating func postOne(_ endpoint: any ConnectedEndpoint, _ op: SendOperation, segment: LocalSegment?, name: String,
                                  first: Bool = true, last: Bool, ticket: Ticket) throws(TransferError) {
        try checkUsable(endpoint, name)
        while inFlight >= window { try reap(endpoint, timeout: nil, operation: name) }
        let wr = nextWR
        let signal = last || wr - lastSignaledWR >= UInt64(signalInterval)
        do {
            try endpoint.postSend(SendRequest(id: wr, operation: op, segment: segment, signaled: signal))
        } catch {
            // Refused before the device saw it. As the operation's first request, nothing started:
            // the caller's error, not the engine's. Later, earlier chunks are out and the
            // operation can never end: the engine has failed.
            outstanding.remove(ticket)
            if first { throw TransferError(error) }
            throw fail(TransferError(error))
        }
        nextWR += 1
        inFlight += 1
        if signal {
            signaled.append(Signaled(wr: wr, covers: Int(wr - lastSignaledWR), ends: last ? ticket : nil, name: name))
            lastSignaledWR = wr
        }
    }

    // MARK: Room (for callers that must not block while posting)

    /// Work requests an operation of `length` bytes takes (at least one).
    func requests(for length: Int) -> Int { max(1, (length + maxChunk - 1) / maxChunk) }

    /// Whether an operation of `requests` work requests can be posted now without waiting for
    /// the window: it fits beside what is in flight. A caller that posts only when this holds
    /// never waits inside a post (the window check in `postOne` never fires).
    func hasRoom(for requests: Int) -> Bool { inFlight + requests <= window }

    /// Receives posted and not yet completed.
    var receivesPosted: Int { receives.count }

    /// Whether signaled send-queue requests are outstanding.
    var sendsInFlight: Bool { !signaled.isEmpty }

    /// Records `error` as the engine's failure unless one is recorded already (the first stays).
    mutating func recordFailure(_ error: TransferError) -> TransferError { fail(error) }

    // MARK: Completions

    /// Retires what is there without waiting; returns the operations that finished.
    mutating func progress(_ endpoint: any ConnectedEndpoint) throws(TransferError) -> [Ticket] {
        if let failure { throw failure }
        let wcs = try TransferError.bridge { () throws(VerbsError) in try endpoint.pollSendCompletions(max: 32) }
        var finished: [Ticket] = []
        for wc in wcs { if let t = try retire(endpoint, wc) { finished.append(t) } }
        if wcs.isEmpty && !signaled.isEmpty {
            // A peer that went away is seen in the connection events, which then flush what is
            // outstanding; read them now and then, not on every empty poll (a system call).
            emptyPolls += 1
            if emptyPolls & 63 == 0 && !endpoint.processEvents() { throw fail(.disconnected(operation: signaled[0].name)) }
        }
        return finished
    }

    /// Whether `ticket` has finished, retiring what is there first (never waits).
    mutating func isFinished(_ endpoint: any ConnectedEndpoint, _ ticket: Ticket) throws(TransferError) -> Bool {
        try checkKnown(ticket)
        if !outstanding.contains(ticket) { return true }
        _ = try progress(endpoint)
        return !outstanding.contains(ticket)
    }

    mutating func wait(_ endpoint: any ConnectedEndpoint, for ticket: Ticket, timeout: Duration) throws(TransferError) {
        try checkKnown(ticket)
        let start = ContinuousClock.now
        while outstanding.contains(ticket) {
            // It will never complete now: RC completes in order, and nothing follows a failure.
            if let failure { throw failure }
            let left = timeout - (ContinuousClock.now - start)
            if left <= .zero {
                // One last look: a completion may be there although the time is up.
                _ = try progress(endpoint)
                if !outstanding.contains(ticket) { break }
                throw TransferError.timedOut(operation: "waiting for operation \(ticket.id)", after: timeout)
            }
            try reap(endpoint, timeout: left, operation: "operation \(ticket.id)")
        }
    }

    mutating func drain(_ endpoint: any ConnectedEndpoint, timeout: Duration) throws(TransferError) {
        let start = ContinuousClock.now
        while !signaled.isEmpty {
            let left = timeout - (ContinuousClock.now - start)
            if left <= .zero { throw TransferError.timedOut(operation: "draining", after: timeout) }
            try reap(endpoint, timeout: left, operation: "draining")
        }
        if let failure { throw failure }
    }

    private func checkKnown(_ ticket: Ticket) throws(TransferError) {
        guard ticket.id > 0, ticket.id < nextOp else {
            throw TransferError.invalidArgument("operation \(ticket.id) was never posted on this engine")
        }
        if receives.contains(ticket) {
            throw TransferError.invalidArgument("operation \(ticket.id) is a receive: wait for it with nextArrival")
        }
    }

    /// Waits for send-queue completions (nil: the options' timeout) and retires them.
    private mutating func reap(_ endpoint: any ConnectedEndpoint, timeout: Duration?, operation: String) throws(TransferError) {
        if let failure { throw failure }
        let wcs: [WorkCompletion]
        do {
            wcs = try endpoint.waitSendCompletions(timeout: timeout ?? defaultTimeout, mode: waitMode, max: 32)
        } catch {
            if !endpoint.isConnected { throw fail(.disconnected(operation: operation)) }
            throw TransferError(error)
        }
        for wc in wcs { _ = try retire(endpoint, wc) }
    }


    /// Accounts for one send-queue completion; RC completes in order, so it retires every
    /// unsignaled request posted before it. A failed one fails the engine.
    private mutating func retire(_ endpoint: any ConnectedEndpoint, _ wc: WorkCompletion) throws(TransferError) -> Ticket? {
        if !wc.isSuccess {
            // Every operation ends with a signaled request, so the first signaled one at or after
            // the failed request belongs to its operation.
            let name = signaled.first { $0.wr >= wc.workRequestID }?.name ?? "operation"
            throw fail(wc.status == .flushed && !endpoint.isConnected
                       ? .disconnected(operation: name)
                       : .failed(operation: name, status: wc.status, vendorError: wc.vendorError))
        }
        var finished: Ticket?
        while let first = signaled.first, first.wr <= wc.workRequestID {
            signaled.removeFirst()
            inFlight -= first.covers
            if let t = first.ends {
                outstanding.remove(t)
                finished = t
            }
        }
        return finished
    }

    /// Records the first failure; every later call throws it.
    private mutating func fail(_ error: TransferError) -> TransferError {
        if failure == nil { failure = error }
        return failure!
    }

    // MARK: Receiving

    mutating func nextArrival(_ endpoint: any ConnectedEndpoint, timeout: Duration) throws(TransferError) -> Arrival {
        if let failure { return try arrivedBefore(failure, endpoint) }
        guard !receives.isEmpty else { throw TransferError.invalidArgument("no receive is posted") }
        let wcs: [WorkCompletion]
        do {
            wcs = try endpoint.waitReceiveCompletions(timeout: timeout, mode: waitMode, max: 1)
        } catch {
            if !endpoint.isConnected { throw fail(.disconnected(operation: "receive")) }
            throw TransferError(error)
        }
        return try arrived(endpoint, wcs[0])
    }

    /// The next arrival if one is there (never waits).
    /// With `readEvents` false an empty poll does not read the connection's events (a system
    /// call): for a progress loop that reads them on its own schedule.
    mutating func pollArrival(_ endpoint: any ConnectedEndpoint, readEvents: Bool = true) throws(TransferError) -> Arrival? {
        if let failure { return try arrivedBefore(failure, endpoint) }
        guard !receives.isEmpty else { throw TransferError.invalidArgument("no receive is posted") }
        let wcs = try TransferError.bridge { () throws(VerbsError) in try endpoint.pollReceiveCompletions(max: 1) }
        if wcs.isEmpty {
            if readEvents && !endpoint.processEvents() { throw fail(.disconnected(operation: "receive")) }
            return nil
        }
        return try arrived(endpoint, wcs[0])
    }

    /// After a failure: a message that arrived before it (its completion is queued ahead of
    /// the flushes, RC completes in order) is still handed out, since the peer saw it delivered;
    /// after those, the failure.
    private mutating func arrivedBefore(_ failure: TransferError, _ endpoint: any ConnectedEndpoint) throws(TransferError) -> Arrival {
        guard !receives.isEmpty, let wc = (try? endpoint.pollReceiveCompletions(max: 1))?.first else { throw failure }
        // A flush after the failure rethrows the recorded failure (`fail` keeps the first).
        return try arrived(endpoint, wc)
    }

    private mutating func arrived(_ endpoint: any ConnectedEndpoint, _ wc: WorkCompletion) throws(TransferError) -> Arrival {
        let ticket = receives.removeFirst()
        guard wc.isSuccess else {
            if wc.status == .flushed && !endpoint.isConnected { throw fail(.disconnected(operation: "receive")) }
            throw fail(.failed(operation: "receive", status: wc.status, vendorError: wc.vendorError))
        }
        return Arrival(ticket: ticket, byteCount: Int(wc.byteCount), immediate: wc.immediate)
    }
}
