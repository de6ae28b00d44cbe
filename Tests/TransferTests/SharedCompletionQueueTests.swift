import Foundation
@testable import Transfer
import Verbs
import VerbsEmbedded
import XCTest

/// Peers whose queue pairs share one send and one receive completion queue (the in-memory twin's
/// `InMemoryCompletionQueue`): the engine polls each shared queue once per round, hands every
/// completion to the peer its work request id names, keeps within the queues' capacity, and a
/// peer removed with work outstanding has its flushed completions taken, none lost to or taken
/// for another peer.
final class SharedCompletionQueueTests: XCTestCase {
    private struct Link {
        let link: InMemoryLink
        let source: MemoryRegion
        let target: MemoryRegion
    }

    private let options = TransferOptions(window: 16, signalInterval: 4, maxChunk: 4096, timeout: .seconds(10))

    private func link(_ send: InMemoryCompletionQueue, _ receive: InMemoryCompletionQueue, size: Int = 1 << 16,
                      receives: Int = 32, seed: Int) throws -> Link {
        let link = InMemoryLink(sendQueueDepth: 128, receiveQueueDepth: receives, sendCompletions: send, receiveCompletions: receive)
        let source = try link.a.pd.register(try HostBuffer(count: size), access: [.localWrite, .remoteWrite, .remoteRead])
        let target = try link.b.pd.register(try HostBuffer(count: size), access: [.localWrite, .remoteWrite, .remoteRead])
        for i in 0..<size { source.bytes![i] = UInt8(truncatingIfNeeded: i &* 5 &+ seed &* 29 &+ 3) }
        return Link(link: link, source: source, target: target)
    }

    func testEightPeersOnOneSendAndOneReceiveQueue() throws {
        let send = InMemoryCompletionQueue(capacity: 8 * 16), receive = InMemoryCompletionQueue(capacity: 8 * 32)
        let engine = try PeerEngine(options: options)
        let links = try (0..<8).map { try link(send, receive, seed: $0) }
        let peers = try links.enumerated().map { try engine.add($0.element.link.a, name: "link \($0.offset)") }
        XCTAssertEqual(engine.completionQueues.queues, 2, "eight peers, two queues")
        // Each peer: a receive for a send from the far end, and writes across its whole buffer.
        let inboxes = try links.map { try $0.link.a.pd.register(try HostBuffer(count: 64), access: .localWrite) }
        for (i, p) in peers.enumerated() { try engine.postReceive(from: p, try inboxes[i].segment()) }
        var tickets: [PeerTicket] = []
        for (i, l) in links.enumerated() {
            for k in 0..<8 {
                tickets.append(try engine.postWrite(to: peers[i], try l.source.segment(offset: k * 8192, length: 8192),
                                                    remote: l.target.remoteBuffer, at: UInt64(k * 8192)))
            }
        }
        let roundsBefore = engine.loopCounts.rounds
        for t in tickets { try engine.wait(for: t) }
        for l in links { XCTAssertEqual(Array(l.target.bytes!), Array(l.source.bytes!)) }
        // Sends from each far end, with the peer's number inside: each arrives at its own peer.
        for (i, l) in links.enumerated() {
            let out = try l.link.b.pd.register(try HostBuffer(count: 8), access: .localWrite)
            out.bytes![0] = UInt8(i)
            try l.link.b.postSend(SendRequest(id: 1, operation: .sendWithImmediate(UInt32(100 + i)), segment: try out.segment(), signaled: true))
            _ = try l.link.b.waitSendCompletions(timeout: .seconds(5), mode: .busyPoll, max: 1)
        }
        for (i, p) in peers.enumerated() {
            let a = try engine.nextArrival(from: p, timeout: .seconds(5))
            XCTAssertEqual(a.immediate, UInt32(100 + i), "peer \(i)'s arrival is its own")
            XCTAssertEqual(inboxes[i].bytes![0], UInt8(i))
        }
        let (queues, polls, stray) = engine.completionQueues
        let rounds = engine.loopCounts.rounds - roundsBefore
        XCTAssertEqual(queues, 2)
        XCTAssertEqual(stray, 0)
        // Two queues, each polled at most pollsPerRound times a round however many peers (polling
        // each of the 8 peers' queues would be 16 a round).
        XCTAssertGreaterThan(polls, 0)
        XCTAssertLessThanOrEqual(Double(polls) / Double(max(1, engine.loopCounts.rounds)), Double(2 * CompletionRouter.pollsPerRound),
                                 "polls per round (\(polls) polls, \(rounds) rounds while waiting)")
        XCTAssertFalse(send.overrun)
        XCTAssertFalse(receive.overrun)
        XCTAssertLessThanOrEqual(send.mostHeld, send.capacity)
        engine.close()
        XCTAssertEqual(engine.completionQueues.queues, 0, "the queues are forgotten once no peer uses them")
        for l in links {
            let left = l.link.finish().a
            XCTAssertEqual(left.unpolledSendCompletions + left.unpolledReceiveCompletions + left.pendingSends + left.unretiredSends, 0, "\(left)")
        }
    }

    func testWindowsAreCutToTheQueuesRoomAndAPeerBeyondItIsRefused() throws {
        let send = InMemoryCompletionQueue(capacity: 20), receive = InMemoryCompletionQueue(capacity: 96)
        let engine = try PeerEngine(options: options)
        let links = try (0..<3).map { try link(send, receive, seed: $0) }
        let first = try engine.add(links[0].link.a)
        let second = try engine.add(links[1].link.a)
        XCTAssertThrowsError(try engine.add(links[2].link.a)) {
            guard case .outOfBounds = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(engine.peers, [first, second], "the refused peer is not in the engine")
        // The second peer's window is 4 requests (20 - 16): an operation of 5 chunks does not fit, 4 do.
        XCTAssertThrowsError(try engine.write(to: second, try links[1].source.segment(offset: 0, length: 5 * 4096),
                                              remote: links[1].target.remoteBuffer)) {
            guard case .outOfBounds = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        // Many writes at once on both: the shared queue never holds more than its capacity.
        var tickets: [PeerTicket] = []
        for k in 0..<16 {
            tickets.append(try engine.postWrite(to: first, try links[0].source.segment(offset: k * 4096, length: 4096),
                                                remote: links[0].target.remoteBuffer, at: UInt64(k * 4096)))
            tickets.append(try engine.postWrite(to: second, try links[1].source.segment(offset: k * 4096, length: 4096),
                                                remote: links[1].target.remoteBuffer, at: UInt64(k * 4096)))
        }
        for t in tickets { try engine.wait(for: t) }
        XCTAssertFalse(send.overrun)
        XCTAssertLessThanOrEqual(send.mostHeld, 20)
        // Removing the first gives its room back: the third joins.
        try engine.remove(first)
        let third = try engine.add(links[2].link.a)
        try engine.write(to: third, try links[2].source.segment(), remote: links[2].target.remoteBuffer)
        XCTAssertEqual(Array(links[2].target.bytes!), Array(links[2].source.bytes!))
        // Receives: at most what the receive queue has room for.
        let tiny = InMemoryCompletionQueue(capacity: 2)
        let l = try link(send, tiny, receives: 8, seed: 9)
        try engine.remove(second)
        let p = try engine.add(l.link.a)
        try engine.postReceive(from: p, nil)
        try engine.postReceive(from: p, nil)
        XCTAssertThrowsError(try engine.postReceive(from: p, nil)) {
            guard case .outOfBounds = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        engine.close()
        XCTAssertFalse(tiny.overrun)
    }

    func testARemovedPeersFlushesAreItsOwnAndTheOthersLoseNothing() throws {
        let send = InMemoryCompletionQueue(capacity: 3 * 16), receive = InMemoryCompletionQueue(capacity: 3 * 32)
        let engine = try PeerEngine(options: options)
        let links = try (0..<3).map { try link(send, receive, seed: $0) }
        let peers = try links.map { try engine.add($0.link.a) }
        // Peer 1's requests stay on its queue (not executed); peers 0 and 2 execute theirs, but
        // their completions stay in the shared queue until delivered.
        links[1].link.hold(.a)
        links[0].link.holdCompletions(.a)
        links[2].link.holdCompletions(.a)
        for k in 0..<3 { try engine.postReceive(from: peers[1], try links[1].source.segment(offset: k * 64, length: 64)) }
        var tickets: [[PeerTicket]] = [[], [], []]
        for (i, l) in links.enumerated() {
            for k in 0..<6 {
                tickets[i].append(try engine.postWrite(to: peers[i], try l.source.segment(offset: k * 8192, length: 8192),
                                                       remote: l.target.remoteBuffer, at: UInt64(k * 8192)))
            }
        }
        // Let some of peer 0's completions into the queue before peer 1 goes: its flushes mix with them.
        links[0].link.deliverCompletions(.a, queue: .send, count: 2)
        try engine.remove(peers[1])
        XCTAssertThrowsError(try engine.wait(for: tickets[1].last!, timeout: .seconds(1))) {
            guard case .invalidArgument = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        // Every request of peer 1, sends and receives, completed (flushed) and was taken off the queues.
        let gone = links[1].link.finish().a
        XCTAssertEqual(gone.pendingSends, 0, "\(gone)")
        XCTAssertEqual(gone.unpolledSendCompletions, 0, "\(gone)")
        XCTAssertEqual(gone.unpolledReceiveCompletions, 0, "\(gone)")
        XCTAssertEqual(gone.postedReceives, 0, "\(gone)")
        // The others' completions were not taken for peer 1's, nor lost: every operation finishes.
        links[0].link.releaseCompletions(.a)
        links[2].link.releaseCompletions(.a)
        for i in [0, 2] {
            for t in tickets[i] { try engine.wait(for: t, timeout: .seconds(5)) }
            XCTAssertNil(engine.failure(of: peers[i]))
            XCTAssertEqual(Array(links[i].target.bytes![0..<(6 * 8192)]), Array(links[i].source.bytes![0..<(6 * 8192)]))
        }
        XCTAssertEqual(engine.completionQueues.stray, 0, "no completion went unclaimed")
        engine.close()
        for l in links {
            let left = l.link.finish().a
            XCTAssertEqual(left.unpolledSendCompletions + left.unpolledReceiveCompletions + left.unretiredSends, 0, "\(left)")
        }
    }

    func testACompletionOfARequestTheEngineDidNotPostIsCountedNotRouted() throws {
        let send = InMemoryCompletionQueue(capacity: 64), receive = InMemoryCompletionQueue(capacity: 64)
        let engine = try PeerEngine(options: options)
        let l = try link(send, receive, seed: 1)
        let peer = try engine.add(l.link.a)
        // Someone else posts on the peer's queue pair, under an id that names no peer.
        try l.link.a.postSend(SendRequest(id: 7, operation: .write(l.target.remoteBuffer, offset: 0),
                                          segment: try l.source.segment(offset: 0, length: 16), signaled: true))
        try engine.write(to: peer, try l.source.segment(offset: 0, length: 4096), remote: l.target.remoteBuffer)
        let end = ContinuousClock.now + .seconds(5)
        while engine.completionQueues.stray == 0 && ContinuousClock.now < end { usleep(1000) }
        XCTAssertEqual(engine.completionQueues.stray, 1)
        XCTAssertNil(engine.failure(of: peer))
        engine.close()
    }
}
