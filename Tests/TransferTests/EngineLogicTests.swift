import Dispatch
@testable import Transfer
import Verbs
import VerbsEmbedded
import XCTest

/// The transfer engine's logic on the in-memory twin, at host speed and without an RDMA device:
/// windowing, selective signaling, retirement, tickets, sticky failure on every path, and calls
/// from several threads at once. (TransferTests runs the same engine over rxe in the fabric.)
final class EngineLogicTests: XCTestCase {
    private struct Pair {
        let link: InMemoryLink
        let sender: TransferEngine
        let receiver: TransferEngine
        let source: MemoryRegion
        let target: MemoryRegion
    }

    private func pair(size: Int = 1 << 16, depth: Int = 128, options: TransferOptions = .init(timeout: .seconds(5)),
                      targetAccess: AccessFlags = [.localWrite, .remoteWrite, .remoteRead]) throws -> Pair {
        let link = InMemoryLink(sendQueueDepth: depth)
        let source = try link.a.pd.register(try HostBuffer(count: size), access: .localWrite)
        let target = try link.b.pd.register(try HostBuffer(count: size), access: targetAccess)
        for i in 0..<size { source.bytes![i] = UInt8(truncatingIfNeeded: i &* 7 &+ 1) }
        return Pair(link: link, sender: TransferEngine(endpoint: link.a, options: options),
                    receiver: TransferEngine(endpoint: link.b, options: options), source: source, target: target)
    }

    func testWriteAndReadMoveTheBytes() throws {
        let p = try pair()
        try p.sender.write(try p.source.segment(offset: 100, length: 5000), to: p.target.remoteBuffer, at: 3)
        XCTAssertEqual(Array(p.target.bytes![3..<5003]), Array(p.source.bytes![100..<5100]))
        let back = try p.link.a.pd.register(try HostBuffer(count: 5000), access: .localWrite)
        try p.sender.read(into: try back.segment(), from: p.target.remoteBuffer, at: 3)
        XCTAssertEqual(Array(back.bytes!), Array(p.source.bytes![100..<5100]))
        XCTAssertEqual(p.sender.outstanding, 0)
    }

    func testLongTransfersAreChunkedAndTheWindowKeepsTheSendQueueFromOverflowing() throws {
        // A send queue of 4 and 1000-byte chunks: 50 writes of 4500 bytes are 250 requests, which
        // only fit because the engine retires completions before it posts past its window.
        let p = try pair(depth: 4, options: .init(window: 64, signalInterval: 16, maxChunk: 1000, timeout: .seconds(5)))
        var tickets: [Ticket] = []
        for k in 0..<50 {
            tickets.append(try p.sender.postWrite(try p.source.segment(offset: k * 100, length: 4500), to: p.target.remoteBuffer,
                                                  at: UInt64(k * 100)))
        }
        try p.sender.drain()
        XCTAssertEqual(p.link.executed(.a), 250)
        for t in tickets { try p.sender.wait(for: t, timeout: .zero) }
        XCTAssertEqual(Array(p.target.bytes![0..<9400]), Array(p.source.bytes![0..<9400]))
        XCTAssertTrue(p.link.finish().a.pendingSends == 0)
    }

    func testProgressDoesNotLoseTicketsForWait() throws {
        let p = try pair()
        let ticket = try p.sender.postWrite(try p.source.segment(offset: 0, length: 64), to: p.target.remoteBuffer)
        var seen: [Ticket] = []
        while seen.isEmpty { seen = try p.sender.progress() }
        XCTAssertEqual(seen, [ticket])
        // progress() reported it; wait(for:) must still know it finished, at once.
        try p.sender.wait(for: ticket, timeout: .zero)
        try p.sender.wait(for: ticket, timeout: .zero)
    }

    func testWaitingForUnknownOrReceiveTicketsIsRefused() throws {
        let p = try pair()
        XCTAssertThrowsError(try p.sender.wait(for: Ticket(id: 99), timeout: .zero)) {
            guard case .invalidArgument = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        let receive = try p.receiver.postReceive(nil)
        XCTAssertThrowsError(try p.receiver.wait(for: receive, timeout: .zero)) {
            guard case .invalidArgument = $0 as? TransferError else { return XCTFail("\($0)") }
        }
    }

    func testATimeoutIsNotAFailure() throws {
        let p = try pair()
        p.link.hold(.a)
        let ticket = try p.sender.postWrite(try p.source.segment(offset: 0, length: 64), to: p.target.remoteBuffer)
        XCTAssertThrowsError(try p.sender.wait(for: ticket, timeout: .milliseconds(20))) {
            guard case .timedOut = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        XCTAssertNil(p.sender.failure)
        p.link.release(.a)
        try p.sender.wait(for: ticket)
    }

    func testAFailedReceiveFailsTheEngineForEveryLaterCall() throws {
        let p = try pair()
        let small = try p.target.segment(offset: 0, length: 16)
        _ = try p.receiver.postReceive(small)
        // 64 bytes into a 16-byte receive: a length error on the receiver, a NAK to the sender.
        XCTAssertThrowsError(try p.sender.send(try p.source.segment(offset: 0, length: 64))) {
            XCTAssertEqual($0 as? TransferError, .failed(operation: "send", status: .remoteInvalidRequest, vendorError: 0))
        }
        let expected = TransferError.failed(operation: "receive", status: .localLengthError, vendorError: 0)
        XCTAssertThrowsError(try p.receiver.nextArrival(timeout: .seconds(1))) { XCTAssertEqual($0 as? TransferError, expected) }
        // Every later call reports the same failure, receives and sends alike.
        XCTAssertThrowsError(try p.receiver.postReceive(small)) { XCTAssertEqual($0 as? TransferError, expected) }
        XCTAssertThrowsError(try p.receiver.nextArrival(timeout: .seconds(1))) { XCTAssertEqual($0 as? TransferError, expected) }
        XCTAssertThrowsError(try p.receiver.postSend(nil)) { XCTAssertEqual($0 as? TransferError, expected) }
        XCTAssertThrowsError(try p.receiver.progress()) { XCTAssertEqual($0 as? TransferError, expected) }
        XCTAssertEqual(p.receiver.failure, expected)
        XCTAssertThrowsError(try p.sender.postWrite(try p.source.segment(offset: 0, length: 8), to: p.target.remoteBuffer)) {
            XCTAssertEqual($0 as? TransferError, .failed(operation: "send", status: .remoteInvalidRequest, vendorError: 0))
        }
    }

    func testARemoteAccessErrorIsStickyAndNamesTheOperation() throws {
        let p = try pair(targetAccess: [.localWrite, .remoteRead])  // no remote write
        XCTAssertThrowsError(try p.sender.write(try p.source.segment(offset: 0, length: 64), to: p.target.remoteBuffer)) {
            XCTAssertEqual($0 as? TransferError, .failed(operation: "RDMA write", status: .remoteAccessError, vendorError: 0))
        }
        XCTAssertThrowsError(try p.sender.postRead(into: try p.source.segment(offset: 0, length: 8), from: p.target.remoteBuffer)) {
            XCTAssertEqual($0 as? TransferError, .failed(operation: "RDMA write", status: .remoteAccessError, vendorError: 0))
        }
        // A wrong rkey fails the same way on a fresh engine.
        let q = try pair()
        var forged = q.target.remoteBuffer
        forged.rkey ^= 0x10
        XCTAssertThrowsError(try q.sender.write(try q.source.segment(offset: 0, length: 64), to: forged)) {
            XCTAssertEqual($0 as? TransferError, .failed(operation: "RDMA write", status: .remoteAccessError, vendorError: 0))
        }
    }

    func testAFailureInTheMiddleOfAWindowFailsTheOperationsAfterIt() throws {
        let p = try pair(options: .init(window: 16, signalInterval: 4, maxChunk: 256, timeout: .seconds(5)))
        p.link.hold(.a)
        let first = try p.sender.postWrite(try p.source.segment(offset: 0, length: 1024), to: p.target.remoteBuffer)
        p.link.inject(.failNextSend(.retryExceeded), on: .a)
        let second = try p.sender.postWrite(try p.source.segment(offset: 0, length: 1024), to: p.target.remoteBuffer)
        p.link.release(.a)
        let expected = TransferError.failed(operation: "RDMA write", status: .retryExceeded, vendorError: 0)
        XCTAssertThrowsError(try p.sender.wait(for: second)) { XCTAssertEqual($0 as? TransferError, expected) }
        XCTAssertThrowsError(try p.sender.wait(for: first)) { XCTAssertEqual($0 as? TransferError, expected) }
        XCTAssertThrowsError(try p.sender.drain()) { XCTAssertEqual($0 as? TransferError, expected) }
    }

    func testAPeerThatGoesAwayFailsOutstandingWorkAsDisconnected() throws {
        let p = try pair()
        p.link.hold(.a)
        let ticket = try p.sender.postWrite(try p.source.segment(offset: 0, length: 64), to: p.target.remoteBuffer)
        _ = try p.receiver.postReceive(nil)
        p.link.inject(.disconnect)
        XCTAssertThrowsError(try p.sender.wait(for: ticket)) {
            XCTAssertEqual($0 as? TransferError, .disconnected(operation: "RDMA write"))
        }
        XCTAssertThrowsError(try p.receiver.nextArrival(timeout: .seconds(1))) {
            XCTAssertEqual($0 as? TransferError, .disconnected(operation: "receive"))
        }
        XCTAssertThrowsError(try p.receiver.postReceive(nil)) {
            XCTAssertEqual($0 as? TransferError, .disconnected(operation: "receive"))
        }
    }

    /// The peer saw these messages delivered, so they are not lost with the connection: a
    /// receiver whose engine has failed (here, a re-post refused after the disconnect) still gets
    /// every arrival that completed before it, then the failure.
    func testArrivalsBeforeAFailureAreStillHandedOut() throws {
        let p = try pair()
        for k in 0..<4 { _ = try p.receiver.postReceive(try p.target.segment(offset: k * 64, length: 64)) }
        for k in 0..<3 { try p.sender.send(try p.source.segment(offset: 0, length: 10 + k)) }
        p.link.inject(.disconnect)
        XCTAssertFalse(p.link.b.processEvents())
        XCTAssertThrowsError(try p.receiver.postReceive(try p.target.segment(offset: 0, length: 64))) {
            XCTAssertEqual($0 as? TransferError, .disconnected(operation: "receive"))
        }
        XCTAssertEqual(try (0..<3).map { _ in try p.receiver.nextArrival(timeout: .seconds(1)).byteCount }, [10, 11, 12])
        XCTAssertThrowsError(try p.receiver.nextArrival(timeout: .seconds(1))) {
            XCTAssertEqual($0 as? TransferError, .disconnected(operation: "receive"))
        }
        // A finished send still waits fine; one that never ran does not.
        let ticket = try p.sender.postSend(nil)
        XCTAssertNoThrow(try p.sender.wait(for: Ticket(id: ticket.id - 1), timeout: .zero))
        XCTAssertThrowsError(try p.sender.wait(for: ticket, timeout: .seconds(1)))
    }

    func testRNRRetryExceededOnASend() throws {
        let p = try pair()
        p.link.inject(.failNextSend(.rnrRetryExceeded), on: .a)
        XCTAssertThrowsError(try p.sender.send(nil)) {
            XCTAssertEqual($0 as? TransferError, .failed(operation: "send", status: .rnrRetryExceeded, vendorError: 0))
        }
    }

    func testSendsAndWriteWithImmediateArriveInOrder() throws {
        let p = try pair()
        for k in 0..<4 { _ = try p.receiver.postReceive(try p.target.segment(offset: k * 256, length: 256)) }
        try p.sender.send(try p.source.segment(offset: 0, length: 10), immediate: 7)
        try p.sender.write(try p.source.segment(offset: 0, length: 100), to: p.target.remoteBuffer, at: 2048, immediate: 9)
        try p.sender.send(nil)
        XCTAssertEqual(try p.receiver.nextArrival().immediate, 7)
        let second = try p.receiver.nextArrival()
        XCTAssertEqual(second.immediate, 9)
        XCTAssertEqual(second.byteCount, 100)
        XCTAssertEqual(try p.receiver.nextArrival().byteCount, 0)
        XCTAssertEqual(Array(p.target.bytes![0..<10]), Array(p.source.bytes![0..<10]))
        let left = p.link.finish()
        XCTAssertEqual(left.b.postedReceives, 1)
        XCTAssertEqual(left.a.pendingSends, 0)
        XCTAssertEqual(left.a.unpolledSendCompletions, 0)
    }

    /// Two engines on two queue pairs whose completions come back in the other order than the
    /// requests were posted: each engine finishes its own work when its completion comes, a wait
    /// that runs out meanwhile is a timeout, not a failure, and nothing finishes early.
    func testCompletionsReorderedAcrossQueuePairsFinishEachEnginesOwnWork() throws {
        let first = try pair(), second = try pair()
        first.link.holdCompletions(.a)
        second.link.holdCompletions(.a)
        let early = try first.sender.postWrite(try first.source.segment(offset: 0, length: 3000), to: first.target.remoteBuffer)
        let late = try second.sender.postWrite(try second.source.segment(offset: 0, length: 3000), to: second.target.remoteBuffer)
        second.link.deliverCompletions(.a, queue: .send)
        try second.sender.wait(for: late, timeout: .seconds(1))
        XCTAssertEqual(try first.sender.progress(), [], "the first engine's completion has not come")
        XCTAssertThrowsError(try first.sender.wait(for: early, timeout: .milliseconds(20))) {
            guard case .timedOut = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        XCTAssertNil(first.sender.failure)
        XCTAssertEqual(first.sender.outstanding, 1)
        first.link.releaseCompletions(.a)
        try first.sender.wait(for: early, timeout: .seconds(1))
        XCTAssertEqual(Array(first.target.bytes![0..<3000]), Array(first.source.bytes![0..<3000]))
        XCTAssertEqual(first.sender.outstanding, 0)
        XCTAssertEqual(second.sender.outstanding, 0)
    }

    /// One endpoint's queues out of step: an arrival comes before the completion of a send posted
    /// earlier on the same engine, and a window of writes with a failure in its middle, its
    /// completions handed over one at a time, still fails the engine for good.
    func testCompletionsHeldAndDeliveredInPiecesKeepTicketsAndFailuresRight() throws {
        let p = try pair(options: .init(window: 16, signalInterval: 4, timeout: .seconds(5)))
        let reply = TransferEngine(endpoint: p.link.b, options: .init(timeout: .seconds(5)))
        _ = try p.sender.postReceive(try p.link.a.pd.register(try HostBuffer(count: 64), access: .localWrite).segment())
        _ = try reply.postReceive(try p.target.segment(offset: 0, length: 64))
        p.link.holdCompletions(.a)
        let request = try p.sender.postSend(try p.source.segment(offset: 0, length: 8))
        XCTAssertEqual(try reply.nextArrival(timeout: .seconds(1)).byteCount, 8)
        try reply.send(try p.target.segment(offset: 1000, length: 5))
        XCTAssertEqual(p.link.heldCompletions(.a).send, 1)
        p.link.deliverCompletions(.a, queue: .receive)
        XCTAssertEqual(try p.sender.nextArrival(timeout: .seconds(1)).byteCount, 5, "the reply first")
        XCTAssertEqual(p.sender.outstanding, 1, "its request's completion is still held")
        p.link.deliverCompletions(.a, queue: .send)
        try p.sender.wait(for: request, timeout: .seconds(1))

        // Ten writes, the sixth to memory the peer does not expose: held, then one by one.
        let closed = try p.link.b.pd.register(try HostBuffer(count: 4096), access: .localWrite)
        var tickets: [Ticket] = []
        for k in 0..<10 {
            let remote = k == 5 ? closed.remoteBuffer : p.target.remoteBuffer
            tickets.append(try p.sender.postWrite(try p.source.segment(offset: 0, length: 64), to: remote))
        }
        for _ in 0..<10 {
            p.link.deliverCompletions(.a, queue: .send, count: 1)
            _ = try? p.sender.progress()
        }
        try p.sender.wait(for: tickets[4], timeout: .zero)
        XCTAssertThrowsError(try p.sender.wait(for: tickets[5], timeout: .seconds(1)))
        XCTAssertThrowsError(try p.sender.wait(for: tickets[9], timeout: .seconds(1)))
        guard case .failed(_, .remoteAccessError, _)? = p.sender.failure else { return XCTFail("\(String(describing: p.sender.failure))") }
        XCTAssertThrowsError(try p.sender.postSend(nil), "failed for every later call")
    }

    func testOutOfBoundsIsTypedAndPostsNothing() throws {
        let p = try pair(size: 4096)
        XCTAssertThrowsError(try p.sender.postWrite(try p.source.segment(offset: 0, length: 64), to: p.target.remoteBuffer, at: 4090)) {
            guard case .outOfBounds = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try p.source.segment(offset: 4000, length: 200)) {
            guard case .outOfRange = $0 as? VerbsError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(TransferError(VerbsError.outOfRange("x")), .outOfBounds("x"))
        XCTAssertEqual(p.link.executed(.a), 0)
        XCTAssertNil(p.sender.failure)
    }

    /// Synchronous and async calls from several threads at once: all finish, the bytes are right
    /// (TSan runs this under `make test-tsan-host`).
    func testSyncAndAsyncCallersAreSerialized() async throws {
        let p = try pair(options: .init(window: 8, signalInterval: 4, maxChunk: 512, timeout: .seconds(10)))
        let sender = p.sender, source = p.source, remote = p.target.remoteBuffer
        let threads = 4, rounds = 50
        let group = DispatchGroup()
        for t in 0..<threads {
            DispatchQueue.global().async(group: group) {
                for r in 0..<rounds {
                    let offset = (t * rounds + r) % 32 * 1024
                    do { try sender.write(try source.segment(offset: offset, length: 1024), to: remote, at: UInt64(offset)) } catch {
                        XCTFail("sync write: \(error)")
                    }
                }
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for t in 0..<threads {
                tasks.addTask {
                    for r in 0..<rounds {
                        let offset = (t * rounds + r + 7) % 32 * 1024
                        try await sender.write(try source.segment(offset: offset, length: 1024), to: remote, at: UInt64(offset))
                    }
                }
            }
            try await tasks.waitForAll()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(sender.outstanding, 0)
        XCTAssertEqual(Array(p.target.bytes![0..<32768]), Array(p.source.bytes![0..<32768]))
    }

    func testAsyncArrivalWaitsWithoutAThread() async throws {
        let p = try pair()
        _ = try p.receiver.postReceive(try p.target.segment(offset: 0, length: 64))
        let receiver = p.receiver
        async let arrival = receiver.arrival(timeout: .seconds(5))
        try await Task.sleep(for: .milliseconds(5))
        try await p.sender.send(try p.source.segment(offset: 0, length: 33), immediate: 5)
        let got = try await arrival
        XCTAssertEqual(got.byteCount, 33)
        XCTAssertEqual(got.immediate, 5)
        do {
            _ = try await receiver.arrival(timeout: .milliseconds(10))
            XCTFail("an arrival without a posted receive")
        } catch {
            guard case .invalidArgument = error else { return XCTFail("\(error)") }
        }
    }
}
