#if canImport(Glibc)
import Glibc
#endif
import Sharing
import Verbs

/// Two connected in-memory endpoints, `a` and `b`, on one in-memory device: an RC connection
/// without a NIC, for tests of the logic above the verbs (swift-nio's EmbeddedChannel is the
/// model). Bytes move between host buffers registered in the endpoints' protection domains,
/// with RC's rules:
/// - requests execute in posting order; a send or write-with-immediate waits (as an RNR retry
///   that never gives up) until the peer has a receive posted, and holds up what follows it;
/// - local keys, remote keys, ranges and access rights are checked as a NIC checks them: a
///   wrong one completes the request with local protection or remote access error;
/// - a send larger than the peer's receive fails both sides (local length error there,
///   remote invalid request here);
/// - the first failed request moves its endpoint to the error state; everything outstanding
///   on it, sends and receives, completes as `.flushed`; error completions are generated even
///   for unsignaled requests;
/// - a send-queue slot is free again once a polled completion covers its request.
///
/// Requests execute whenever either endpoint is called (post, poll, wait, events), so one
/// thread can drive both ends. `hold` keeps an endpoint's requests from executing (delayed
/// completions), `holdCompletions` lets them execute but keeps their completions back until
/// the test delivers them, queue by queue and link by link in the order it picks (completions
/// reordered across queue pairs, and between an endpoint's send and receive queues; never
/// within one queue, as RC keeps), `inject` fails them, `finish` reports what was left behind.
public final class InMemoryLink: Sendable {
    public let a: InMemoryEndpoint
    public let b: InMemoryEndpoint
    let state: LinkState

    /// - Parameters:
    ///   - sendQueueDepth: requests an endpoint's send queue holds; a post beyond it fails with ENOMEM.
    ///   - receiveQueueDepth: receives an endpoint holds posted.
    ///   - maxInlineData: the inline payload limit.
    ///   - maxMessageSize: the largest message of one request.
    ///   - sendCompletions, receiveCompletions: completion queues end `a` completes into, shared
    ///     with other links' (nil: a private one each, as deep as the queue it serves).
    public init(sendQueueDepth: Int = 128, receiveQueueDepth: Int = 128, maxInlineData: Int = 256,
                maxMessageSize: Int = 1 << 30, sendCompletions: InMemoryCompletionQueue? = nil,
                receiveCompletions: InMemoryCompletionQueue? = nil) {
        let device = Context(inMemoryNamed: "in-memory")
        let limits = InMemoryEndpoint.Limits(sendQueueDepth: max(1, sendQueueDepth), receiveQueueDepth: max(1, receiveQueueDepth),
                                             maxInlineData: max(0, maxInlineData), maxMessageSize: max(1, maxMessageSize))
        let regs = [InMemoryRegistrations(keyBase: 0x0100_0000), InMemoryRegistrations(keyBase: 0x0200_0000)]
        state = LinkState(registrations: regs)
        a = InMemoryEndpoint(side: 0, pd: ProtectionDomain(inMemory: device, registry: regs[0]), limits: limits, state: state,
                             sendQueue: sendCompletions, receiveQueue: receiveCompletions)
        b = InMemoryEndpoint(side: 1, pd: ProtectionDomain(inMemory: device, registry: regs[1]), limits: limits, state: state)
    }

    /// Which end a fault or a hold applies to.
    public enum End: Int, Sendable { case a = 0, b = 1 }

    /// Injects `fault` on `end` (for `.disconnect`, on the link).
    public func inject(_ fault: InMemoryFault, on end: End = .a) {
        state.core.withLock { c in
            switch fault {
            case let .failNextSend(status): c.sides[end.rawValue].failNext = status
            case .flush: c.moveToError(end.rawValue)
            case .disconnect: c.linkDown()
            }
        }
    }

    /// Keeps `end`'s requests from executing until `release`: their completions are delayed.
    public func hold(_ end: End) { state.core.withLock { $0.sides[end.rawValue].held = true } }

    /// Lets `end`'s held requests execute.
    public func release(_ end: End) {
        state.core.withLock { c in
            c.sides[end.rawValue].held = false
            c.pump(state)
        }
    }

    /// Which of an endpoint's completion queues a delivery is for.
    public enum Queue: Sendable { case send, receive }

    /// From now on `end`'s requests (and the peer's toward it) still execute, bytes land, but
    /// their completions, send and receive queue alike, stay out of `end`'s polls and waits
    /// until `deliverCompletions` or `releaseCompletions`: what a NIC whose completions lag, or
    /// arrive in another order across queue pairs than the requests were posted in, looks like.
    /// Completions already pollable stay so.
    public func holdCompletions(_ end: End) {
        state.core.withLock { c in
            let s = c.sides[end.rawValue]
            c.sides[end.rawValue].sendLimit = s.sendLimit ?? s.sendCompletions.count
            c.sides[end.rawValue].receiveLimit = s.receiveLimit ?? s.receiveCompletions.count
        }
    }

    /// Completions `end` holds back now, per queue.
    public func heldCompletions(_ end: End) -> (send: Int, receive: Int) {
        state.core.withLock { c in
            c.pump(state)
            let s = c.sides[end.rawValue]
            return (s.sendCompletions.count - s.visibleSend, s.receiveCompletions.count - s.visibleReceive)
        }
    }

    /// Hands the oldest `count` (nil: all) of the completions `end` holds on `queue` to its
    /// polls, in the order they were generated: one queue's completions keep RC's order; which
    /// queue and which link goes first is the caller's choice. Holding goes on for later ones.
    public func deliverCompletions(_ end: End, queue: Queue, count: Int? = nil) {
        state.core.withLock { c in
            c.pump(state)
            var s = c.sides[end.rawValue]
            switch queue {
            case .send:
                if let limit = s.sendLimit { s.sendLimit = min(s.sendCompletions.count, limit + max(0, count ?? s.sendCompletions.count)) }
            case .receive:
                if let limit = s.receiveLimit {
                    s.receiveLimit = min(s.receiveCompletions.count, limit + max(0, count ?? s.receiveCompletions.count))
                }
            }
            c.sides[end.rawValue] = s
        }
    }

    /// Delivers everything `end` holds (send queue first) and stops holding its completions.
    public func releaseCompletions(_ end: End) {
        state.core.withLock { c in
            c.sides[end.rawValue].sendLimit = nil
            c.sides[end.rawValue].receiveLimit = nil
            c.pump(state)
        }
    }

    /// Requests executed so far on `end` (each chunk of a transfer is one).
    public func executed(_ end: End) -> Int { state.core.withLock { $0.sides[end.rawValue].executed } }

    /// What is left on both ends: pending and unretired sends, unpolled completions, posted
    /// receives, registered regions. A test that cleaned up finds it empty.
    public func finish() -> InMemoryLeftovers {
        state.core.withLock { c in
            c.pump(state)
            func side(_ i: Int) -> InMemoryLeftovers.Side {
                let s = c.sides[i]
                return .init(pendingSends: s.pending.count, unretiredSends: Int(s.postedSeq - s.retiredSeq),
                             unpolledSendCompletions: s.sendCompletions.count, unpolledReceiveCompletions: s.receiveCompletions.count,
                             postedReceives: s.receives.count, registeredRegions: state.registrations[i].count)
            }
            return InMemoryLeftovers(a: side(0), b: side(1))
        }
    }

}

/// What the link and its endpoints share: the state of both ends under one lock, and each
/// end's registrations (locked on their own; taken inside the link's lock, never the reverse).
final class LinkState: Sendable {
    let core = Locked(LinkCore())
    let registrations: [InMemoryRegistrations]
    init(registrations: [InMemoryRegistrations]) { self.registrations = registrations }
}

/// The state of both ends, changed only under the link's lock.
struct LinkCore {
    struct Posted {
        var request: SendRequest
        var seq: UInt64
    }

    struct Side {
        var pending: [Posted] = []
        var postedSeq: UInt64 = 0
        var retiredSeq: UInt64 = 0
        var sendCompletions: [(wc: WorkCompletion, seq: UInt64)] = []
        var receives: [(id: UInt64, segment: LocalSegment?)] = []
        var receiveCompletions: [WorkCompletion] = []
        var inError = false
        var connected = true
        /// The link went down; this end learns it at its next event read.
        var disconnectEvent = false
        var failNext: WorkCompletionStatus?
        var held = false
        var executed = 0
        /// While completions are held (`holdCompletions`): how many of the oldest ones of each
        /// queue polls may take; nil: all of them.
        var sendLimit: Int?
        var receiveLimit: Int?

        var visibleSend: Int { sendLimit ?? sendCompletions.count }
        var visibleReceive: Int { receiveLimit ?? receiveCompletions.count }

        /// A poll took `count` pollable completions.
        mutating func tookSend(_ count: Int) { sendLimit = sendLimit.map { $0 - count } }
        mutating func tookReceive(_ count: Int) { receiveLimit = receiveLimit.map { $0 - count } }
    }

    var sides = [Side(), Side()]
    var down = false

    static func queuePairNumber(_ side: Int) -> UInt32 { UInt32(side + 1) }

    mutating func linkDown() {
        down = true
        sides[0].disconnectEvent = true
        sides[1].disconnectEvent = true
    }

    /// Reads `side`'s connection events: a disconnect moves it to the error state.
    mutating func processEvents(_ side: Int) -> Bool {
        if sides[side].disconnectEvent {
            sides[side].disconnectEvent = false
            sides[side].connected = false
            moveToError(side)
        }
        return sides[side].connected
    }

    mutating func moveToError(_ side: Int) {
        sides[side].inError = true
        flush(side)
    }

    private mutating func flush(_ side: Int) {
        let qpn = Self.queuePairNumber(side)
        for p in sides[side].pending {
            sides[side].sendCompletions.append((WorkCompletion(workRequestID: p.request.id, status: .flushed, opcode: nil,
                                                               queuePairNumber: qpn), p.seq))
        }
        sides[side].pending.removeAll()
        for r in sides[side].receives {
            sides[side].receiveCompletions.append(WorkCompletion(workRequestID: r.id, status: .flushed, opcode: nil, queuePairNumber: qpn))
        }
        sides[side].receives.removeAll()
    }

    /// Executes what can execute on both ends, in posting order per end.
    mutating func pump(_ link: LinkState) {
        var progressed = true
        while progressed {
            progressed = false
            for side in 0..<2 {
                while let head = sides[side].pending.first {
                    if sides[side].inError {
                        flush(side)
                        progressed = true
                        break
                    }
                    if down || sides[side].held { break }
                    guard execute(head, on: side, link) else { break }
                    progressed = true
                }
            }
        }
    }

    private mutating func complete(_ side: Int, _ posted: Posted, _ status: WorkCompletionStatus, _ opcode: WorkCompletionOpcode,
                                   bytes: Int) {
        sides[side].pending.removeFirst()
        sides[side].executed += 1
        let qpn = Self.queuePairNumber(side)
        if status != .success || posted.request.signaled {
            sides[side].sendCompletions.append((WorkCompletion(workRequestID: posted.request.id, status: status, opcode: opcode,
                                                               byteCount: UInt32(truncatingIfNeeded: bytes), queuePairNumber: qpn),
                                                posted.seq))
        } else {
            // Unsignaled: retired by the next signaled completion; nothing to report.
        }
        if status != .success { moveToError(side) }
    }

    /// The peer's bytes a remote request names, if the peer is up and the rkey, range and
    /// right check out (nil: a remote access error).
    private func reach(_ peer: Int, _ regs: InMemoryRegistrations, _ remote: RemoteBuffer, _ offset: UInt64, _ length: Int,
                       _ right: AccessFlags) -> UnsafeMutableRawPointer? {
        guard !sides[peer].inError else { return nil }
        return regs.remote(rkey: remote.rkey, address: remote.address &+ offset, length: length, right: right)
    }

    /// Executes `posted` from `side` against the other end; false when it has to wait for a
    /// receive (RNR) and stays at the head of the queue.
    private mutating func execute(_ posted: Posted, on side: Int, _ link: LinkState) -> Bool {
        let peer = 1 - side
        let request = posted.request
        let length = request.segment?.length ?? 0
        let opcode: WorkCompletionOpcode
        switch request.operation {
        case .send, .sendWithImmediate: opcode = .send
        case .write, .writeWithImmediate: opcode = .rdmaWrite
        case .read: opcode = .rdmaRead
        }
        if let status = sides[side].failNext {
            sides[side].failNext = nil
            complete(side, posted, status, opcode, bytes: 0)
            return true
        }
        // The local side of the request: its lkey must be this end's, the range registered.
        var local: UnsafeMutableRawPointer?
        if let segment = request.segment {
            let regs = link.registrations[side]
            guard let p = regs.local(lkey: segment.region.lkey, address: segment.region.address + UInt64(segment.offset),
                                     length: segment.length) else {
                complete(side, posted, .localProtectionError, opcode, bytes: 0)
                return true
            }
            local = p
        }
        let peerRegs = link.registrations[peer]
        switch request.operation {
        case let .write(remote, offset), let .writeWithImmediate(remote, offset, _):
            var immediate: UInt32?
            if case let .writeWithImmediate(_, _, imm) = request.operation {
                immediate = imm
                guard !sides[peer].receives.isEmpty || sides[peer].inError else { return false }
            }
            guard let target = reach(peer, peerRegs, remote, offset, length, .remoteWrite) else {
                complete(side, posted, .remoteAccessError, opcode, bytes: 0)
                return true
            }
            if let local, length > 0 { memmove(target, local, length) }
            if let immediate {
                let receive = sides[peer].receives.removeFirst()
                sides[peer].receiveCompletions.append(WorkCompletion(
                    workRequestID: receive.id, status: .success, opcode: .receiveWithImmediate,
                    byteCount: UInt32(truncatingIfNeeded: length), immediate: immediate, queuePairNumber: Self.queuePairNumber(peer)))
            }
            complete(side, posted, .success, opcode, bytes: length)
        case let .read(remote, offset):
            guard let source = reach(peer, peerRegs, remote, offset, length, .remoteRead) else {
                complete(side, posted, .remoteAccessError, opcode, bytes: 0)
                return true
            }
            if let local, length > 0 { memmove(local, source, length) }
            complete(side, posted, .success, opcode, bytes: length)
        case .send, .sendWithImmediate:
            if sides[peer].inError {
                complete(side, posted, .retryExceeded, opcode, bytes: 0)
                return true
            }
            guard let receive = sides[peer].receives.first else { return false }
            sides[peer].receives.removeFirst()
            var immediate: UInt32?
            if case let .sendWithImmediate(imm) = request.operation { immediate = imm }
            let room = receive.segment?.length ?? 0
            var target: UnsafeMutableRawPointer?
            if let segment = receive.segment {
                target = peerRegs.local(lkey: segment.region.lkey, address: segment.region.address + UInt64(segment.offset),
                                        length: segment.length)
            }
            guard length <= room, receive.segment == nil || target != nil else {
                let status: WorkCompletionStatus = length > room ? .localLengthError : .localProtectionError
                sides[peer].receiveCompletions.append(WorkCompletion(workRequestID: receive.id, status: status, opcode: nil,
                                                                     queuePairNumber: Self.queuePairNumber(peer)))
                moveToError(peer)
                complete(side, posted, .remoteInvalidRequest, opcode, bytes: 0)
                return true
            }
            if let local, let target, length > 0 { memmove(target, local, length) }
            sides[peer].receiveCompletions.append(WorkCompletion(
                workRequestID: receive.id, status: .success, opcode: .receive, byteCount: UInt32(truncatingIfNeeded: length),
                immediate: immediate, queuePairNumber: Self.queuePairNumber(peer)))
            complete(side, posted, .success, opcode, bytes: length)
        }
        return true
    }
}
