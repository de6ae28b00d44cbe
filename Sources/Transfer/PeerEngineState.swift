import Verbs

/// One peer of a `PeerEngine`: its endpoint, its own engine bookkeeping (window, tickets,
/// sticky failure: a peer's failure is its own), and who waits on it.
struct PeerSlot: Sendable {
    let endpoint: any ConnectedEndpoint
    let name: String
    var core: EngineCore
    /// Callers waiting for an operation to finish, by ticket.
    var completionWaiters: [Ticket: [PendingWait<Void>]] = [:]
    /// Posters waiting for room in the window.
    var roomWaiters: [PendingWait<Void>] = []
    /// Arrivals no one has asked for yet (at most the receives posted: bounded).
    var arrivals: [Arrival] = []
    /// Callers waiting for the next arrival, oldest first; nil ends an arrival sequence.
    var arrivalWaiters: [PendingWait<Arrival?>] = []

    var hasWork: Bool {
        core.sendsInFlight || core.receivesPosted > 0 || !completionWaiters.isEmpty || !roomWaiters.isEmpty || !arrivalWaiters.isEmpty
    }
}

/// Everything the peer engine's callers and its progress loop share, behind one lock. Its
/// methods never wait: they post, poll and hand back the resumptions to run once the lock is
/// released.
struct PeerEngineState: Sendable {
    var peers: [PeerID: PeerSlot] = [:]
    /// The peers' completion queues, polled once per round (a peer being removed keeps its
    /// route until its flushed completions have come).
    var router = CompletionRouter()
    var nextPeer: UInt32 = 1
    var nextWait: UInt64 = 1
    var closed = false
    /// Progress rounds run, and sleeps taken (what a test reads to see the loop idle).
    var rounds = 0
    var sleeps = 0

    typealias Resumes = [@Sendable () -> Void]

    mutating func newWaitID() -> UInt64 { defer { nextWait += 1 }; return nextWait }

    /// The error for a call on `peer` when the engine no longer has it.
    func missing(_ peer: PeerID) -> TransferError {
        closed ? .disconnected(operation: "the engine is closed") : .invalidArgument("\(peer) is not in the engine (never added, or removed)")
    }

    // MARK: Registering waiters (each returns the result when it is known now)

    mutating func waitForCompletion(_ t: PeerTicket, id: UInt64, timeout: Duration, _ r: Resumption<Void>) -> Result<Void, TransferError>? {
        guard var slot = peers[t.peer] else { return .failure(missing(t.peer)) }
        defer { peers[t.peer] = slot }
        do {
            if try slot.core.isFinished(slot.endpoint, t.ticket) { return .success(()) }
        } catch {
            return .failure(error)
        }
        let what = "waiting for operation \(t.ticket.id) on \(t.peer)"
        slot.completionWaiters[t.ticket, default: []].append(
            PendingWait(id: id, deadline: .now.advanced(by: timeout), timeout: timeout, what: what, resumption: r))
        return nil
    }

    /// Room for `requests` more work requests: known now when there is (the loop may have
    /// retired some since the caller looked), else a waiter the loop resumes when it retires.
    mutating func waitForRoom(_ peer: PeerID, requests: Int, id: UInt64, timeout: Duration,
                              _ r: Resumption<Void>) -> Result<Void, TransferError>? {
        guard var slot = peers[peer] else { return .failure(missing(peer)) }
        defer { peers[peer] = slot }
        if let failure = slot.core.failure { return .failure(failure) }
        if slot.core.hasRoom(for: requests) { return .success(()) }
        let what = "waiting for room in \(peer)'s window"
        slot.roomWaiters.append(PendingWait(id: id, deadline: .now.advanced(by: timeout), timeout: timeout, what: what, resumption: r))
        return nil
    }

    mutating func waitForArrival(_ peer: PeerID, id: UInt64, timeout: Duration, _ r: Resumption<Arrival?>) -> Result<Arrival?, TransferError>? {
        guard var slot = peers[peer] else { return closed ? .success(nil) : .failure(missing(peer)) }
        defer { peers[peer] = slot }
        if slot.arrivalWaiters.isEmpty, !slot.arrivals.isEmpty { return .success(slot.arrivals.removeFirst()) }
        if slot.arrivalWaiters.isEmpty, slot.core.failure == nil, slot.core.receivesPosted == 0 {
            return .failure(.invalidArgument("no receive is posted on \(peer)"))
        }
        let what = "waiting for an arrival from \(peer)"
        slot.arrivalWaiters.append(PendingWait(id: id, deadline: .now.advanced(by: timeout), timeout: timeout, what: what, resumption: r))
        return nil
    }

    /// Takes waiter `id` out, wherever it waits, and resumes it as cancelled.
    mutating func cancel(_ id: UInt64) -> Resumes {
        for (peer, var slot) in peers {
            for (ticket, list) in slot.completionWaiters {
                if let w = list.first(where: { $0.id == id }) {
                    slot.completionWaiters[ticket] = list.filter { $0.id != id }
                    if slot.completionWaiters[ticket]!.isEmpty { slot.completionWaiters[ticket] = nil }
                    peers[peer] = slot
                    return [{ w.resumption.resume(.failure(.cancelled(operation: w.what))) }]
                }
            }
            if let i = slot.roomWaiters.firstIndex(where: { $0.id == id }) {
                let w = slot.roomWaiters.remove(at: i)
                peers[peer] = slot
                return [{ w.resumption.resume(.failure(.cancelled(operation: w.what))) }]
            }
            if let i = slot.arrivalWaiters.firstIndex(where: { $0.id == id }) {
                let w = slot.arrivalWaiters.remove(at: i)
                peers[peer] = slot
                return [{ w.resumption.resume(.failure(.cancelled(operation: w.what))) }]
            }
        }
        return []
    }

    /// Takes `peer` out, resuming everyone waiting on it: operations and room with `error`,
    /// arrival sequences with their end (nil) once the buffered arrivals are handed out.
    mutating func remove(_ peer: PeerID, error: TransferError) -> (slot: PeerSlot?, resumes: Resumes) {
        guard var slot = peers.removeValue(forKey: peer) else { return (nil, []) }
        var resumes: Resumes = []
        for w in slot.completionWaiters.values.joined() { resumes.append { w.resumption.resume(.failure(error)) } }
        for w in slot.roomWaiters { resumes.append { w.resumption.resume(.failure(error)) } }
        for w in slot.arrivalWaiters {
            if !slot.arrivals.isEmpty {
                let a = slot.arrivals.removeFirst()
                resumes.append { w.resumption.resume(.success(a)) }
            } else {
                resumes.append { w.resumption.resume(.success(nil)) }
            }
        }
        slot.completionWaiters = [:]
        slot.roomWaiters = []
        slot.arrivalWaiters = []
        return (slot, resumes)
    }

    // MARK: Connection events

    /// Each peer's connection-event descriptor, for the loop's sleep.
    func connectionEventDescriptors() -> [(peer: PeerID, descriptor: Int32)] {
        peers.compactMap { id, slot in slot.endpoint.connectionEventDescriptor.map { (id, $0) } }
    }

    /// Reads the connection events of `ids` (their descriptors turned readable in the loop's
    /// sleep), busy or idle: a disconnect is answered at once and fails the peer (its waiters,
    /// if any, fail in the next round). Events are read even after a failure, so a descriptor
    /// does not stay readable.
    mutating func readConnectionEvents(of ids: [PeerID]) {
        for id in ids {
            guard var slot = peers[id] else { continue }
            if !slot.endpoint.processEvents(), slot.core.failure == nil {
                _ = slot.core.recordFailure(.disconnected(operation: "\(id) (\(slot.name))"))
                peers[id] = slot
            }
        }
    }

    // MARK: The progress round

    /// Polls every peer once without waiting: retires completions, hands out arrivals, fails
    /// the waiters of a peer that failed (only that peer's), times out waits past their
    /// deadline. `readEvents` also reads each busy peer's connection events (a system call).
    /// Returns what to resume, whether anything happened, and whether any peer has work.
    mutating func round(now: ContinuousClock.Instant, readEvents: Bool) -> (resumes: Resumes, progressed: Bool, busy: Bool) {
        rounds += 1
        var resumes: Resumes = []
        let (routed, failed) = router.pump()
        var progressed = routed > 0
        var busy = false
        // A queue that cannot be polled any more: its peers cannot learn what completed.
        for (queue, error) in failed {
            for peer in router.peers(using: queue) {
                _ = peers[peer]?.core.recordFailure(.verbs(error))
            }
        }
        for peer in Array(peers.keys) {
            guard var slot = peers[peer] else { continue }
            let (didWork, more) = Self.advance(&slot, peer, now: now, readEvents: readEvents)
            resumes += more
            progressed = progressed || didWork
            busy = busy || slot.hasWork
            peers[peer] = slot
        }
        return (resumes, progressed, busy)
    }

    private static func advance(_ slot: inout PeerSlot, _ peer: PeerID, now: ContinuousClock.Instant,
                                readEvents: Bool) -> (Bool, Resumes) {
        var resumes: Resumes = []
        var progressed = false
        let endpoint = slot.endpoint
        if slot.core.failure == nil && slot.core.sendsInFlight {
            if let finished = try? slot.core.progress(endpoint), !finished.isEmpty {
                progressed = true
                for t in finished {
                    for w in slot.completionWaiters.removeValue(forKey: t) ?? [] { resumes.append { w.resumption.resume(.success(())) } }
                }
            }
        }
        // Retiring frees the window: posters waiting for room look again.
        if progressed || slot.core.failure != nil {
            for w in slot.roomWaiters {
                let result: Result<Void, TransferError> = slot.core.failure.map { .failure($0) } ?? .success(())
                resumes.append { w.resumption.resume(result) }
            }
            slot.roomWaiters = []
        }
        // Arrivals: each one a posted receive consumed, so the buffer stays bounded.
        while slot.core.receivesPosted > 0 {
            guard let arrival = try? slot.core.pollArrival(endpoint, readEvents: false) else { break }
            slot.arrivals.append(arrival)
            progressed = true
        }
        if readEvents, slot.core.failure == nil, slot.hasWork, !endpoint.processEvents() {
            _ = slot.core.recordFailure(.disconnected(operation: "\(peer) (\(slot.name))"))
            progressed = true
        }
        while !slot.arrivalWaiters.isEmpty, !slot.arrivals.isEmpty {
            let w = slot.arrivalWaiters.removeFirst()
            let a = slot.arrivals.removeFirst()
            resumes.append { w.resumption.resume(.success(a)) }
        }
        if let failure = slot.core.failure {
            // Nothing outstanding on this peer can finish now; its arrivals so far were handed out.
            for w in slot.completionWaiters.values.joined() { resumes.append { w.resumption.resume(.failure(failure)) } }
            slot.completionWaiters = [:]
            for w in slot.arrivalWaiters { resumes.append { w.resumption.resume(.failure(failure)) } }
            slot.arrivalWaiters = []
        }
        // Deadlines.
        for (ticket, list) in slot.completionWaiters {
            let (late, onTime) = (list.filter { $0.deadline <= now }, list.filter { $0.deadline > now })
            for w in late { resumes.append { w.resumption.resume(.failure(.timedOut(operation: w.what, after: w.timeout))) } }
            slot.completionWaiters[ticket] = onTime.isEmpty ? nil : onTime
        }
        for w in slot.roomWaiters where w.deadline <= now {
            resumes.append { w.resumption.resume(.failure(.timedOut(operation: w.what, after: w.timeout))) }
        }
        slot.roomWaiters.removeAll { $0.deadline <= now }
        for w in slot.arrivalWaiters where w.deadline <= now {
            resumes.append { w.resumption.resume(.failure(.timedOut(operation: w.what, after: w.timeout))) }
        }
        slot.arrivalWaiters.removeAll { $0.deadline <= now }
        return (progressed, resumes)
    }

    /// The nearest deadline of anyone waiting.
    var nearestDeadline: ContinuousClock.Instant? {
        var nearest: ContinuousClock.Instant?
        func see(_ d: ContinuousClock.Instant) { if nearest == nil || d < nearest! { nearest = d } }
        for slot in peers.values {
            for w in slot.completionWaiters.values.joined() { see(w.deadline) }
            for w in slot.roomWaiters { see(w.deadline) }
            for w in slot.arrivalWaiters { see(w.deadline) }
        }
        return nearest
    }

    /// Closes: every peer out, every waiter resumed.
    mutating func closeAll() -> (slots: [(PeerID, PeerSlot)], resumes: Resumes) {
        closed = true
        var slots: [(PeerID, PeerSlot)] = []
        var resumes: Resumes = []
        for peer in Array(peers.keys) {
            let (slot, more) = remove(peer, error: .disconnected(operation: "the engine closed with work on \(peer)"))
            if let slot { slots.append((peer, slot)) }
            resumes += more
        }
        return (slots, resumes)
    }
}
