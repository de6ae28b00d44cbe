import Dispatch
import Verbs

/// How the engine posts and waits.
public struct TransferOptions: Sendable {
    /// Send work requests in flight at most (bounded by the QP's send queue).
    public var window: Int
    /// Every this many requests one is signaled, so completions stay few but the send
    /// queue still drains; the last request of each operation is always signaled.
    public var signalInterval: Int
    /// Largest single work request; nil: the port's max message size, capped at 8 MiB so
    /// long transfers pipeline.
    public var maxChunk: Int?
    public var waitMode: CompletionWaitMode
    /// Bound on each blocking call.
    public var timeout: Duration

    public init(window: Int = 64, signalInterval: Int = 16, maxChunk: Int? = nil,
                waitMode: CompletionWaitMode = .event, timeout: Duration = .seconds(30)) {
        self.window = window
        self.signalInterval = signalInterval
        self.maxChunk = maxChunk
        self.waitMode = waitMode
        self.timeout = timeout
    }
}

/// Identifies one posted operation (all its chunks).
public struct Ticket: Hashable, Sendable, Comparable {
    public let id: UInt64
    public static func < (a: Ticket, b: Ticket) -> Bool { a.id < b.id }
}

/// A message or write-with-immediate that arrived.
public struct Arrival: Sendable, Equatable {
    public var ticket: Ticket
    public var byteCount: Int
    /// Set for send-with-immediate and write-with-immediate.
    public var immediate: UInt32?
}

/// Moves bytes over one RC connection: RDMA write (optionally with immediate), read,
/// send/recv; chunked to the port's message size, a window of outstanding requests,
/// selective signaling, bounds and access checks before posting, typed errors for error
/// completions, and prompt failure of everything outstanding when the peer goes away.
///
/// One thread at a time drives an engine; the `async` methods serialize on the engine's own queue.
public final class TransferEngine: @unchecked Sendable {
    public let connection: Connection
    public let options: TransferOptions
    public let maxChunk: Int
    let queue = DispatchQueue(label: "vkverbs.transfer")

    private var qp: QueuePair { connection.queuePair }
    private var nextWR: UInt64 = 1
    private var nextOp: UInt64 = 1
    private var lastSignaledWR: UInt64 = 0
    /// Signaled requests in flight, in posting order: (wr_id, requests it retires, op it ends, op name).
    private var signaled: [(wr: UInt64, covers: Int, ends: Ticket?, name: String)] = []
    private var inFlight = 0
    private var completed: Set<Ticket> = []
    private var failure: TransferError?
    private var receives: [Ticket] = []

    public init(connection: Connection, options: TransferOptions = .init()) throws(TransferError) {
        guard connection.queuePair.sendCQ !== connection.queuePair.receiveCQ else {
            throw TransferError.verbs(.invalidArgument("the engine needs separate send and receive completion queues"))
        }
        self.connection = connection
        var o = options
        o.window = max(1, min(o.window, Int(connection.queuePair.capabilities.maxSendRequests)))
        o.signalInterval = max(1, min(o.signalInterval, o.window))
        self.options = o
        let portMax = (try? connection.context.activePort().maxMessageSize).map(Int.init) ?? (1 << 30)
        maxChunk = max(1, min(o.maxChunk ?? (8 << 20), portMax))
    }

    // MARK: Posting

    /// Posts an RDMA write of `segment` into `remote` at `offset`; with `immediate`, the last
    /// chunk carries it, so the peer is told once, after all the bytes are there.
    public func postWrite(_ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64 = 0,
                          immediate: UInt32? = nil) throws(TransferError) -> Ticket {
        try checkRemote(remote, offset: offset, length: segment.length, "RDMA write")
        return try postChunked(segment, name: immediate == nil ? "RDMA write" : "RDMA write with immediate") { chunk, delta, last in
            if let immediate, last { return .writeWithImmediate(remote, offset: offset + delta, immediate: immediate) }
            return .write(remote, offset: offset + delta)
        }
    }

    /// Posts an RDMA read from `remote` at `offset` into `segment`.
    public func postRead(into segment: LocalSegment, from remote: RemoteBuffer, at offset: UInt64 = 0) throws(TransferError) -> Ticket {
        try checkRemote(remote, offset: offset, length: segment.length, "RDMA read")
        guard segment.region.access.contains(.localWrite) else {
            throw TransferError.accessDenied("an RDMA read lands in local memory registered without local write")
        }
        return try postChunked(segment, name: "RDMA read") { _, delta, _ in .read(remote, offset: offset + delta) }
    }

    /// Posts a send (one message: it is not chunked, the peer's receive must hold it).
    public func postSend(_ segment: LocalSegment?, immediate: UInt32? = nil) throws(TransferError) -> Ticket {
        if let segment, segment.length > maxChunk {
            throw TransferError.outOfBounds("a send of \(segment.length) bytes exceeds the message size \(maxChunk)")
        }
        let op: SendOperation = immediate.map { .sendWithImmediate($0) } ?? .send
        return try postOne(op, segment: segment, name: op == .send ? "send" : "send with immediate", last: true, ticket: newTicket())
    }

    /// Posts a receive for the next incoming send or write-with-immediate.
    public func postReceive(_ segment: LocalSegment?) throws(TransferError) -> Ticket {
        try checkUsable("receive")
        let ticket = newTicket()
        try verbs { () throws(VerbsError) in try qp.postReceive(id: ticket.id, segment: segment) }
        receives.append(ticket)
        return ticket
    }

    private func newTicket() -> Ticket { defer { nextOp += 1 }; return Ticket(id: nextOp) }

    private func checkRemote(_ remote: RemoteBuffer, offset: UInt64, length: Int, _ name: String) throws(TransferError) {
        guard offset <= remote.length, UInt64(length) <= remote.length - offset else {
            throw TransferError.outOfBounds("\(name) of \(length) bytes at offset \(offset) exceeds the \(remote.length)-byte remote buffer")
        }
    }

    private func checkUsable(_ name: String) throws(TransferError) {
        if let failure { throw failure }
        if !connection.isConnected { throw TransferError.disconnected(operation: name) }
    }

    private func postChunked(_ segment: LocalSegment, name: String,
                             _ operation: (LocalSegment, UInt64, Bool) -> SendOperation) throws(TransferError) -> Ticket {
        let ticket = newTicket()
        var done = 0
        repeat {
            let n = min(maxChunk, segment.length - done)
            let chunk = try verbs { () throws(VerbsError) in
                try segment.region.segment(offset: segment.offset + done, length: n)
            }
            let last = done + n == segment.length
            _ = try postOne(operation(chunk, UInt64(done), last), segment: chunk, name: name, last: last, ticket: ticket)
            done += n
        } while done < segment.length
        return ticket
    }

    private func postOne(_ op: SendOperation, segment: LocalSegment?, name: String, last: Bool, ticket: Ticket) throws(TransferError) -> Ticket {
        try checkUsable(name)
        while inFlight >= options.window { try reap(timeout: options.timeout, operation: name) }
        let wr = nextWR
        let signal = last || wr - lastSignaledWR >= UInt64(options.signalInterval)
        try verbs { () throws(VerbsError) in
            try qp.postSend(SendRequest(id: wr, operation: op, segment: segment, signaled: signal))
        }
        nextWR += 1
        inFlight += 1
        if signal {
            signaled.append((wr, Int(wr - lastSignaledWR), last ? ticket : nil, name))
            lastSignaledWR = wr
        }
        return ticket
    }

    // MARK: Progress

    /// Takes what has completed without waiting; returns the operations that finished.
    /// A failed request throws its typed error (and the engine stays failed).
    public func progress() throws(TransferError) -> [Ticket] {
        try checkFailure()
        var finished: [Ticket] = []
        let wcs = try verbs { () throws(VerbsError) in try qp.sendCQ.poll(max: 32) }
        for wc in wcs { if let t = try retire(wc) { finished.append(t) } }
        return finished
    }

    /// Waits until `ticket` has completed.
    public func wait(for ticket: Ticket, timeout: Duration? = nil) throws(TransferError) {
        let limit = timeout ?? options.timeout
        let start = ContinuousClock.now
        while !completed.contains(ticket) {
            let left = limit - (ContinuousClock.now - start)
            if left <= .zero { throw TransferError.timedOut(operation: "waiting for operation \(ticket.id)", after: limit) }
            try reap(timeout: left, operation: "operation \(ticket.id)")
        }
        completed.remove(ticket)
    }

    /// Waits until nothing is in flight.
    public func drain(timeout: Duration? = nil) throws(TransferError) {
        let limit = timeout ?? options.timeout
        let start = ContinuousClock.now
        while !signaled.isEmpty {
            let left = limit - (ContinuousClock.now - start)
            if left <= .zero { throw TransferError.timedOut(operation: "draining", after: limit) }
            try reap(timeout: left, operation: "draining")
        }
        completed.removeAll()
    }

    private func checkFailure() throws(TransferError) {
        if let failure { throw failure }
    }

    private func reap(timeout: Duration, operation: String) throws(TransferError) {
        try checkFailure()
        let wcs: [WorkCompletion]
        do {
            wcs = try qp.sendCQ.wait(timeout: timeout, mode: options.waitMode, max: 32, watching: connection)
        } catch {
            if !connection.isConnected { throw fail(.disconnected(operation: operation)) }
            throw TransferError(error)
        }
        for wc in wcs {
            if let t = try retire(wc) { completed.insert(t) }
        }
    }

    /// Accounts for one send-queue completion; RC completes in order, so it retires every
    /// unsignaled request posted before it.
    private func retire(_ wc: WorkCompletion) throws(TransferError) -> Ticket? {
        if !wc.isSuccess {
            // Every operation ends with a signaled request, so the first signaled one at or after
            // the failed request belongs to its operation.
            let name = signaled.first { $0.wr >= wc.workRequestID }?.name ?? "operation"
            throw fail(wc.status == .flushed && !connection.isConnected
                       ? .disconnected(operation: name)
                       : .failed(operation: name, status: wc.status, vendorError: wc.vendorError))
        }
        var finished: Ticket?
        while let first = signaled.first, first.wr <= wc.workRequestID {
            signaled.removeFirst()
            inFlight -= first.covers
            if let t = first.ends { finished = t }
        }
        return finished
    }

    private func fail(_ error: TransferError) -> TransferError {
        if failure == nil { failure = error }
        return failure!
    }

    // MARK: Receiving

    /// Waits for the next arrival on a posted receive.
    public func nextArrival(timeout: Duration? = nil) throws(TransferError) -> Arrival {
        let limit = timeout ?? options.timeout
        guard !receives.isEmpty else { throw TransferError.outOfBounds("no receive is posted") }
        let wcs: [WorkCompletion]
        do {
            wcs = try qp.receiveCQ.wait(timeout: limit, mode: options.waitMode, max: 1, watching: connection)
        } catch {
            if !connection.isConnected { throw TransferError.disconnected(operation: "receive") }
            throw TransferError(error)
        }
        let wc = wcs[0]
        let ticket = receives.removeFirst()
        guard wc.isSuccess else {
            if wc.status == .flushed { throw TransferError.disconnected(operation: "receive") }
            throw TransferError.failed(operation: "receive", status: wc.status, vendorError: wc.vendorError)
        }
        return Arrival(ticket: ticket, byteCount: Int(wc.byteCount), immediate: wc.immediate)
    }

    // MARK: Blocking conveniences

    /// RDMA write, waiting for completion.
    public func write(_ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64 = 0,
                      immediate: UInt32? = nil) throws(TransferError) {
        try wait(for: try postWrite(segment, to: remote, at: offset, immediate: immediate))
    }

    /// RDMA read, waiting for completion.
    public func read(into segment: LocalSegment, from remote: RemoteBuffer, at offset: UInt64 = 0) throws(TransferError) {
        try wait(for: try postRead(into: segment, from: remote, at: offset))
    }

    /// Send, waiting for completion.
    public func send(_ segment: LocalSegment?, immediate: UInt32? = nil) throws(TransferError) {
        try wait(for: try postSend(segment, immediate: immediate))
    }

    // MARK: async

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws(TransferError) -> T) async throws(TransferError) -> T {
        let result: Result<T, TransferError> = await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: Result { () throws(TransferError) -> T in try body() }) }
        }
        return try result.get()
    }

    /// RDMA write without blocking the caller's task.
    public func write(_ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64 = 0,
                      immediate: UInt32? = nil) async throws(TransferError) {
        try await onQueue { () throws(TransferError) in try self.write(segment, to: remote, at: offset, immediate: immediate) }
    }

    /// RDMA read without blocking the caller's task.
    public func read(into segment: LocalSegment, from remote: RemoteBuffer, at offset: UInt64 = 0) async throws(TransferError) {
        try await onQueue { () throws(TransferError) in try self.read(into: segment, from: remote, at: offset) }
    }

    /// Waits for the next arrival without blocking the caller's task.
    public func arrival(timeout: Duration? = nil) async throws(TransferError) -> Arrival {
        try await onQueue { () throws(TransferError) in try self.nextArrival(timeout: timeout) }
    }
}
