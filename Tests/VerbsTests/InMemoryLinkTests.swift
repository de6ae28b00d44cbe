#if canImport(Glibc)
import Glibc
#endif
import Verbs
import VerbsEmbedded
import XCTest

/// The in-memory twin keeps the rules a NIC keeps, or tests above it would pass for the wrong reason.
final class InMemoryLinkTests: XCTestCase {
    private func region(_ pd: ProtectionDomain, _ size: Int = 4096, _ access: AccessFlags = [.localWrite, .remoteWrite, .remoteRead])
        throws -> MemoryRegion {
        try pd.register(try HostBuffer(count: size), access: access)
    }

    private func one(_ wcs: [WorkCompletion], file: StaticString = #filePath, line: UInt = #line) -> WorkCompletion? {
        XCTAssertEqual(wcs.count, 1, file: file, line: line)
        return wcs.first
    }

    func testKeysRangesAndRightsAreChecked() throws {
        let link = InMemoryLink()
        let local = try region(link.a.pd)
        let readOnly = try region(link.b.pd, 4096, [.localWrite, .remoteRead])
        let writable = try region(link.b.pd)
        func write(_ remote: RemoteBuffer, offset: UInt64 = 0, length: Int = 64) throws -> WorkCompletionStatus? {
            try link.a.postSend(SendRequest(id: 1, operation: .write(remote, offset: offset), segment: try local.segment(offset: 0, length: length)))
            return one(try link.a.waitSendCompletions(timeout: .seconds(1), mode: .busyPoll, max: 4))?.status
        }
        XCTAssertEqual(try write(writable.remoteBuffer), .success)
        XCTAssertEqual(try write(readOnly.remoteBuffer), .remoteAccessError)
        // The endpoint is in the error state now: the next request flushes.
        XCTAssertEqual(try write(writable.remoteBuffer), .flushed)

        let fresh = InMemoryLink()
        let l2 = try region(fresh.a.pd)
        let r2 = try region(fresh.b.pd)
        // A descriptor claiming more than was registered: the post checks the descriptor's own
        // length, the "NIC" checks the registration.
        let lying = RemoteBuffer(address: r2.remoteBuffer.address, length: 1 << 20, rkey: r2.rkey)
        try fresh.a.postSend(SendRequest(id: 2, operation: .write(lying, offset: 4000), segment: try l2.segment(offset: 0, length: 200)))
        XCTAssertEqual(one(try fresh.a.waitSendCompletions(timeout: .seconds(1), mode: .busyPoll, max: 4))?.status, .remoteAccessError)
        // An lkey of the peer's domain is refused as a post error before anything moves.
        XCTAssertThrowsError(try fresh.b.postSend(SendRequest(id: 3, operation: .send, segment: try l2.segment(offset: 0, length: 8))))
    }

    func testTheSendQueueHoldsItsDepthUntilCompletionsArePolled() throws {
        let link = InMemoryLink(sendQueueDepth: 2)
        let local = try region(link.a.pd)
        let target = try region(link.b.pd)
        let remote = target.remoteBuffer
        for id in 1...2 {
            try link.a.postSend(SendRequest(id: UInt64(id), operation: .write(remote, offset: 0), segment: try local.segment(offset: 0, length: 8),
                                            signaled: id == 2))
        }
        XCTAssertThrowsError(try link.a.postSend(SendRequest(id: 3, operation: .write(remote, offset: 0), segment: nil))) {
            XCTAssertEqual(($0 as? VerbsError)?.errno, ENOMEM)
        }
        XCTAssertEqual(try link.a.pollSendCompletions(max: 8).map(\.workRequestID), [2])
        try link.a.postSend(SendRequest(id: 3, operation: .write(remote, offset: 0), segment: nil))
        XCTAssertEqual(try link.a.pollSendCompletions(max: 8).map(\.status), [.success])
        // Memory released under a peer's descriptor is gone for the "NIC" too.
        let gone = try region(link.b.pd).remoteBuffer
        try link.a.postSend(SendRequest(id: 4, operation: .write(gone, offset: 0), segment: try local.segment(offset: 0, length: 8)))
        XCTAssertEqual(try link.a.pollSendCompletions(max: 8).map(\.status), [.remoteAccessError])
    }

    func testSendWaitsForAReceiveAndARunawaySendFailsBothEnds() throws {
        let link = InMemoryLink()
        let local = try region(link.a.pd)
        let small = try region(link.b.pd, 16)
        try link.a.postSend(SendRequest(id: 1, operation: .send, segment: try local.segment(offset: 0, length: 64)))
        XCTAssertEqual(try link.a.pollSendCompletions(max: 4), [], "no receive posted: the send waits (RNR)")
        try link.b.postReceive(id: 7, segment: try small.segment())
        try link.b.postReceive(id: 8, segment: try small.segment())
        XCTAssertEqual(one(try link.a.pollSendCompletions(max: 4))?.status, .remoteInvalidRequest)
        let received = try link.b.pollReceiveCompletions(max: 4)
        XCTAssertEqual(received.map(\.workRequestID), [7, 8])
        XCTAssertEqual(received.map(\.status), [.localLengthError, .flushed])
    }

    func testDisconnectIsSeenThroughEventsAndFlushesEverything() throws {
        let link = InMemoryLink()
        let local = try region(link.a.pd)
        try link.b.postReceive(id: 5, segment: nil)
        link.hold(.a)
        try link.a.postSend(SendRequest(id: 1, operation: .write(try region(link.b.pd).remoteBuffer, offset: 0),
                                        segment: try local.segment(offset: 0, length: 8), signaled: false))
        link.inject(.disconnect)
        XCTAssertTrue(link.a.isConnected, "not known until the events are read")
        XCTAssertFalse(link.a.processEvents())
        let flushed = try link.a.pollSendCompletions(max: 4)
        XCTAssertEqual(flushed.map(\.status), [.flushed], "error completions come even for unsignaled requests")
        XCTAssertEqual(try link.b.waitReceiveCompletions(timeout: .seconds(1), mode: .event, max: 4).map(\.status), [.flushed])
        XCTAssertFalse(link.b.isConnected)
    }

    func testFinishReportsWhatWasLeftAndRegionsLeaveTheTable() throws {
        let link = InMemoryLink()
        var local: MemoryRegion? = try region(link.a.pd)
        try link.b.postReceive(id: 1, segment: nil)
        var left = link.finish()
        XCTAssertEqual(left.b.postedReceives, 1)
        XCTAssertEqual(left.a.registeredRegions, 1)
        XCTAssertFalse(left.isEmpty)
        local = nil
        try link.b.abort()
        XCTAssertEqual(try link.b.pollReceiveCompletions(max: 4).map(\.status), [.flushed])
        left = link.finish()
        XCTAssertTrue(left.isEmpty, left.description)
        XCTAssertNil(local)
    }

    /// Completions held on two links come out in the order the test delivers them, not the order
    /// the requests were posted in; within one queue they keep RC's order.
    func testHeldCompletionsAreDeliveredAcrossLinksInTheOrderGiven() throws {
        let first = InMemoryLink(), second = InMemoryLink()
        let l1 = try region(first.a.pd), r1 = try region(first.b.pd)
        let l2 = try region(second.a.pd), r2 = try region(second.b.pd)
        first.holdCompletions(.a)
        second.holdCompletions(.a)
        l1.bytes![0] = 0x11
        l2.bytes![0] = 0x22
        for id in 1...3 {
            try first.a.postSend(SendRequest(id: UInt64(id), operation: .write(r1.remoteBuffer, offset: UInt64(id)),
                                             segment: try l1.segment(offset: 0, length: 1)))
        }
        try second.a.postSend(SendRequest(id: 9, operation: .write(r2.remoteBuffer, offset: 0), segment: try l2.segment(offset: 0, length: 1)))
        XCTAssertEqual(r1.bytes![3], 0x11, "the requests executed: their bytes landed")
        XCTAssertEqual(r2.bytes![0], 0x22)
        XCTAssertEqual(try first.a.pollSendCompletions(max: 8), [], "their completions are held")
        XCTAssertThrowsError(try first.a.waitSendCompletions(timeout: .milliseconds(20), mode: .busyPoll, max: 8))
        XCTAssertEqual(first.heldCompletions(.a).send, 3)

        // The second link's completion first, though its request was posted last.
        second.deliverCompletions(.a, queue: .send)
        XCTAssertEqual(try second.a.pollSendCompletions(max: 8).map(\.workRequestID), [9])
        XCTAssertEqual(try first.a.pollSendCompletions(max: 8), [])
        // Then the first link's, one at a time: always the oldest.
        first.deliverCompletions(.a, queue: .send, count: 1)
        XCTAssertEqual(try first.a.pollSendCompletions(max: 8).map(\.workRequestID), [1])
        first.deliverCompletions(.a, queue: .send, count: 5)
        XCTAssertEqual(try first.a.pollSendCompletions(max: 8).map(\.workRequestID), [2, 3])

        // Still holding: a later request's completion waits for the next delivery.
        try first.a.postSend(SendRequest(id: 4, operation: .write(r1.remoteBuffer, offset: 0), segment: try l1.segment(offset: 0, length: 1)))
        XCTAssertEqual(try first.a.pollSendCompletions(max: 8), [])
        first.releaseCompletions(.a)
        XCTAssertEqual(try first.a.pollSendCompletions(max: 8).map(\.workRequestID), [4])
        try first.a.postSend(SendRequest(id: 5, operation: .write(r1.remoteBuffer, offset: 0), segment: try l1.segment(offset: 0, length: 1)))
        XCTAssertEqual(try first.a.pollSendCompletions(max: 8).map(\.workRequestID), [5], "released: completions come at once again")
    }

    /// An endpoint's receive completion may come before the send completion of a request posted
    /// earlier (its send and receive queues are not ordered with each other); held failures and
    /// flushes keep their place in their queue, and `finish` counts held completions.
    func testHeldCompletionsReorderAnEndpointsQueuesAndKeepFailuresInPlace() throws {
        let link = InMemoryLink()
        let a = try region(link.a.pd), b = try region(link.b.pd)
        try link.a.postReceive(id: 70, segment: try a.segment(offset: 0, length: 64))
        try link.b.postReceive(id: 80, segment: try b.segment(offset: 0, length: 64))
        link.holdCompletions(.a)
        try link.a.postSend(SendRequest(id: 1, operation: .send, segment: try a.segment(offset: 100, length: 8)))
        try link.b.postSend(SendRequest(id: 2, operation: .send, segment: try b.segment(offset: 100, length: 8)))
        XCTAssertEqual(try link.b.pollReceiveCompletions(max: 4).map(\.workRequestID), [80], "the other end holds nothing")
        XCTAssertEqual(link.heldCompletions(.a).send, 1)
        XCTAssertEqual(link.heldCompletions(.a).receive, 1)
        link.deliverCompletions(.a, queue: .receive)
        XCTAssertEqual(try link.a.pollReceiveCompletions(max: 4).map(\.workRequestID), [70])
        XCTAssertEqual(try link.a.pollSendCompletions(max: 4), [], "the earlier send's completion is still held")

        // A failure while held: it and the flushes after it come out in order, when delivered.
        let readOnly = try region(link.b.pd, 64, [.localWrite, .remoteRead])
        try link.a.postSend(SendRequest(id: 3, operation: .write(readOnly.remoteBuffer, offset: 0), segment: try a.segment(offset: 0, length: 8)))
        try link.a.postSend(SendRequest(id: 4, operation: .write(b.remoteBuffer, offset: 0), segment: try a.segment(offset: 0, length: 8)))
        XCTAssertEqual(link.finish().a.unpolledSendCompletions, 3, "held completions are unpolled leftovers")
        link.deliverCompletions(.a, queue: .send, count: 2)
        XCTAssertEqual(try link.a.pollSendCompletions(max: 8).map(\.status), [.success, .remoteAccessError])
        link.releaseCompletions(.a)
        XCTAssertEqual(try link.a.pollSendCompletions(max: 8).map(\.status), [.flushed])
    }

    func testASharedCompletionQueueTakesEveryEndpointsCompletionsInEachOnesOrderAndOverruns() throws {
        let queue = InMemoryCompletionQueue(capacity: 4)
        let links = [InMemoryLink(sendCompletions: queue), InMemoryLink(sendCompletions: queue)]
        XCTAssertEqual(queue.endpoints, 2)
        XCTAssertTrue(links[0].a.sendCompletionQueue === links[1].a.sendCompletionQueue)
        XCTAssertFalse(links[0].a.receiveCompletionQueue === links[1].a.receiveCompletionQueue, "receives keep their own")
        let sources = try links.map { try region($0.a.pd) }
        let targets = try links.map { try region($0.b.pd) }
        for (i, l) in links.enumerated() {
            for k in 0..<2 {
                try l.a.postSend(SendRequest(id: UInt64(10 * i + k), operation: .write(targets[i].remoteBuffer, offset: 0),
                                             segment: try sources[i].segment(offset: 0, length: 64)))
            }
        }
        // Either endpoint's poll takes from the one queue: all four, each link's in its order.
        let all = try links[1].a.pollSendCompletions(max: 16)
        XCTAssertEqual(all.count, 4)
        XCTAssertEqual(all.map(\.workRequestID).filter { $0 < 10 }, [0, 1])
        XCTAssertEqual(all.map(\.workRequestID).filter { $0 >= 10 }, [10, 11])
        XCTAssertEqual(queue.mostHeld, 4)
        // Five outstanding in a queue of four: overrun, and the queue fails from then on.
        for (i, l) in links.enumerated() {
            for k in 0..<(i == 0 ? 3 : 2) {
                try l.a.postSend(SendRequest(id: UInt64(k), operation: .write(targets[i].remoteBuffer, offset: 0),
                                             segment: try sources[i].segment(offset: 0, length: 64)))
            }
        }
        XCTAssertThrowsError(try queue.poll(max: 1))
        XCTAssertTrue(queue.overrun)
        XCTAssertThrowsError(try links[0].a.pollSendCompletions(max: 1))
    }
}
