#if canImport(Glibc)
import Glibc
#endif
import Sharing
@testable import PingPong
import Verbs
import VerbsEmbedded
import VulkanMemory
import XCTest

/// The server's accept loop on the in-memory twin: the session limit, the memory budget and
/// the handshake deadline, in seconds and without an RDMA device. (HostilePeerTests runs the
/// same loop over rdmacm and rxe in the fabric.)
final class ServerAcceptLogicTests: XCTestCase {
    /// What a server logged.
    private final class LogLines: Sendable {
        private let all = Locked<[String]>([])
        func add(_ line: String) { all.withLock { $0.append(line) } }
        var lines: [String] { all.withLock { $0 } }
    }

    /// A server serving on its own thread until `stop`, with what it logged.
    private final class Running: Sendable {
        let listener = InMemoryListener()
        let server: PingPongServer
        private let failures = Locked<Int?>(nil)
        private let log = LogLines()
        var lines: [String] { log.lines }

        init(maxSessions: Int = 1, maxMemory: Int = 1 << 20, timeout: Duration = .seconds(5)) throws {
            let log = self.log
            server = try PingPongServer(acceptor: InMemorySessionAcceptor(listener: listener), listener: nil, timeout: timeout,
                                        maxSessions: maxSessions, maxMemory: maxMemory,
                                        vulkan: { () throws(VulkanError) in throw .invalidArgument("no Vulkan in this test") },
                                        log: { log.add($0) })
            try spawnThread { [self] in
                let failed = server.serve()
                failures.withLock { $0 = failed }
            }
        }

        /// Stops the server and returns how many clients failed, or nil when it did not end in time.
        func stop(within timeout: Duration = .seconds(10)) -> Int? {
            server.stop()
            let end = ContinuousClock.now + timeout
            while ContinuousClock.now < end {
                if let failed = failures.withLock({ $0 }) { return failed }
                usleep(1000)
            }
            return nil
        }

        /// Waits up to `timeout` for `condition`.
        func eventually(_ timeout: Duration = .seconds(10), _ condition: () -> Bool) -> Bool {
            let end = ContinuousClock.now + timeout
            while ContinuousClock.now < end {
                if condition() { return true }
                usleep(1000)
            }
            return condition()
        }
    }

    private func config(_ operation: RDMAOperation = .send, _ measurement: MeasurementKind = .bandwidth,
                        bufferSize: Int = 4096) -> PingPongConfiguration {
        var c = PingPongConfiguration()
        c.operation = operation
        c.measurement = measurement
        c.sizes = [bufferSize]
        c.iterations = 200
        c.warmup = 10
        c.window = 32
        c.timeout = .seconds(5)
        return c
    }

    /// Dials with `config`'s request, naming a client peer's buffer and mailbox (built in the
    /// dialing endpoint's domain first), and returns that peer, which knows the server's side.
    private func dial(_ running: Running, _ config: PingPongConfiguration) throws -> Peer {
        var built: Result<Peer, PingPongError>?
        let (_, answer) = try running.listener.dial(timeout: .seconds(5)) { endpoint in
            do throws(PingPongError) {
                let peer = try Peer.onHostMemory(endpoint, bufferSize: config.bufferSize, access: Resources.clientAccess(config),
                                                 timeout: config.timeout)
                built = .success(peer)
                return Handshake.request(config, buffer: peer.memory.region.remoteBuffer, mailbox: peer.mailbox.remoteBuffer)
            } catch {
                built = .failure(error)
                return []
            }
        }
        let peer = try built!.get()
        let decoded = try Handshake.decodeAnswer(answer)
        peer.peerBuffer = decoded.buffer
        peer.peerMailbox = decoded.mailbox
        return peer
    }

    /// The refusal's reason, failing the test when `body` did not end in a reject.
    private func refusal(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            try body()
            XCTFail("connected", file: file, line: line)
        } catch let VerbsError.connection(failure) where failure.reason == .rejected {
            return failure.peerMessage
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
        return nil
    }

    func testSessionLimitRefusesWithBusyAndAdmitsOnceASessionEnds() throws {
        let running = try Running(maxSessions: 1)
        let c = config()
        let first = try dial(running, c)
        let reason = refusal { _ = try dial(running, c) }
        XCTAssertTrue(reason?.hasPrefix("busy") == true, String(describing: reason))
        XCTAssertEqual(running.server.refusedBusy, 1)
        try first.sendControl(.bye)
        XCTAssertTrue(running.eventually { running.server.activeSessions == 0 })
        // The slot is free again: a whole step through the accept loop.
        let second = try dial(running, c)
        let result = try PingPongClient.measure(second, c, device: "in-memory", progress: { _ in })
        XCTAssertEqual(result.bandwidth.map(\.iterations), [c.iterations])
        XCTAssertEqual(running.stop(), 0, "\(running.lines)")
        XCTAssertEqual(running.server.peakActiveSessions, 1)
    }

    func testRequestsOverTheMemoryBudgetAreRefusedAndTheBudgetComesBack() throws {
        // 1 MiB for everything: a session of 1 MiB halves costs more than that.
        let running = try Running(maxSessions: 4, maxMemory: 1 << 20)
        let reason = refusal { _ = try dial(running, config(bufferSize: 1 << 20)) }
        XCTAssertNotNil(reason)
        // Two sessions of 256 KiB halves (plus mailboxes) fit once, not twice.
        let first = try dial(running, config(bufferSize: 256 << 10))
        let spent = refusal { _ = try dial(running, config(bufferSize: 256 << 10)) }
        XCTAssertNotNil(spent)
        XCTAssertEqual(running.server.refusedBusy, 1, "budget spent for now counts as busy")
        try first.sendControl(.bye)
        XCTAssertTrue(running.eventually { running.server.activeSessions == 0 })
        XCTAssertTrue(running.eventually { running.server.budget.inUse == 0 })
        let again = try dial(running, config(bufferSize: 256 << 10))
        try again.sendControl(.bye)
        // The oversized request is a failed client; the one refused for now is not.
        XCTAssertEqual(running.stop(), 1)
    }

    func testHalfOpenHandshakeTimesOutWithoutHoldingUpTheNextClient() throws {
        let running = try Running(maxSessions: 2, timeout: .milliseconds(500))
        let c = config()
        let began = ContinuousClock.now
        running.listener.dialHalfOpen(privateData: Handshake.request(c, buffer: RemoteBuffer(address: 0, length: 0, rkey: 0),
                                                                     mailbox: RemoteBuffer(address: 0, length: 0, rkey: 0)))
        // The next client is served while the half-open one still holds its slot.
        let next = try dial(running, c)
        XCTAssertLessThan(ContinuousClock.now - began, .milliseconds(500))
        try next.sendControl(.bye)
        // The half-open one gives its slot back once the handshake deadline passed.
        XCTAssertTrue(running.eventually(.seconds(5)) { running.server.activeSessions == 0 })
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - began, .milliseconds(500))
        XCTAssertEqual(running.stop(), 1)
        XCTAssertTrue(running.lines.contains { $0.contains("session failed") && $0.contains("timed out after") },
                      "\(running.lines)")
    }

    /// Two sessions whose server-side completions are held and then delivered in the other order
    /// than the sessions began: the later session runs to its end while the earlier one waits on
    /// its completions, then the earlier one finishes as well, nothing lost, the budget back.
    func testSessionsWithCompletionsReorderedAcrossQueuePairsEachFinish() throws {
        // The earlier session waits while the later one runs; under load that can take seconds,
        // so both sides get a deadline far beyond it (the test is about order, not time).
        let running = try Running(maxSessions: 2, timeout: .seconds(60))
        let c = { var c = config(.send, .latency); c.timeout = .seconds(60); return c }()
        var peers: [Peer] = []
        var links: [InMemoryLink] = []
        for _ in 0..<2 {
            peers.append(try dial(running, c))
            let link = try XCTUnwrap(running.listener.links.last)
            link.holdCompletions(.b)
            links.append(link)
        }
        let results = Locked<[Int: Result<Int, PingPongError>]>([:])
        for (index, peer) in peers.enumerated() {
            nonisolated(unsafe) let peer = peer
            try spawnThread {
                let got = Result { () throws(PingPongError) -> Int in
                    try PingPongClient.measure(peer, c, device: "in-memory", progress: { _ in }).latency.map(\.iterations).reduce(0, +)
                }
                results.withLock { $0[index] = got }
            }
        }
        usleep(20_000)
        XCTAssertTrue(results.withLock { $0.isEmpty }, "both sessions wait on their held completions")
        links[1].releaseCompletions(.b)
        XCTAssertTrue(running.eventually { results.withLock { $0[1] != nil } }, "the later session finishes first")
        XCTAssertNil(results.withLock { $0[0] }, "the earlier one still waits")
        XCTAssertGreaterThan(links[0].heldCompletions(.b).send, 0)
        // The earlier session's completions, a few at a time.
        while results.withLock({ $0[0] == nil }) {
            links[0].deliverCompletions(.b, queue: .send, count: 3)
            links[0].deliverCompletions(.b, queue: .receive, count: 2)
            usleep(200)
        }
        // The client is done once its last message arrived; the server side may still hold the
        // completions of its last sends and of the client's goodbye. Let them through.
        links[0].releaseCompletions(.b)
        for index in 0..<2 {
            XCTAssertEqual(try results.withLock { $0[index] }?.get(), c.iterations, "session \(index)")
        }
        XCTAssertTrue(running.eventually { running.server.activeSessions == 0 })
        XCTAssertEqual(running.server.budget.inUse, 0)
        XCTAssertEqual(running.stop(), 0, "\(running.lines)")
    }
}
