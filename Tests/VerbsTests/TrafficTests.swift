import Foundation
import RDMATestSupport
import SelfTest
import Verbs
import XCTest

/// rdmacm-connected traffic in one process: listener and client over the same device.
final class ConnectionTests: RDMATestCase {
    func testExchangeSendWriteReadOfEverySize() throws {
        let before = try baselineCounts()
        do {
            let (server, client) = try Loopback.run(address: env.address, options: ExchangeOptions(sizes: [1, 4096, 8 << 20]))
            for report in [server, client] {
                XCTAssertEqual(report.checks.count, 9, "\(report.role): 3 operations x 3 sizes")
                for check in report.checks { XCTAssertTrue(check.passed, "\(report.role): \(check)") }
            }
        }
        let after = try resourceCounts()
        for kind in ["qp", "cq", "mr", "pd"] { XCTAssertEqual(after[kind], before[kind], "\(kind) leaked") }
    }

    func testConnectWhereNothingListensFailsWithinTimeoutAndLeaksNothing() throws {
        let before = try baselineCounts()
        try connectWhereNothingListens()
        let after = try resourceCounts()
        for kind in ["qp", "cq", "pd", "cm_id"] { XCTAssertEqual(after[kind], before[kind], "\(kind) leaked by a failed connect") }
    }

    private func connectWhereNothingListens() throws {
        let route = try ResolvedRoute.resolve(host: env.address, port: 1, timeout: .seconds(5))
        let channel = try CompletionChannel(context: route.context)
        let cq = try CompletionQueue(context: route.context, capacity: 4, channel: channel)
        let pd = try ProtectionDomain(context: route.context)
        let prepared = try route.prepare(pd: pd, sendCQ: cq, receiveCQ: cq)
        let start = ContinuousClock.now
        do {
            _ = try prepared.connect(timeout: .seconds(5))
            XCTFail("connected where nothing listens")
        } catch {
            assertVerbsError(error, "rejected or unreachable") {
                if case let .connection(f) = $0 { return f.reason == .rejected || f.reason == .unreachable }
                return false
            }
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(6))
    }

    func testResolvingAnUnreachableAddressFailsWithinTimeout() throws {
        // 192.0.2.0/24 is the fabric's subnet: .77 answers no ARP. 198.51.100.1 has no route.
        for host in ["192.0.2.77", "198.51.100.1"] {
            let start = ContinuousClock.now
            XCTAssertThrowsError(try { _ = try ResolvedRoute.resolve(host: host, port: 7471, timeout: .seconds(3)) }()) { error in
                assertVerbsError(error, "a typed resolution error for \(host)") {
                    switch $0 {
                    case let .connection(f): return f.reason == .addressResolution || f.reason == .routeResolution || f.reason == .unreachable
                    case .timedOut, .system, .notFound: return true
                    default: return false
                    }
                }
            }
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(5), host)
        }
    }

    func testRejectCarriesPrivateDataAndBadPrivateDataIsRefused() throws {
        let listener = try Listener(address: env.address, port: 0)
        let port = listener.port
        let serverDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            if let request = try? listener.accept(timeout: .seconds(10)) {
                try? request.reject(privateData: Array("busy".utf8))
            }
            serverDone.signal()
        }
        let route = try ResolvedRoute.resolve(host: env.address, port: port)
        let channel = try CompletionChannel(context: route.context)
        let cq = try CompletionQueue(context: route.context, capacity: 4, channel: channel)
        let pd = try ProtectionDomain(context: route.context)
        let prepared = try route.prepare(pd: pd, sendCQ: cq, receiveCQ: cq)
        do {
            _ = try prepared.connect(privateData: [1, 2, 3], timeout: .seconds(10))
            XCTFail("connected although the server rejects")
        } catch {
            assertVerbsError(error, "rejected with the server's private data") {
                if case let .connection(f) = $0 { return f.reason == .rejected && f.privateData.starts(with: Array("busy".utf8)) }
                return false
            }
        }
        XCTAssertEqual(serverDone.wait(timeout: .now() + 15), .success)

        let route2 = try ResolvedRoute.resolve(host: env.address, port: port)
        let pd2 = try ProtectionDomain(context: route2.context)
        let cq2 = try CompletionQueue(context: route2.context, capacity: 4)
        let prepared2 = try route2.prepare(pd: pd2, sendCQ: cq2, receiveCQ: cq2)
        do {
            _ = try prepared2.connect(privateData: [UInt8](repeating: 0, count: 57))
            XCTFail("57 bytes of private data were sent")
        } catch {
            assertVerbsError(error, "57 bytes of private data refused before connecting") {
                if case .invalidArgument = $0 { return true }; return false
            }
        }
    }
}

/// Queue pairs connected by hand: explicit state transitions, immediates, errors.
final class QueuePairTests: RDMATestCase {
    private func pair() throws -> ManualPair {
        let pair = try ManualPair(env: env, pd: pd)
        XCTAssertEqual(try pair.a.state(), .reset)
        try pair.connect(env: env)
        XCTAssertEqual(try pair.a.state(), .readyToSend)
        XCTAssertEqual(try pair.b.state(), .readyToSend)
        return pair
    }

    func testStateTransitionsAndSendReceive() throws {
        let p = try pair()
        let src = try pd.register(try HostBuffer(count: 4096), access: .local)
        let dst = try pd.register(try HostBuffer(count: 4096), access: .local)
        Pattern.fill(src.bytes!, count: 4096, seed: 42)
        try p.b.postReceive(id: 7, segment: try dst.segment())
        try p.a.postSend(SendRequest(id: 1, operation: .send, segment: try src.segment()))
        let sent = try p.cqA.collect(1, timeout: .seconds(10))
        XCTAssertEqual(sent.first?.opcode, .send)
        let got = try p.cqB.collect(1, timeout: .seconds(10))
        XCTAssertEqual(got.first?.workRequestID, 7)
        XCTAssertEqual(got.first?.byteCount, 4096)
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(dst.bytes!), count: 4096, seed: 42))
    }

    func testInlineSendAndWriteWithImmediate() throws {
        let p = try pair()
        let src = try pd.register(try HostBuffer(count: 64), access: .local)
        let dst = try pd.register(try HostBuffer(count: 4096), access: .remote)
        Pattern.fill(src.bytes!, count: 64, seed: 5)
        try p.b.postReceive(id: 9, segment: nil)
        try p.a.postSend(SendRequest(id: 2, operation: .writeWithImmediate(dst.remoteBuffer, offset: 100, immediate: 0xCAFE_F00D),
                                     segment: try src.segment(), inline: true))
        _ = try p.cqA.collect(1, timeout: .seconds(10), mode: .busyPoll)
        let wc = try XCTUnwrap(try p.cqB.collect(1, timeout: .seconds(10)).first)
        XCTAssertEqual(wc.opcode, .receiveWithImmediate)
        XCTAssertEqual(wc.immediate, 0xCAFE_F00D)
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(rebasing: dst.bytes![100..<164]), count: 64, seed: 5))
        XCTAssertThrowsError(try p.a.postSend(SendRequest(id: 3, operation: .send, segment: try dst.segment(offset: 0, length: 65), inline: true)),
                             "inline beyond the QP's limit")
    }

    func testPreparedSendChecksOnceAndPostsAgain() throws {
        let p = try pair()
        let src = try pd.register(try HostBuffer(count: 256), access: .local)
        let dst = try pd.register(try HostBuffer(count: 256), access: .remote)
        let write = try PreparedSend(queuePair: p.a, request: SendRequest(
            id: 0, operation: .writeWithImmediate(dst.remoteBuffer, offset: 0, immediate: 0), segment: try src.segment()))
        for round in 1...3 {
            Pattern.fill(src.bytes!, count: 256, seed: UInt64(round))
            try p.b.postReceive(id: UInt64(round), segment: nil)
            try write.post(id: UInt64(100 + round), signaled: true, immediate: UInt32(round))
            let sent = try XCTUnwrap(try p.cqA.collect(1, timeout: .seconds(10)).first)
            XCTAssertEqual(sent.workRequestID, UInt64(100 + round), "the id is the one given to this post")
            let got = try XCTUnwrap(try p.cqB.collect(1, timeout: .seconds(10)).first)
            XCTAssertEqual(got.immediate, UInt32(round), "each post carries its own immediate")
            XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(dst.bytes!), count: 256, seed: UInt64(round)), "round \(round)")
        }
        // The checks postSend makes happen when the request is prepared.
        XCTAssertThrowsError(try PreparedSend(queuePair: p.a, request: SendRequest(
            id: 0, operation: .write(dst.remoteBuffer, offset: 1), segment: try src.segment())), "a range past the remote buffer")
        XCTAssertThrowsError(try PreparedSend(queuePair: p.a, request: SendRequest(
            id: 0, operation: .send, segment: try src.segment(), inline: true)), "inline beyond the QP's limit")
    }

    func testInlineSizeTheDeviceRefusesFallsBackOnlyWhenAllowed() throws {
        let cq = try CompletionQueue(context: env.context, capacity: 8)
        // No device offers a megabyte of inline data.
        let huge = UInt32(1 << 20)
        XCTAssertThrowsError(try QueuePair(pd: pd, sendCQ: cq, receiveCQ: cq,
                                           capabilities: QueuePairCapabilities(maxInlineData: huge)))
        let qp = try QueuePair(pd: pd, sendCQ: cq, receiveCQ: cq,
                               capabilities: QueuePairCapabilities(maxInlineData: huge, fallbackInlineData: 16))
        XCTAssertGreaterThanOrEqual(qp.capabilities.maxInlineData, 16)
        XCTAssertLessThan(qp.capabilities.maxInlineData, huge)
    }

    func testOutOfBoundsRemoteRangeFailsBeforePosting() throws {
        let p = try pair()
        let src = try pd.register(try HostBuffer(count: 8192), access: .local)
        let remote = RemoteBuffer(address: 0x1000, length: 4096, rkey: 1)
        XCTAssertThrowsError(try p.a.postSend(SendRequest(id: 1, operation: .write(remote, offset: 1), segment: try src.segment(offset: 0, length: 4096)))) {
            assertVerbsError($0, ".outOfRange") { if case .outOfRange = $0 { return true }; return false }
        }
        let localOnly = try pd.register(try HostBuffer(count: 64), access: [])
        XCTAssertThrowsError(try p.a.postSend(SendRequest(id: 1, operation: .read(remote, offset: 0), segment: try localOnly.segment())),
                             "an RDMA read into memory without local write")
        XCTAssertEqual(try p.cqA.poll().count, 0, "nothing reached the device")
    }

    func testWrongRKeyIsRemoteAccessError() throws {
        let p = try pair()
        let src = try pd.register(try HostBuffer(count: 64), access: .local)
        let dst = try pd.register(try HostBuffer(count: 64), access: .remote)
        var wrong = dst.remoteBuffer
        wrong.rkey ^= 0x5A5A_0000
        try p.a.postSend(SendRequest(id: 11, operation: .write(wrong, offset: 0), segment: try src.segment()))
        XCTAssertThrowsError(try p.cqA.collect(1, timeout: .seconds(10))) { error in
            assertVerbsError(error, "a remote access error completion") {
                if case let .workCompletion(f) = $0 { return f.status == .remoteAccessError && f.workRequestID == 11 }
                return false
            }
        }
    }

    func testErrorStateFlushesPostedReceives() throws {
        let p = try pair()
        let dst = try pd.register(try HostBuffer(count: 64), access: .local)
        try p.b.postReceive(id: 21, segment: try dst.segment())
        try p.b.modifyToError()
        XCTAssertEqual(try p.b.state(), .error)
        let wc = try XCTUnwrap(try p.cqB.wait(timeout: .seconds(10)).first)
        XCTAssertEqual(wc.status, .flushed)
        XCTAssertEqual(wc.workRequestID, 21)
        XCTAssertThrowsError(try wc.check())
    }

    func testWaitingOnAnEmptyQueueTimesOut() throws {
        let p = try pair()
        for mode in [CompletionWaitMode.event, .busyPoll] {
            let start = ContinuousClock.now
            XCTAssertThrowsError(try p.cqA.wait(timeout: .milliseconds(200), mode: mode)) { error in
                assertVerbsError(error, ".timedOut") { if case .timedOut = $0 { return true }; return false }
            }
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(2))
        }
    }
}
