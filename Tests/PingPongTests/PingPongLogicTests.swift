#if canImport(Glibc)
import Glibc
#endif
import Sharing
@testable import PingPong
import Verbs
import VerbsEmbedded
import XCTest

/// The ping-pong's client and server session logic on the in-memory twin, at host speed and
/// without an RDMA device: every operation's latency and bandwidth steps, hostile control
/// messages, a peer that goes away or goes quiet, and what is left behind. (PingPongFabricTests
/// and HostilePeerTests run the same logic over rxe in the fabric.)
final class PingPongLogicTests: XCTestCase {
    /// A server session on its own thread, as the server runs one. The peer is handed to that
    /// thread once and used only there; the outcome comes back under a lock.
    private final class SessionThread: @unchecked Sendable {
        private let peer: Peer
        private let outcome = Locked<Result<Void, PingPongError>?>(nil)

        init(_ peer: Peer, operation: RDMAOperation, measurement: MeasurementKind) throws {
            self.peer = peer
            try spawnThread { [self] in
                let session = ServerSession(peer: self.peer, operation: operation, measurement: measurement, log: { _ in })
                let result: Result<Void, PingPongError>
                do throws(PingPongError) { try session.run(); result = .success(()) } catch { result = .failure(error) }
                outcome.withLock { $0 = result }
            }
        }

        /// The session's outcome, or nil when it has not ended within `timeout`.
        func wait(_ timeout: Duration) -> Result<Void, PingPongError>? {
            let end = ContinuousClock.now + timeout
            while ContinuousClock.now < end {
                if let done = outcome.withLock({ $0 }) { return done }
                usleep(1000)
            }
            return nil
        }

        /// The session's error, failing the test when it ended otherwise or not in time.
        func error(within timeout: Duration, file: StaticString = #filePath, line: UInt = #line) -> PingPongError? {
            switch wait(timeout) {
            case .failure(let error): return error
            case .success: XCTFail("the session ended without an error", file: file, line: line)
            case nil: XCTFail("the session did not end within \(timeout)", file: file, line: line)
            }
            return nil
        }
    }

    /// A client peer on `link.a` and a server peer on `link.b`, each told the other's buffer and
    /// mailbox as the handshake would, with the rights each side's buffer gets in the real run.
    private struct Pair {
        let link: InMemoryLink
        let client: Peer
        let server: Peer
    }

    private func pair(_ config: PingPongConfiguration, serverTimeout: Duration? = nil) throws -> Pair {
        let link = InMemoryLink(sendQueueDepth: 256)
        let client = try Peer.onHostMemory(link.a, bufferSize: config.bufferSize, access: Resources.clientAccess(config),
                                           timeout: config.timeout)
        let server = try Peer.onHostMemory(link.b, bufferSize: config.bufferSize, access: Resources.serverAccess(config.operation),
                                           timeout: serverTimeout ?? config.timeout)
        client.peerBuffer = server.memory.region.remoteBuffer
        client.peerMailbox = server.mailbox.remoteBuffer
        server.peerBuffer = client.memory.region.remoteBuffer
        server.peerMailbox = client.mailbox.remoteBuffer
        client.inlineLimit = min(config.inlineLimit, link.a.maxInlineData)
        return Pair(link: link, client: client, server: server)
    }

    private func config(_ operation: RDMAOperation, _ measurement: MeasurementKind, sizes: [Int] = [1, 200, 4096],
                        timeout: Duration = .seconds(20)) -> PingPongConfiguration {
        var c = PingPongConfiguration()
        c.operation = operation
        c.measurement = measurement
        c.sizes = sizes
        c.iterations = 300
        c.warmup = 20
        c.window = 64
        c.timeout = timeout
        return c
    }

    /// Runs a whole client against a session for `config` and checks the result, the bytes of
    /// the last step and that nothing is left behind once both sides hang up.
    private func runWhole(_ config: PingPongConfiguration, file: StaticString = #filePath, line: UInt = #line) throws {
        let link: InMemoryLink
        do {
            let p = try pair(config)
            link = p.link
            // A pattern in the half the client's requests go out of, so the step's bytes can be checked.
            let half = p.client.half
            for i in 0..<half {
                p.client.memory.hostBytes!.storeBytes(of: UInt8(truncatingIfNeeded: i &* 7 &+ 3), toByteOffset: half + i, as: UInt8.self)
            }
            let session = try SessionThread(p.server, operation: config.operation, measurement: config.measurement)
            let result = try PingPongClient.measure(p.client, config, device: "in-memory", progress: { _ in })
            switch session.wait(.seconds(20)) {
            case .success: break
            case .failure(let error): XCTFail("session: \(error)", file: file, line: line)
            case nil: XCTFail("the session did not end", file: file, line: line)
            }
            XCTAssertFalse(result.interrupted, file: file, line: line)
            if config.measurement == .latency {
                XCTAssertEqual(result.latency.map(\.bytes), config.sizes, file: file, line: line)
                XCTAssertEqual(result.latency.map(\.iterations), config.sizes.map { _ in config.iterations }, file: file, line: line)
                XCTAssertTrue(result.bandwidth.isEmpty, file: file, line: line)
            } else {
                XCTAssertEqual(result.bandwidth.map(\.bytes), config.sizes, file: file, line: line)
                XCTAssertTrue(result.bandwidth.allSatisfy { $0.iterations == config.iterations }, "\(result.bandwidth)", file: file, line: line)
                XCTAssertTrue(result.latency.isEmpty, file: file, line: line)
                // The last step's bytes landed in the server's first half, from the client's second.
                // (A read fetches the server's first half, which the step clears: nothing to compare.)
                if config.operation != .read {
                    let size = config.sizes.last!
                    let landed = Array(UnsafeRawBufferPointer(start: p.server.memory.hostBytes!, count: size))
                    let sent = Array(UnsafeRawBufferPointer(start: p.client.memory.hostBytes! + half, count: size))
                    XCTAssertTrue(landed == sent, "\(config.operation): \(landed.prefix(8)) landed for \(sent.prefix(8))",
                                  file: file, line: line)
                }
            }
            // Both ends hang up, as Client.run and the server's session thread do.
            try link.a.disconnect(timeout: .seconds(1))
            try link.b.disconnect(timeout: .seconds(1))
        }
        let left = link.finish()
        for side in [left.a, left.b] {
            XCTAssertEqual(side.pendingSends, 0, "\(left)", file: file, line: line)
            XCTAssertEqual(side.unretiredSends, 0, "\(left)", file: file, line: line)
            XCTAssertEqual(side.unpolledSendCompletions, 0, "\(left)", file: file, line: line)
            XCTAssertEqual(side.postedReceives, 0, "\(left)", file: file, line: line)
            XCTAssertEqual(side.registeredRegions, 0, "\(left)", file: file, line: line)
        }
    }

    func testLatencyOfEveryOperation() throws {
        for operation in RDMAOperation.allCases {
            try runWhole(config(operation, .latency))
        }
    }

    func testBandwidthOfEveryOperation() throws {
        for operation in RDMAOperation.allCases {
            try runWhole(config(operation, .bandwidth))
        }
    }

    /// `progressInterval` nil (`--no-progress`): no progress line in any step; a tiny interval on
    /// the same runs reports, so the setting is what stops them. A write, write-imm or send latency
    /// step never posts a heartbeat (its server hears from the client every iteration), so nothing
    /// time-based runs in its loop.
    func testProgressLinesOnlyWhenAsked() throws {
        let runs: [(RDMAOperation, MeasurementKind)] = [(.write, .latency), (.writeImm, .latency), (.send, .latency), (.write, .bandwidth)]
        for (operation, measurement) in runs {
            for interval in [Duration?.none, .nanoseconds(1)] {
                var c = config(operation, measurement, sizes: [64])
                c.progressInterval = interval
                let p = try pair(c)
                let session = try SessionThread(p.server, operation: operation, measurement: measurement)
                var lines: [String] = []
                let result = try PingPongClient.measure(p.client, c, device: "in-memory", progress: { lines.append($0) })
                guard case .success = session.wait(.seconds(20)) else { return XCTFail("\(operation) \(measurement): the session failed") }
                XCTAssertFalse(result.interrupted)
                let what = "\(operation) \(measurement), progress every \(interval.map { "\($0)" } ?? "never")"
                if interval == nil {
                    XCTAssertEqual(lines, [], what)
                } else {
                    XCTAssertFalse(lines.isEmpty, what)
                    XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("64 B: ") }, "\(what): \(lines.prefix(3))")
                }
                if measurement == .latency { XCTAssertEqual(p.client.heartbeat, 0, what) }
                try p.link.a.disconnect(timeout: .seconds(1))
                try p.link.b.disconnect(timeout: .seconds(1))
            }
        }
    }

    // MARK: Hostile control messages

    /// Writes four raw words into the server's mailbox as the client's next control message.
    private func writeRaw(_ client: Peer, _ words: [UInt64]) throws {
        for (index, word) in words.enumerated() {
            client.outbox.bytes!.storeBytes(of: word, toByteOffset: index * 8, as: UInt64.self)
        }
        let message = try client.endpoint.prepare(SendRequest(id: 0, operation: .write(client.peerMailbox, offset: 0),
                                                              segment: try client.outbox.segment(offset: 0, length: ControlMessage.size)))
        try client.post(message, signaled: true)
        try client.waitSend("writing a raw control message")
    }

    /// A session on `link.b` that gets `words` as the client's first control message.
    private func firstMessage(_ words: [UInt64]) throws -> PingPongError? {
        let c = config(.write, .latency, sizes: [4096], timeout: .seconds(5))
        let p = try pair(c)
        let session = try SessionThread(p.server, operation: c.operation, measurement: c.measurement)
        try writeRaw(p.client, words)
        return session.error(within: .seconds(5))
    }

    private func start(_ sequence: UInt64, a: UInt64, b: UInt64) -> [UInt64] {
        [sequence, a, b, ControlKind.start.rawValue | sequence << 8]
    }

    func testHostileStepRequestsEndTheSessionWithBadRequest() throws {
        // The buffer half is 4096 bytes.
        for words in [start(1, a: 0, b: 10), start(1, a: 4097, b: 10), start(1, a: 0xFFFF_FFFF, b: 10),
                      start(1, a: 64, b: UInt64.max), start(1, a: 64, b: 0), start(1, a: 64 | UInt64.max << 32, b: 10)] {
            let error = try firstMessage(words)
            guard case .badRequest = error else { return XCTFail("\(words): \(String(describing: error))") }
        }
    }

    func testUnknownKindIsAProtocolError() throws {
        let error = try firstMessage([1, 64, 10, 0xEE | 1 << 8])
        guard case .protocolError = error else { return XCTFail(String(describing: error)) }
    }

    func testAStepThatDoesNotOpenWithStartIsRefused() throws {
        for kind in [ControlKind.done, .ready] {
            let error = try firstMessage([1, 64, 10, kind.rawValue | 1 << 8])
            guard case .badRequest = error else { return XCTFail("\(kind): \(String(describing: error))") }
        }
    }

    func testAStartInsteadOfDoneMidStepIsAProtocolError() throws {
        let c = config(.write, .latency, sizes: [64])
        let p = try pair(c)
        let session = try SessionThread(p.server, operation: c.operation, measurement: c.measurement)
        let words = StepRequest.words(size: 64, total: 100, inline: 0)
        try p.client.sendControl(.start, words.a, words.b)
        _ = try p.client.receiveControl(.ready, what: "waiting for ready")
        // The server waits for writes; a second start arrives instead of the step's done.
        try p.client.sendControl(.start, words.a, words.b)
        let error = session.error(within: .seconds(10))
        guard case .protocolError = error else { return XCTFail(String(describing: error)) }
    }

    // MARK: A peer that goes away or goes quiet

    func testPeerGoneMidStepEndsTheSessionWithPeerGone() throws {
        for operation in [RDMAOperation.write, .send] {
            let c = config(operation, .latency, sizes: [64], timeout: .seconds(10))
            let p = try pair(c)
            let session = try SessionThread(p.server, operation: c.operation, measurement: c.measurement)
            let words = StepRequest.words(size: 64, total: 1000, inline: 0)
            try p.client.sendControl(.start, words.a, words.b)
            _ = try p.client.receiveControl(.ready, what: "waiting for ready")
            let began = ContinuousClock.now
            p.link.inject(.disconnect)
            let error = session.error(within: .seconds(10))
            guard case .peerGone = error else { return XCTFail("\(operation): \(String(describing: error))") }
            XCTAssertLessThan(ContinuousClock.now - began, .seconds(5), "\(operation): noticed only at the timeout")
        }
    }

    func testServerGoneMidStepEndsTheClientWithPeerGone() throws {
        let c = config(.send, .latency, sizes: [64], timeout: .seconds(10))
        let p = try pair(c)
        try p.server.postReceives()
        try p.client.postReceives()
        // The server's side of the step: it gets ready, answers a few messages, then its link goes down.
        let words = StepRequest.words(size: 64, total: 1000, inline: 0)
        try p.client.sendControl(.start, words.a, words.b)
        _ = try p.server.receiveControl(.start, what: "waiting for start")
        try p.server.sendControl(.ready)
        _ = try p.client.receiveControl(.ready, what: "waiting for ready")
        p.link.inject(.disconnect)
        let began = ContinuousClock.now
        let prepared = try p.client.prepare(.send, size: 64)
        XCTAssertThrowsError(try {
            try p.client.post(prepared)
            _ = try p.client.waitReceive("waiting for the server's reply")
        }()) { error in
            guard case .peerGone = error as? PingPongError else { return XCTFail("\(error)") }
        }
        XCTAssertLessThan(ContinuousClock.now - began, .seconds(5))
    }

    func testAClientThatStopsAnsweringTimesOut() throws {
        for (operation, measurement) in [(RDMAOperation.write, MeasurementKind.latency), (.send, .bandwidth), (.read, .latency)] {
            let c = config(operation, measurement, sizes: [64], timeout: .seconds(10))
            let p = try pair(c, serverTimeout: .milliseconds(300))
            let session = try SessionThread(p.server, operation: c.operation, measurement: c.measurement)
            let words = StepRequest.words(size: 64, total: 1000, inline: 0)
            // Before the start, so the server's last word from the client comes after it.
            let began = ContinuousClock.now
            try p.client.sendControl(.start, words.a, words.b)
            _ = try p.client.receiveControl(.ready, what: "waiting for ready")
            // ...and nothing more: no messages, no heartbeat, no done.
            let error = session.error(within: .seconds(5))
            guard case .timedOut = error else { return XCTFail("\(operation) \(measurement): \(String(describing: error))") }
            let waited = ContinuousClock.now - began
            XCTAssertGreaterThanOrEqual(waited, .milliseconds(300))
            XCTAssertLessThan(waited, .seconds(3))
        }
    }

    func testAClientQuietBeforeItsFirstStepTimesOut() throws {
        let c = config(.write, .latency, sizes: [64])
        let p = try pair(c, serverTimeout: .milliseconds(300))
        let began = ContinuousClock.now
        let session = try SessionThread(p.server, operation: c.operation, measurement: c.measurement)
        let error = session.error(within: .seconds(5))
        guard case .timedOut = error else { return XCTFail(String(describing: error)) }
        XCTAssertLessThan(ContinuousClock.now - began, .seconds(3))
        _ = p
    }
}
