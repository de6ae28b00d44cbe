#if canImport(Glibc)
import Glibc
#endif
import CVerbs
import Sharing

/// A completion channel (`ibv_create_comp_channel`): a file descriptor that becomes
/// readable when an armed CQ gets a completion, so a thread can sleep instead of spin.
public final class CompletionChannel: Sendable {
    private let handle: CHandle<ibv_comp_channel>
    public let context: Context

    /// `ibv_create_comp_channel`; its fd is made non-blocking so waits can time out.
    public init(context: Context) throws(VerbsError) {
        let channel = try checkPointer("ibv_create_comp_channel", ibv_create_comp_channel(try context.raw("ibv_create_comp_channel")))
        do {
            try setNonBlocking(channel.pointee.fd, verb: "fcntl(comp_channel)")
        } catch {
            ibv_destroy_comp_channel(channel)
            throw error
        }
        handle = CHandle(channel)
        self.context = context
    }

    deinit { ibv_destroy_comp_channel(raw) }

    var raw: UnsafeMutablePointer<ibv_comp_channel> { handle.pointer }

    public var fileDescriptor: Int32 { raw.pointee.fd }

    /// Takes every event the channel holds without waiting (`ibv_get_cq_event` until EAGAIN)
    /// and acknowledges each at once: for a loop that sleeps on `fileDescriptor` beside other
    /// descriptors, then polls its queues itself. Returns how many there were. Re-arm the queues
    /// (`requestNotification`) before sleeping again.
    @discardableResult
    public func takeEvents() -> Int {
        var taken = 0
        while true {
            var cq: UnsafeMutablePointer<ibv_cq>?
            var ctx: UnsafeMutableRawPointer?
            guard ibv_get_cq_event(raw, &cq, &ctx) == 0 else { return taken }
            if let cq { ibv_ack_cq_events(cq, 1) }
            taken += 1
        }
    }
}

/// How a wait for completions spends its time.
public enum CompletionWaitMode: Sendable {
    /// Spin on `ibv_poll_cq`: lowest latency, one core busy.
    case busyPoll
    /// Arm the CQ and sleep on its completion channel (needs a channel).
    case event
}

/// A completion queue (`ibv_create_cq`), optionally tied to a completion channel.
/// Polling is thread-safe (libibverbs locks the queue), but two threads taking completions off
/// one queue each see only part of them: give each queue one reader.
public final class CompletionQueue: Sendable {
    private let handle: CHandle<ibv_cq>
    public let context: Context
    public let channel: CompletionChannel?
    public let capacity: Int
    /// Events taken with `ibv_get_cq_event` and not yet acknowledged (`ibv_ack_cq_events`).
    private let unacknowledgedEvents = Locked<UInt32>(0)

    /// `ibv_create_cq` with room for at least `capacity` completions.
    public init(context: Context, capacity: Int, channel: CompletionChannel? = nil, vector: Int32 = 0) throws(VerbsError) {
        guard capacity > 0, capacity <= Int(Int32.max) else {
            throw VerbsError.invalidArgument("completion queue capacity must be in 1...\(Int32.max), got \(capacity)")
        }
        if let channel, !channel.context.isSameDevice(as: context) {
            throw VerbsError.invalidArgument("the completion channel belongs to another device")
        }
        let cq = try checkPointer("ibv_create_cq", ibv_create_cq(try context.raw("ibv_create_cq"), Int32(capacity), nil, channel?.raw, vector))
        handle = CHandle(cq)
        self.context = context
        self.channel = channel
        self.capacity = Int(cq.pointee.cqe)
    }

    deinit {
        // ibv_destroy_cq waits for every event it handed out to be acknowledged.
        let unacknowledged = unacknowledgedEvents.withLock { $0 }
        if unacknowledged > 0 { ibv_ack_cq_events(raw, unacknowledged) }
        ibv_destroy_cq(raw)
    }

    var raw: UnsafeMutablePointer<ibv_cq> { handle.pointer }

    /// Takes up to `max` completions off the queue (`ibv_poll_cq`) and hands each to `body`
    /// without allocating. Returns how many there were.
    @discardableResult
    public func poll(max: Int = 16, _ body: (WorkCompletion) throws -> Void) throws -> Int {
        try withUnsafeTemporaryAllocation(of: ibv_wc.self, capacity: max) { wcs in
            let n = ibv_poll_cq(raw, Int32(max), wcs.baseAddress!)
            if n < 0 { throw VerbsError.system(verb: "ibv_poll_cq", errno: -n) }
            for i in 0..<Int(n) { try body(WorkCompletion(wcs[i])) }
            return Int(n)
        }
    }

    /// Takes at most one completion off the queue (`ibv_poll_cq` with one entry): the busy-poll
    /// path of a latency loop, with no closure and no allocation.
    public func pollOne() throws(VerbsError) -> WorkCompletion? {
        var wc = ibv_wc()
        let n = ibv_poll_cq(raw, 1, &wc)
        if n < 0 { throw VerbsError.system(verb: "ibv_poll_cq", errno: -n) }
        return n == 0 ? nil : WorkCompletion(wc)
    }

    /// Polls once, returning what was there.
    public func poll(max: Int = 16) throws(VerbsError) -> [WorkCompletion] {
        var out: [WorkCompletion] = []
        do { try poll(max: max) { out.append($0) } } catch let error as VerbsError { throw error } catch {}
        return out
    }

    /// Arms the queue to signal its channel on the next completion (`ibv_req_notify_cq`).
    public func requestNotification(solicitedOnly: Bool = false) throws(VerbsError) {
        try checkReturnedErrno("ibv_req_notify_cq", ibv_req_notify_cq(raw, solicitedOnly ? 1 : 0))
    }

    /// Waits until at least one completion is there or `timeout` passes, then returns
    /// what one poll gets. `.event` sleeps on the channel (`ibv_get_cq_event`).
    ///
    /// With `watching`, the connection's events are read during the wait: a peer that
    /// disconnects (or dies) moves the queue pair to the error state, so outstanding requests
    /// come back as flushed completions at once instead of after the transport's retries.
    public func wait(timeout: Duration, mode: CompletionWaitMode = .event, max: Int = 16,
                     watching connection: Connection? = nil) throws(VerbsError) -> [WorkCompletion] {
        let deadline = Deadline(after: timeout)
        var spins = 0
        while true {
            let got = try poll(max: max)
            if !got.isEmpty { return got }
            switch mode {
            case .busyPoll:
                if deadline.expired { throw VerbsError.timedOut(operation: "waiting for a completion", after: timeout) }
                spins += 1
                // A syscall per spin would cost the latency busy polling is for.
                if spins & 0x3FF == 0 { connection?.processEvents() }
            case .event:
                guard let channel else {
                    throw VerbsError.invalidArgument("event-driven wait needs a completion queue made with a channel")
                }
                try requestNotification()
                // A completion that came between the poll and arming raised no event.
                let raced = try poll(max: max)
                if !raced.isEmpty { return raced }
                if let connection {
                    let which = try waitReadable([channel.fileDescriptor, connection.eventFileDescriptor], deadline: deadline,
                                                 operation: "waiting for a completion")
                    if which.contains(1) { connection.processEvents() }
                    if !which.contains(0) { continue }
                } else {
                    try waitReadable(channel.fileDescriptor, deadline: deadline, operation: "waiting for a completion")
                }
                var cq: UnsafeMutablePointer<ibv_cq>?
                var ctx: UnsafeMutableRawPointer?
                if ibv_get_cq_event(channel.raw, &cq, &ctx) != 0 {
                    let code = Glibc.errno
                    if code == EAGAIN || code == EINTR { continue }
                    throw VerbsError.fromErrno("ibv_get_cq_event", code)
                }
                // Acknowledging in batches saves a mutex per event in libibverbs.
                if let cq, cq == raw {
                    unacknowledgedEvents.withLock { count in
                        count += 1
                        if count >= 64 { ibv_ack_cq_events(raw, count); count = 0 }
                    }
                } else if let cq {
                    ibv_ack_cq_events(cq, 1)
                }
            }
        }
    }

    /// Collects exactly `count` completions within `timeout`, throwing on the first failed one.
    public func collect(_ count: Int, timeout: Duration, mode: CompletionWaitMode = .event,
                        watching connection: Connection? = nil) throws(VerbsError) -> [WorkCompletion] {
        let deadline = Deadline(after: timeout)
        var out: [WorkCompletion] = []
        while out.count < count {
            let remaining = deadline.remaining
            if remaining == .zero {
                throw VerbsError.timedOut(operation: "waiting for \(count) completions (got \(out.count))", after: timeout)
            }
            for wc in try wait(timeout: remaining, mode: mode, max: count - out.count, watching: connection) {
                try wc.check()
                out.append(wc)
            }
        }
        return out
    }
}
