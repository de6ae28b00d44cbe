import Verbs

/// The completion queues of a `PeerEngine`'s peers, each polled once per progress round however
/// many peers' queue pairs complete into it, every completion handed to the peer its work
/// request id names (`RoutedEndpoint`). Peers that share queues (`RDMAGroupTransport`'s one
/// send and one receive queue per device) cost one poll per queue, not one per peer.
///
/// Bounded: a queue holds at most its capacity, so each peer reserves what it can have
/// outstanding on it (its window of send requests, its receives) and a peer that would overrun
/// a queue is given a smaller window or refused. A peer being removed keeps its route until its
/// last requests' completions (flushed) have come, so none is lost or taken for another peer's;
/// a completion naming no peer of the engine is counted (`stray`) and dropped.
/// It lives behind the engine's lock.
struct CompletionRouter {
    struct Queue {
        let source: any CompletionSource
        var reserved: Int = 0
        var users: Int = 0
    }

    /// What a peer holds in the queues, given back when its route ends.
    struct Reservation: Sendable {
        let send: ObjectIdentifier
        let sendEntries: Int
        let receive: ObjectIdentifier
        let receiveEntries: Int
    }

    private(set) var queues: [ObjectIdentifier: Queue] = [:]
    private var order: [ObjectIdentifier] = []
    private(set) var routes: [PeerID: RoutedEndpoint] = [:]
    private var reservations: [PeerID: Reservation] = [:]
    /// Completions that named no peer of the engine (a foreign request, a route already ended).
    private(set) var stray = 0
    /// Polls made of the queues (for tests: one per queue per round, not one per peer).
    private(set) var polls = 0

    /// Completions one poll takes, and polls a queue gets in one round at most.
    static let batch = 64
    static let pollsPerRound = 4

    /// Reserves room for `endpoint`'s requests in its queues: up to `window` send requests (fewer
    /// when the queue has less room) and its receives (up to its receive queue's depth, fewer when
    /// the queue has less). Returns what was granted; throws when a queue has no room at all.
    mutating func admit(_ peer: PeerID, _ endpoint: any ConnectedEndpoint, window: Int) throws(TransferError)
        -> (window: Int, receives: Int) {
        let send = endpoint.sendCompletionQueue, receive = endpoint.receiveCompletionQueue
        let sid = ObjectIdentifier(send), rid = ObjectIdentifier(receive)
        func room(_ q: any CompletionSource, _ id: ObjectIdentifier) -> Int { q.capacity - (queues[id]?.reserved ?? 0) }
        // The receive side first: when both are one queue, the send side gets what is left.
        let receives = min(endpoint.receiveQueueDepth, room(receive, rid) - (sid == rid ? 1 : 0))
        guard receives >= 1 else {
            throw TransferError.outOfBounds("the receive completion queue (\(receive.capacity) entries) is reserved by the engine's other peers")
        }
        let granted = min(window, room(send, sid) - (sid == rid ? receives : 0))
        guard granted >= 1 else {
            throw TransferError.outOfBounds("the send completion queue (\(send.capacity) entries) is reserved by the engine's other peers")
        }
        for (id, q, n) in [(sid, send, granted), (rid, receive, receives)] {
            if queues[id] == nil {
                queues[id] = Queue(source: q)
                order.append(id)
            }
            queues[id]!.reserved += n
        }
        queues[sid]!.users += 1
        if rid != sid { queues[rid]!.users += 1 }
        reservations[peer] = Reservation(send: sid, sendEntries: granted, receive: rid, receiveEntries: receives)
        return (granted, receives)
    }

    /// Routes `peer`'s completions to `endpoint` from now on.
    mutating func route(_ peer: PeerID, to endpoint: RoutedEndpoint) { routes[peer] = endpoint }

    /// Ends `peer`'s route and gives back its room; a queue no peer uses any more is forgotten.
    mutating func end(_ peer: PeerID) {
        routes[peer] = nil
        guard let r = reservations.removeValue(forKey: peer) else { return }
        queues[r.send]?.reserved -= r.sendEntries
        queues[r.receive]?.reserved -= r.receiveEntries
        for id in Set([r.send, r.receive]) {
            queues[id]?.users -= 1
            if let q = queues[id], q.users <= 0 {
                queues[id] = nil
                order.removeAll { $0 == id }
            }
        }
    }

    /// Polls every queue once (more while a poll comes back full, up to `pollsPerRound`) and hands
    /// each completion to its peer. Returns how many were handed out, and the queues whose poll
    /// failed (their peers can no longer learn what completed).
    mutating func pump() -> (routed: Int, failed: [(ObjectIdentifier, VerbsError)]) {
        var routed = 0
        var failed: [(ObjectIdentifier, VerbsError)] = []
        for id in order {
            guard let q = queues[id] else { continue }
            for _ in 0..<Self.pollsPerRound {
                let wcs: [WorkCompletion]
                do {
                    wcs = try q.source.poll(max: Self.batch)
                } catch {
                    failed.append((id, error))
                    break
                }
                polls += 1
                for wc in wcs {
                    if let endpoint = routes[RoutedEndpoint.peer(of: wc.workRequestID)] {
                        endpoint.deliver(wc)
                        routed += 1
                    } else {
                        stray += 1
                    }
                }
                if wcs.count < Self.batch { break }
            }
        }
        return (routed, failed)
    }

    /// The peers whose requests complete into queue `id`.
    func peers(using id: ObjectIdentifier) -> [PeerID] {
        reservations.filter { $0.value.send == id || $0.value.receive == id }.map(\.key)
    }

    /// Arms every queue (a completion after this raises its channel) and returns the channels to
    /// sleep on, and whether every queue has one.
    func arm() -> (channels: [CompletionChannel], allChannelled: Bool) {
        var channels: [CompletionChannel] = []
        var all = true
        for id in order {
            guard let q = queues[id] else { continue }
            guard let c = q.source.channel else { all = false; continue }
            _ = try? q.source.requestNotification(solicitedOnly: false)
            if !channels.contains(where: { $0 === c }) { channels.append(c) }
        }
        return (channels, all)
    }
}
