import Foundation
@testable import PingPong
import RDMATestSupport
import SelfTest
import Verbs
import VulkanMemory
import XCTest

/// Peers that do not play by the rules: floods, malformed handshakes, peers without the secret,
/// and writes into buffers that were never exposed. The server must stay up, refuse with a reason,
/// stay within its limit, and leak nothing.
final class HostilePeerTests: RDMATestCase {
    private func noVulkan() throws(VulkanError) -> VulkanDevice { throw .invalidArgument("no Vulkan in this test") }

    /// A server on an ephemeral port, serving on a background thread until `stop`.
    private final class RunningServer: @unchecked Sendable {
        let server: PingPongServer
        let done = DispatchSemaphore(value: 0)
        var failed = -1
        init(_ server: PingPongServer) {
            self.server = server
            DispatchQueue.global().async { self.failed = server.serve(); self.done.signal() }
        }
        func stop() -> Int {
            server.stop()
            XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "the server stops within its timeouts")
            return failed
        }
    }

    private func startServer(maxSessions: Int = 1, secret: SharedSecret? = nil, log: @escaping @Sendable (String) -> Void = { _ in })
        throws -> RunningServer {
        RunningServer(try PingPongServer(bind: env.address, port: 0, timeout: .seconds(20), maxSessions: maxSessions, secret: secret,
                                         vulkan: { () throws(VulkanError) in try self.noVulkan() }, log: log))
    }

    private func config(_ op: RDMAOperation = .send, iterations: Int = 20, timeout: Duration = .seconds(20)) -> PingPongConfiguration {
        var c = PingPongConfiguration()
        c.operation = op
        c.sizes = [64]
        c.iterations = iterations
        c.warmup = 2
        c.timeout = timeout
        return c
    }

    /// Connects with raw private data, as a hostile client would (own function: a ~Copyable
    /// route inside a caller's do/catch trips the compiler).
    private func rawConnect(port: UInt16, privateData: [UInt8]) throws(VerbsError) -> Connection {
        let route = try ResolvedRoute.resolve(host: env.address, port: port, timeout: .seconds(10))
        let context = route.context
        let cq = try CompletionQueue(context: context, capacity: 16)
        let prepared = try route.prepare(pd: try ProtectionDomain(context: context), sendCQ: cq, receiveCQ: cq,
                                         capabilities: QueuePairCapabilities(maxSendRequests: 8, maxReceiveRequests: 8))
        return try prepared.connect(privateData: privateData, timeout: .seconds(10))
    }

    private func rejection(_ body: () throws -> Void) -> ConnectionFailure? {
        do {
            try body()
        } catch let VerbsError.connection(failure) {
            return failure
        } catch {
            XCTFail("expected a reject, got \(error)")
        }
        return nil
    }

    func testTwoHundredConnectsAtOnceStayWithinTheLimit() throws {
        let baseline = try baselineCounts()
        do {
            final class Lines: @unchecked Sendable { let lock = NSLock(); var all: [String] = [] }
            let lines = Lines()
            let running = try startServer(maxSessions: 4, log: { line in lines.lock.withLock { lines.all.append(line) } })
            let port = running.server.listener.port
            final class Outcomes: @unchecked Sendable {
                let lock = NSLock()
                var served = 0, busy = 0, other: [String] = []
            }
            let outcomes = Outcomes()
            let group = DispatchGroup()
            let start = Date()
            // 60 s, not 20: under ASan in the TCG guest (make test-asan) the 200 connects queue up
            // for longer than 20 s, and a client that gives up first is neither served nor busy.
            let address: String = env.address, cfg = config(timeout: .seconds(60))
            for _ in 0..<200 {
                group.enter()
                let thread = Thread {
                    defer { group.leave() }
                    do {
                        let r = try PingPongClient.run(host: address, port: port, config: cfg,
                                                       vulkan: { () throws(VulkanError) in throw .invalidArgument("no Vulkan in this test") })
                        outcomes.lock.withLock { outcomes.served += r.latency.count == 1 ? 1 : 0 }
                    } catch let PingPongError.rejected(text) where text.hasPrefix("busy") {
                        outcomes.lock.withLock { outcomes.busy += 1 }
                    } catch {
                        outcomes.lock.withLock { outcomes.other.append("\(error)") }
                    }
                }
                thread.stackSize = 1 << 20
                thread.start()
            }
            XCTAssertEqual(group.wait(timeout: .now() + 240), .success, "every client got an answer in time")
            let seconds = Date().timeIntervalSince(start)
            XCTAssertEqual(outcomes.other, [], "each client was either served or refused as busy")
            XCTAssertGreaterThan(outcomes.served, 0)
            XCTAssertGreaterThan(outcomes.busy, 0)
            XCTAssertEqual(outcomes.served + outcomes.busy + outcomes.other.count, 200)
            XCTAssertLessThanOrEqual(running.server.peakActiveSessions, 4, "never more sessions than the limit")
            XCTAssertEqual(running.server.refusedBusy, outcomes.busy)
            print("200 concurrent connects: \(outcomes.served) served, \(outcomes.busy) refused as busy, in \(String(format: "%.1f", seconds)) s")

            // Still up: the next client is served.
            let after = try PingPongClient.run(host: env.address, port: port, config: config(.write),
                                               vulkan: { () throws(VulkanError) in try self.noVulkan() })
            XCTAssertEqual(after.latency.first?.iterations, 20)
            XCTAssertEqual(running.stop(), 0, "no session failed: \(lines.lock.withLock { lines.all.filter { !$0.hasPrefix("refused a client: busy") && !$0.hasPrefix("client") } })")
        }
        XCTAssertEqual(try resourceCounts(), baseline, "every QP, CQ, MR, PD and cm_id was released")
    }

    func testMalformedShortAndOversizedHandshakesAreRefused() throws {
        let baseline = try baselineCounts()
        do {
            let running = try startServer()
            let port = running.server.listener.port
            var valid = Handshake.request(config(), buffer: RemoteBuffer(address: 0x1000, length: 128, rkey: 1),
                                          mailbox: RemoteBuffer(address: 0x2000, length: 64, rkey: 2))
            var garbage = (0..<56).map { _ in UInt8.random(in: 0...255) }
            garbage[0] = 0x00  // Not the magic.
            valid[4] = 1  // The previous protocol version.
            let hostile: [(String, [UInt8])] = [
                ("empty", []), ("short", [0x56, 0x4B, 0x50]), ("garbage", garbage), ("old version", valid),
                ("absurd size", Array("VKPP".utf8) + [2, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 44)),
            ]
            for (what, bytes) in hostile {
                let failure = rejection { _ = try rawConnect(port: port, privateData: bytes) }
                XCTAssertEqual(failure?.reason, .rejected, what)
                XCTAssertEqual(failure?.peerMessage, "bad request", what)
            }
            // More than the CM carries is refused before anything goes on the wire.
            XCTAssertThrowsError(try rawConnect(port: port, privateData: [UInt8](repeating: 1, count: PrivateDataLimit.connect + 1))) {
                assertVerbsError($0, "invalid argument") { if case .invalidArgument = $0 { return true }; return false }
            }
            let ok = try PingPongClient.run(host: env.address, port: port, config: config(),
                                            vulkan: { () throws(VulkanError) in try self.noVulkan() })
            XCTAssertEqual(ok.latency.first?.iterations, 20, "the server is still up")
            XCTAssertEqual(running.stop(), hostile.count, "each hostile request counts as a failed client, nothing else")
        }
        XCTAssertEqual(try resourceCounts(), baseline)
    }

    func testSharedSecretAdmitsOnlyPeersThatKnowIt() throws {
        let secret = try SharedSecret(Array("a-shared-secret-of-some-length".utf8))
        let wrong = try SharedSecret(Array("not-the-shared-secret-at-all".utf8))
        let running = try startServer(secret: secret)
        let port = running.server.listener.port
        for (what, key) in [("no secret", nil), ("the wrong secret", wrong)] as [(String, SharedSecret?)] {
            XCTAssertThrowsError(try PingPongClient.run(host: env.address, port: port, config: config(), secret: key,
                                                        vulkan: { () throws(VulkanError) in try self.noVulkan() }), what) { error in
                guard case let PingPongError.rejected(text) = error else { return XCTFail("\(what): got \(error)") }
                XCTAssertEqual(text, "authentication failed", what)
            }
        }
        // A recorded handshake replayed is refused even though its HMAC is right.
        let recorded = Handshake.request(config(), buffer: RemoteBuffer(address: 0x1000, length: 128, rkey: 1),
                                         mailbox: RemoteBuffer(address: 0x2000, length: 64, rkey: 2), secret: secret)
        let first = try rawConnect(port: port, privateData: recorded)
        XCTAssertNoThrow(try Handshake.verifyAnswer(first.peerPrivateData, request: recorded, secret: secret))
        try first.disconnect()
        // The server (one session at most) refuses anyone as busy until it has wound that session
        // down, which under ASan in the TCG guest takes long enough for the replay to hit it. The
        // session is counted only once the server's accept returned (peak 1), then ends (active 0).
        let windDown = Date() + 60
        while (running.server.peakActiveSessions < 1 || running.server.activeSessions > 0) && Date() < windDown {
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertEqual(running.server.activeSessions, 0, "the broken-off session ends")
        let replay = rejection { _ = try rawConnect(port: port, privateData: recorded) }
        XCTAssertEqual(replay?.peerMessage, "authentication failed")

        let ok = try PingPongClient.run(host: env.address, port: port, config: config(.write), secret: secret,
                                        vulkan: { () throws(VulkanError) in try self.noVulkan() })
        XCTAssertEqual(ok.latency.first?.iterations, 20)
        // The first raw session broke off, plus three refusals.
        XCTAssertEqual(running.stop(), 4)

        // A client with a secret does not trust a server without one.
        let open = try startServer()
        XCTAssertThrowsError(try PingPongClient.run(host: env.address, port: open.server.listener.port, config: config(), secret: secret,
                                                    vulkan: { () throws(VulkanError) in try self.noVulkan() })) { error in
            guard case PingPongError.authenticationFailed = error else { return XCTFail("got \(error)") }
        }
        _ = open.stop()
    }

    /// Least privilege: a buffer the operation does not need remotely carries no remote rights,
    /// so a peer that writes or reads it anyway gets a remote access error.
    func testBuffersCarryOnlyTheRemoteRightsTheOperationNeeds() throws {
        XCTAssertEqual(Resources.serverAccess(.send), .local)
        XCTAssertEqual(Resources.serverAccess(.write), [.localWrite, .remoteWrite])
        XCTAssertEqual(Resources.serverAccess(.read), [.localWrite, .remoteRead])
        var c = config(.write)
        XCTAssertEqual(Resources.clientAccess(c), [.localWrite, .remoteWrite], "write latency: the server echoes into the client")
        c.measurement = .bandwidth
        XCTAssertEqual(Resources.clientAccess(c), .local, "write bandwidth: nobody writes into the client")
        XCTAssertEqual(Resources.clientAccess(config(.read)), .local)
        XCTAssertEqual(Resources.clientAccess(config(.send)), .local)

        for (op, remoteOp) in [(RDMAOperation.send, "write"), (.send, "read"), (.read, "write"), (.write, "read")] {
            let running = try startServer()
            let mine = try pd.register(HostBuffer(count: 4096), access: .remote)
            let request = Handshake.request(config(op), buffer: mine.remoteBuffer, mailbox: mine.remoteBuffer)
            let connection = try rawConnect(port: running.server.listener.port, privateData: request)
            let answer = try Handshake.decodeAnswer(connection.peerPrivateData)
            let local = try connection.pd.register(HostBuffer(count: 64), access: .local)
            let operation: SendOperation = remoteOp == "write" ? .write(answer.buffer, offset: 0) : .read(answer.buffer, offset: 0)
            try connection.queuePair.postSend(SendRequest(id: 5, operation: operation, segment: try local.segment(), signaled: true))
            let wc = try XCTUnwrap(try connection.queuePair.sendCQ.wait(timeout: .seconds(30)).first)
            XCTAssertEqual(wc.status, .remoteAccessError, "RDMA \(remoteOp) into a \(op) server's buffer")
            // The mailbox takes writes (control messages) but not reads.
            try? connection.disconnect()
            _ = running.stop()
        }
    }
}
