import Foundation
import CVerbs
@testable import PingPong
import RDMATestSupport
import Verbs
import VulkanMemory
import XCTest

/// Statistics and protocol checks that need no device.
final class PingPongHostTests: XCTestCase {
    func testLatencyStatisticsFollowPerftest() throws {
        // 1..100 us round trips plus two outliers that must be dropped.
        let samples = (1...100).map { UInt64($0) * 1000 } + [9_000_000, 8_000_000]
        let s = try XCTUnwrap(LatencyStatistics(bytes: 2, samples: samples.shuffled(), halve: true))
        XCTAssertEqual(s.iterations, 102)
        XCTAssertEqual(s.min, 0.5)
        XCTAssertEqual(s.max, 50, "the two largest samples are dropped")
        XCTAssertEqual(s.typical, 25.25, "median of 1...100 us, halved")
        XCTAssertEqual(s.average, 25.25, accuracy: 1e-9)
        XCTAssertEqual(s.p99, 49.5)
        let read = try XCTUnwrap(LatencyStatistics(bytes: 2, samples: [3000, 1000, 2000], halve: false))
        XCTAssertEqual(read.typical, 2, "read latency is not halved; few samples are all kept")
        XCTAssertEqual(read.max, 3)
        XCTAssertNil(LatencyStatistics(bytes: 2, samples: [], halve: true))
    }

    func testLatencyStatisticsScaleTicks() throws {
        // The ping-pong hands over cycle-counter ticks and their rate: 400 ticks of 2.5 ns are 1 us.
        let ticks = (1...100).map { UInt64($0) * 400 } + [3_600_000, 3_200_000]
        let s = try XCTUnwrap(LatencyStatistics(bytes: 2, samples: ticks.shuffled(), halve: true, nanosecondsPerSample: 2.5))
        XCTAssertEqual(s.iterations, 102)
        XCTAssertEqual(s.min, 0.5)
        XCTAssertEqual(s.max, 50, "the two largest samples are dropped")
        XCTAssertEqual(s.typical, 25.25)
        XCTAssertEqual(s.average, 25.25, accuracy: 1e-9)
        XCTAssertEqual(s.stdev, 14.43, accuracy: 0.01)
        let read = try XCTUnwrap(LatencyStatistics(bytes: 2, samples: [1200, 400, 800], halve: false, nanosecondsPerSample: 2.5))
        XCTAssertEqual(read.typical, 2)
    }

    func testBandwidthStatistics() throws {
        // 1000 messages of 1 MB in 1 s, reported in 10 checkpoints, one of them a fast burst.
        var points: [(count: Int, nanoseconds: UInt64)] = (1...10).map { ($0 * 100, UInt64($0) * 100_000_000) }
        points[4].nanoseconds = 450_000_000
        let s = try XCTUnwrap(BandwidthStatistics(bytes: 1_000_000, checkpoints: points))
        XCTAssertEqual(s.averageMBps, 1000, accuracy: 1e-6)
        XCTAssertEqual(s.averageGbps, 8, accuracy: 1e-9)
        XCTAssertEqual(s.messageRateMpps, 0.001, accuracy: 1e-12)
        XCTAssertGreaterThan(s.peakMBps, s.averageMBps)
        XCTAssertLessThanOrEqual(s.peakMBps, 2000.0001)
        XCTAssertNil(BandwidthStatistics(bytes: 1, checkpoints: []))
    }

    func testHandshakeRoundTripAndMalformedRequests() throws {
        var config = PingPongConfiguration()
        config.operation = .send
        config.measurement = .bandwidth
        config.sizes = [4096, 65536]
        let buffer = RemoteBuffer(address: 0x1000, length: 131_072, rkey: 7)
        let mailbox = RemoteBuffer(address: 0x9000, length: UInt64(Peer.mailboxSize), rkey: 8)
        let bytes = Handshake.request(config, buffer: buffer, mailbox: mailbox)
        XCTAssertEqual(bytes.count, PrivateDataLimit.connect)
        let decoded = try Handshake.decodeRequest(bytes + [0, 0, 0])  // The CM pads; padding is ignored.
        XCTAssertEqual(decoded.operation, .send)
        XCTAssertEqual(decoded.measurement, .bandwidth)
        XCTAssertEqual(decoded.bufferSize, 65536)
        XCTAssertEqual(decoded.buffer, buffer, "the buffer length is implied: two halves of the buffer size")
        XCTAssertEqual(decoded.mailbox, mailbox)
        XCTAssertEqual(decoded.tag, [UInt8](repeating: 0, count: 12), "no secret, no tag")

        XCTAssertThrowsError(try Handshake.decodeRequest(Array(bytes.prefix(40))), "short")
        XCTAssertThrowsError(try Handshake.decodeRequest([]), "empty")
        var bad = bytes; bad[0] = 0x58
        XCTAssertThrowsError(try Handshake.decodeRequest(bad), "bad magic")
        bad = bytes; bad[4] = 1
        XCTAssertThrowsError(try Handshake.decodeRequest(bad), "the previous protocol version")
        bad = bytes; bad[5] = 200
        XCTAssertThrowsError(try Handshake.decodeRequest(bad), "unknown operation")
        bad = bytes; bad[7] = 99
        XCTAssertThrowsError(try Handshake.decodeRequest(bad), "unknown memory kind")
        bad = bytes; bad[8] = 0xFF
        XCTAssertThrowsError(try Handshake.decodeRequest(bad), "absurd buffer size")
        bad = bytes; bad[8...11] = [0, 0, 0, 0]
        XCTAssertThrowsError(try Handshake.decodeRequest(bad), "zero buffer size")
        XCTAssertThrowsError(try Handshake.decodeAnswer(Array(repeating: 0, count: 45)), "answer without magic")
        XCTAssertThrowsError(try Handshake.decodeAnswer(Array("VKPP".utf8)), "short answer")
        // The public fuzz entry points take anything without trapping.
        for n in [0, 1, 4, 44, 55, 56, 57, 200] {
            _ = try? HandshakeWire.checkRequest((0..<n).map { _ in UInt8.random(in: 0...255) })
            _ = try? HandshakeWire.checkAnswer(Array("VKPP".utf8) + (0..<n).map { _ in UInt8.random(in: 0...255) })
        }
    }

    func testSharedSecretSignsBothWaysAndRefusesTamperingAndReplay() throws {
        let secret = try SharedSecret(Array("0123456789abcdef-the-key".utf8))
        let other = try SharedSecret(Array("0123456789abcdef-not-it".utf8))
        XCTAssertThrowsError(try SharedSecret(Array("short".utf8)), "a key under 16 bytes")
        var config = PingPongConfiguration()
        config.sizes = [64]
        let buffer = RemoteBuffer(address: 0x1000, length: 128, rkey: 7)
        let mailbox = RemoteBuffer(address: 0x9000, length: UInt64(Peer.mailboxSize), rkey: 8)
        let bytes = Handshake.request(config, buffer: buffer, mailbox: mailbox, secret: secret)
        XCTAssertEqual(bytes.count, PrivateDataLimit.connect)
        let request = try Handshake.decodeRequest(bytes)
        XCTAssertNoThrow(try Handshake.authenticate(request, secret: secret))
        XCTAssertThrowsError(try Handshake.authenticate(request, secret: other), "another key")
        XCTAssertThrowsError(try Handshake.authenticate(try Handshake.decodeRequest(Handshake.request(config, buffer: buffer, mailbox: mailbox)),
                                                        secret: secret), "no tag")
        for i in [5, 12, 20, 33, 40, 50] {  // Any changed byte, the rkeys and the nonce included, breaks the tag.
            var tampered = bytes; tampered[i] ^= 0x01
            if let r = try? Handshake.decodeRequest(tampered) {
                XCTAssertThrowsError(try Handshake.authenticate(r, secret: secret), "byte \(i) changed")
            }
        }
        let stale = try Handshake.decodeRequest(Handshake.request(config, buffer: buffer, mailbox: mailbox, secret: secret,
                                                                  time: Handshake.now() - 600))
        XCTAssertThrowsError(try Handshake.authenticate(stale, secret: secret), "ten minutes old")
        var guardian = ReplayGuard()
        XCTAssertNoThrow(try guardian.admit(request))
        XCTAssertThrowsError(try guardian.admit(request), "the same request again")
        XCTAssertNoThrow(try guardian.admit(try Handshake.decodeRequest(Handshake.request(config, buffer: buffer, mailbox: mailbox, secret: secret))))

        // The answer is bound to the request it answers.
        let answer = Handshake.answer(buffer: buffer, mailbox: mailbox, request: bytes, secret: secret)
        XCTAssertLessThanOrEqual(answer.count, PrivateDataLimit.accept)
        XCTAssertNoThrow(try Handshake.verifyAnswer(answer, request: bytes, secret: secret))
        XCTAssertThrowsError(try Handshake.verifyAnswer(answer, request: bytes, secret: other), "another key")
        var otherRequest = bytes; otherRequest[40] ^= 1
        XCTAssertThrowsError(try Handshake.verifyAnswer(answer, request: otherRequest, secret: secret), "another request")
        XCTAssertThrowsError(try Handshake.verifyAnswer(Handshake.answer(buffer: buffer, mailbox: mailbox, request: bytes, secret: nil),
                                                        request: bytes, secret: secret), "a server without the secret")
        var forged = answer; forged[21] ^= 0x80  // A different rkey in the answer.
        XCTAssertThrowsError(try Handshake.verifyAnswer(forged, request: bytes, secret: secret), "a changed rkey")
    }

    func testConfigurationValidation() {
        var c = PingPongConfiguration()
        XCTAssertNoThrow(try c.validate())
        c.sizes = [0]
        XCTAssertThrowsError(try c.validate())
        c.sizes = [(1 << 30) + 1]
        XCTAssertThrowsError(try c.validate())
        c.sizes = [2]; c.iterations = 0
        XCTAssertThrowsError(try c.validate())
        c.iterations = 1
        c.inline = -1
        XCTAssertThrowsError(try c.validate(), "a negative inline size")
        c.inline = nil
        XCTAssertEqual(c.inlineLimit, PingPongConfiguration.defaultLatencyInline, "latency inlines like perftest by default")
        c.measurement = .bandwidth
        XCTAssertEqual(c.inlineLimit, 0, "bandwidth does not, as perftest")
        c.inline = 64
        XCTAssertEqual(c.inlineLimit, 64)
        XCTAssertEqual(PingPongConfiguration.sweep.first, 2)
        XCTAssertEqual(PingPongConfiguration.sweep.last, 8 << 20)
    }

    func testEventModeOnlyWhereAnAnswerRaisesACompletion() {
        var c = PingPongConfiguration()
        c.events = true
        for op in [RDMAOperation.send, .writeImm] {
            c.operation = op
            XCTAssertNoThrow(try c.validate(), "\(op)")
        }
        c.operation = .write
        XCTAssertThrowsError(try c.validate()) { error in
            XCTAssertTrue("\(error)".contains("-e") && "\(error)".contains("no completion event"), "\(error)")
        }
        c.operation = .read
        XCTAssertThrowsError(try c.validate()) { error in XCTAssertTrue("\(error)".contains("--op send"), "\(error)") }
        c.operation = .send
        c.measurement = .bandwidth
        XCTAssertThrowsError(try c.validate()) { error in XCTAssertTrue("\(error)".contains("latency"), "\(error)") }
        c.events = false
        XCTAssertNoThrow(try c.validate(), "without -e every operation and measurement")
    }

    func testCycleClockAgreesWithTheMonotonicClock() {
        // Samples are taken in cycle-counter ticks and converted with the calibrated rate: a
        // wrong rate would scale every latency. The tolerance is wide (the check is of the
        // conversion, not of timing), and a loaded machine can only lengthen both sides alike.
        let n0 = vkv_monotonic_ns(), c0 = vkv_cycles()
        usleep(100_000)
        let n1 = vkv_monotonic_ns(), c1 = vkv_cycles()
        let converted = Double(CycleClock.nanoseconds([c1 - c0])[0])
        let ratio = converted / Double(n1 - n0)
        XCTAssertTrue(ratio > 0.9 && ratio < 1.1, "100 ms in ticks converts to \(converted / 1e6) ms")
    }

    func testTableAndCSV() throws {
        let r = PingPongResult(operation: .write, measurement: .latency, memory: "host memory", device: "rxe0",
                               latency: [try XCTUnwrap(LatencyStatistics(bytes: 2, samples: [2000, 4000, 6000], halve: true))])
        XCTAssertTrue(Report.table(r).contains("t_typical[usec]"))
        XCTAssertTrue(Report.table(r).contains("2.00"), Report.table(r))
        XCTAssertEqual(Report.csv(r).split(separator: "\n").last, "2,3,1.00,3.00,2.00,2.00,0.82,3.00,3.00")
    }
}

/// The ping-pong over rxe: every operation, both measurements, and the failures a user meets.
final class PingPongFabricTests: RDMATestCase {

    private func noVulkan() throws(VulkanError) -> VulkanDevice { throw .invalidArgument("no Vulkan in this test") }

    /// A server in this process for `clients` clients: its port, a semaphore signalled when it
    /// has served them, and the count of sessions that failed.
    private func serveInProcess(clients: Int) throws -> (port: UInt16, done: DispatchSemaphore, failures: FailCount) {
        let server = try PingPongServer(bind: env.address, port: 0, vulkan: { () throws(VulkanError) in throw .invalidArgument("no Vulkan in this test") },
                                        log: { _ in })
        let done = DispatchSemaphore(value: 0)
        let box = FailCount()
        DispatchQueue.global().async { box.failed = server.serve(maxClients: clients); done.signal() }
        return (server.listener.port, done, box)
    }

    func testEveryOperationLatencyAndBandwidth() throws {
        let (port, done, box) = try serveInProcess(clients: 8)
        for measurement in MeasurementKind.allCases {
            for op in RDMAOperation.allCases {
                var c = PingPongConfiguration()
                c.operation = op
                c.measurement = measurement
                c.sizes = [2, 4096]
                c.iterations = 50
                c.warmup = 5
                c.timeout = .seconds(20)
                let r = try PingPongClient.run(host: env.address, port: port, config: c, vulkan: { () throws(VulkanError) in try self.noVulkan() })
                if measurement == .latency {
                    XCTAssertEqual(r.latency.map(\.bytes), [2, 4096], "\(op)")
                    XCTAssertEqual(r.latency.map(\.iterations), [50, 50], "\(op)")
                    for s in r.latency { XCTAssertTrue(s.min > 0 && s.min <= s.typical && s.typical <= s.max, "\(op) \(s)") }
                } else {
                    XCTAssertEqual(r.bandwidth.map(\.iterations), [50, 50], "\(op)")
                    for s in r.bandwidth { XCTAssertGreaterThan(s.averageMBps, 0, "\(op)") }
                }
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(box.failed, 0, "every server session ended cleanly")
    }

    /// perftest's -e on both sides: the server's sessions and the client sleep on their receive
    /// queues' completion channels; every sample is a real round trip.
    func testEventModeOnBothSides() throws {
        let server = try PingPongServer(bind: env.address, port: 0, events: true,
                                        vulkan: { () throws(VulkanError) in throw .invalidArgument("no Vulkan in this test") }, log: { _ in })
        let done = DispatchSemaphore(value: 0)
        let box = FailCount()
        DispatchQueue.global().async { box.failed = server.serve(maxClients: 3); done.signal() }
        for (op, events) in [(RDMAOperation.send, true), (.writeImm, true), (.send, false)] {
            var c = PingPongConfiguration()
            c.operation = op
            c.events = events
            c.sizes = [2, 4096]
            c.iterations = 50
            c.warmup = 5
            c.timeout = .seconds(20)
            let r = try PingPongClient.run(host: env.address, port: server.listener.port, config: c,
                                           vulkan: { () throws(VulkanError) in try self.noVulkan() })
            XCTAssertEqual(r.latency.map(\.iterations), [50, 50], "\(op) events \(events)")
            for s in r.latency { XCTAssertTrue(s.min > 0 && s.min <= s.typical, "\(op) \(s)") }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(box.failed, 0, "every event-mode session ended cleanly")
    }

    func testInlineByDefaultAndOffOnRequest() throws {
        let (port, done, box) = try serveInProcess(clients: 5)
        // (operation, inline asked, sizes, inline bytes expected in the result)
        let cases: [(RDMAOperation, Int?, [Int], Int)] = [
            (.write, nil, [2, 220, 221, 4096], PingPongConfiguration.defaultLatencyInline),
            (.send, nil, [8, 1024], PingPongConfiguration.defaultLatencyInline),
            (.writeImm, 0, [64], 0),
            (.send, 100, [64, 200], 100),
            (.read, nil, [64], 0),
        ]
        for (op, inline, sizes, expected) in cases {
            var c = PingPongConfiguration()
            c.operation = op
            c.sizes = sizes
            c.iterations = 40
            c.warmup = 4
            c.inline = inline
            c.timeout = .seconds(20)
            let r = try PingPongClient.run(host: env.address, port: port, config: c, vulkan: { () throws(VulkanError) in try self.noVulkan() })
            XCTAssertEqual(r.inlineBytes, expected, "\(op) --inline \(inline.map(String.init) ?? "default")")
            XCTAssertEqual(r.latency.map(\.bytes), sizes, "\(op): every size measured, inline or not")
            XCTAssertTrue(Report.table(r).contains(expected > 0 ? "up to \(expected) bytes posted inline" : "no inline data")
                          || op == .read, Report.table(r))
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(box.failed, 0, "every server session ended cleanly")
    }

    var vkverbs: URL {
        // The CLI sits next to the test executable in the build directory.
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("vkverbs")
    }

    func requireCLI() throws {
        guard FileManager.default.isExecutableFile(atPath: vkverbs.path) else {
            if RDMAEnvironment.isRequired { XCTFail("\(vkverbs.path) is missing: build it (swift build) before the fabric run") }
            throw XCTSkip("skipped: vkverbs is not built next to the tests (\(vkverbs.path))")
        }
    }

    func run(_ args: [String], timeout: TimeInterval = 60) throws -> (status: Int32, output: String, seconds: Double) {
        let r = try runProcess(vkverbs, args, timeout: timeout)
        if r.timedOut { XCTFail("vkverbs \(args.joined(separator: " ")) did not finish within \(timeout) s") }
        return (r.status, r.output, r.seconds)
    }

    /// Starts a `vkverbs pingpong --server` and returns once it listens (its first line), so a
    /// test never races the server's start.
    /// `onLog` sees each line of its log (standard error: "client connected: …", …).
    func startServer(_ args: [String], onLog: (@Sendable (String) -> Void)? = nil) throws -> Process {
        let server = Process()
        server.executableURL = vkverbs
        server.arguments = ["pingpong", "--server"] + args
        let pipe = Pipe()
        server.standardOutput = pipe
        if let onLog {
            let log = Pipe()
            server.standardError = log
            DispatchQueue.global().async {
                var pending = ""
                while case let data = log.fileHandleForReading.availableData, !data.isEmpty {
                    pending += String(decoding: data, as: UTF8.self)
                    while let newline = pending.firstIndex(of: "\n") {
                        onLog(String(pending[..<newline]))
                        pending = String(pending[pending.index(after: newline)...])
                    }
                }
            }
        } else {
            server.standardError = FileHandle.nullDevice
        }
        try server.run()
        let ready = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = pipe.fileHandleForReading.availableData  // The "listening on" line (or EOF if it died).
            ready.signal()
            while !pipe.fileHandleForReading.availableData.isEmpty {}  // Keep draining.
        }
        XCTAssertEqual(ready.wait(timeout: .now() + 60), .success, "the server starts listening")
        return server
    }

    func testCommandLineBadInputGivesOneClearMessage() throws {
        try requireCLI()
        var r = try run(["pingpong", "--client", env.address, "--size", "0"])
        XCTAssertNotEqual(r.status, 0); XCTAssertTrue(r.output.contains("--size must be at least 1"), r.output)
        r = try run(["pingpong", "--client", env.address, "--size", "2000000000"])
        XCTAssertNotEqual(r.status, 0); XCTAssertTrue(r.output.contains("1 GiB"), r.output)
        r = try run(["pingpong", "--client", env.address, "--port", "9", "--timeout", "5"])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.output.contains("no vkverbs pingpong server listens"), r.output)
        XCTAssertLessThan(r.seconds, 15)
        r = try run(["pingpong", "--client", "192.0.2.77", "--timeout", "3"])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.output.contains("192.0.2.77"), r.output)
        XCTAssertLessThan(r.seconds, 15)
        r = try run(["pingpong", "--server", "--bind", "198.51.100.1"])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.output.contains("rdma_bind_addr"), r.output)
        r = try run(["pingpong", "--client", env.address, "--device", "mlx5_99"])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.output.contains("mlx5_99"), r.output)
        r = try run(["devices", "--json"])
        XCTAssertEqual(r.status, 0); XCTAssertTrue(r.output.contains(env.context.name), r.output)
    }

    /// `--max-memory`: a bad size is one clear message; a client asking for more than the budget is
    /// refused with the reason, and one within it is served.
    func testServerMemoryBudgetOnTheCommandLine() throws {
        try requireCLI()
        var r = try run(["pingpong", "--server", "--max-memory", "12Q"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("--max-memory 12Q"), r.output)
        r = try run(["pingpong", "--server", "--max-memory", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("--max-memory 0"), r.output)

        let server = try startServer(["--bind", env.address, "--port", "18601", "--max-memory", "1M"])
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }
        r = try run(["pingpong", "--client", env.address, "--port", "18601", "--size", "1048576", "-i", "5", "--warmup", "1", "--timeout", "10"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("over memory budget"), r.output)
        r = try run(["pingpong", "--client", env.address, "--port", "18601", "--size", "262144", "-i", "5", "--warmup", "1", "--timeout", "10"])
        XCTAssertEqual(r.status, 0, r.output)
    }

    func testPortInUseAndServerDyingMidRun() throws {
        try requireCLI()
        let connected = DispatchSemaphore(value: 0)
        let server = try startServer(["--bind", env.address, "--port", "18600"]) { line in
            if line.contains("client connected") { connected.signal() }
        }
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }

        // A second server on the same port: a clear error, not a hang.
        let attempt = try run(["pingpong", "--server", "--bind", env.address, "--port", "18600"], timeout: 30)
        XCTAssertEqual(attempt.status, 1)
        XCTAssertTrue(attempt.output.contains("Address already in use"), attempt.output)

        // A client on a long run; the server is killed under it once the session runs (not after
        // a fixed delay: under TCG on a loaded machine the client may not have connected by then).
        DispatchQueue.global().async {
            guard connected.wait(timeout: .now() + 60) == .success else { return }
            Thread.sleep(forTimeInterval: 1)
            kill(server.processIdentifier, SIGKILL)
        }
        let r = try run(["pingpong", "--client", env.address, "--port", "18600", "--op", "send", "-i", "100000000",
                         "--timeout", "5", "--retry", "30"], timeout: 120)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("went away") || r.output.contains("timed out"), r.output)
        XCTAssertLessThan(r.seconds, 30)
    }
}

extension PingPongFabricTests {
    /// Ctrl-C on the client: it stops, prints what it measured, exits 130, and the server goes on.
    func testInterruptStopsCleanlyAndReports() throws {
        try requireCLI()
        let server = try startServer(["--bind", env.address, "--port", "18610", "--max-clients", "2"])
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }

        let client = Process()
        client.executableURL = vkverbs
        client.arguments = ["pingpong", "--client", env.address, "--port", "18610", "--retry", "20", "--sweep", "-i", "1000000"]
        let pipe = Pipe()
        client.standardOutput = pipe
        let progress = Pipe()
        client.standardError = progress
        try client.run()
        // Interrupted once it measures (its first progress line), not after a fixed time: under
        // ASan in the TCG guest the CLI can take longer than a few seconds to start, and a SIGINT
        // before its handler is installed kills it (status 2, nothing printed).
        XCTAssertTrue(waitForProgress(client, progress, within: 120), "the client reports progress")
        DispatchQueue.global().async { _ = progress.fileHandleForReading.readDataToEndOfFile() }
        kill(client.processIdentifier, SIGINT)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        client.waitUntilExit()
        XCTAssertEqual(client.terminationStatus, 130, output)
        XCTAssertTrue(output.contains("interrupted"), output)
        XCTAssertTrue(output.contains("t_typical"), "the table of what was measured: \(output)")

        // The server survived the interrupted session and serves the next client.
        let next = try run(["pingpong", "--client", env.address, "--port", "18610", "-i", "20", "--warmup", "2"])
        XCTAssertEqual(next.status, 0, next.output)
    }
}

extension PingPongFabricTests {
    /// Clients that connect while the server is down or restarting get in once it is back (with
    /// --retry); a client whose server is killed under it fails with a reason, and a new run
    /// after the restart goes through.
    func testServerRestartedWhileClientsConnect() throws {
        try requireCLI()
        let port = "18620"
        func client(_ extra: [String]) -> (Process, Pipe) {
            let p = Process()
            p.executableURL = vkverbs
            p.arguments = ["pingpong", "--client", env.address, "--port", port, "--op", "send", "--timeout", "5"] + extra
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            return (p, pipe)
        }
        func finish(_ c: (Process, Pipe), within seconds: Double) -> (Int32, String) {
            let watchdog = DispatchWorkItem { if c.0.isRunning { c.0.terminate() } }
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: watchdog)
            let out = String(decoding: c.1.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            c.0.waitUntilExit()
            watchdog.cancel()
            return (c.0.terminationStatus, out)
        }

        // Before the server exists: the client keeps trying and gets in when it starts.
        let early = client(["-i", "200", "--warmup", "10", "--retry", "60"])
        try early.0.run()
        Thread.sleep(forTimeInterval: 2)
        var server = try startServer(["--bind", env.address, "--port", port])
        var r = finish(early, within: 90)
        XCTAssertEqual(r.0, 0, r.1)

        // Killed under a running client (once the client reports progress, not after a fixed 3 s,
        // which under ASan in the TCG guest can come before it connected): a clear failure within
        // the timeout.
        let victim = client(["-i", "100000000"])
        try victim.0.run()
        let victimProgress = Output()
        XCTAssertTrue(waitForProgress(victim.0, victim.1, within: 120, keeping: victimProgress), "the client reports progress")
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        r = finish(victim, within: 60)
        r.1 = victimProgress.text + r.1
        XCTAssertEqual(r.0, 1, r.1)
        XCTAssertTrue(r.1.contains("went away") || r.1.contains("timed out"), r.1)

        // Restarted while the next client is already knocking: it gets in.
        let next = client(["-i", "200", "--warmup", "10", "--retry", "60"])
        try next.0.run()
        Thread.sleep(forTimeInterval: 2)
        server = try startServer(["--bind", env.address, "--port", port])
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }
        r = finish(next, within: 90)
        XCTAssertEqual(r.0, 0, r.1)
    }
}

final class FailCount: @unchecked Sendable { var failed = -1 }

/// What `waitForProgress` read from a pipe before it returned.
final class Output: @unchecked Sendable { var text = "" }

extension PingPongFabricTests {
    /// Reads `pipe` until a `progress:` line has arrived (true), or the process ended or `seconds`
    /// passed (false; the process is then terminated). What was read is kept in `keeping`.
    func waitForProgress(_ process: Process, _ pipe: Pipe, within seconds: Double, keeping: Output = Output()) -> Bool {
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: watchdog)
        defer { watchdog.cancel() }
        while !keeping.text.contains("progress:") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { return false }
            keeping.text += String(decoding: chunk, as: UTF8.self)
        }
        return true
    }
}

extension PingPongFabricTests {
    /// A process that may not pin enough memory is told which limit to raise, not just ENOMEM.
    /// (Root bypasses RLIMIT_MEMLOCK through CAP_IPC_LOCK, so the child runs without it.)
    func testLowLockedMemoryLimitSaysWhatToChange() throws {
        try requireCLI()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            throw XCTSkip("skipped: setpriv (util-linux) is not installed")
        }
        let (status, output, _, _) = try runProcess(
            URL(fileURLWithPath: "/usr/bin/setpriv"),
            ["--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", "--", "/bin/bash", "-c",
             "ulimit -l 64 && exec \"$0\" pingpong --client \"$1\" --port 9 --size 1048576 --timeout 5", vkverbs.path, env.address])
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.contains("locked-memory limit (ulimit -l) is 64 KiB"), output)
        XCTAssertTrue(output.contains("ulimit -l unlimited"), output)
    }
}

/// Where the machine has no RDMA device (the development host, CI's host run), every command
/// that needs one says so and what to do, instead of a bare errno.
final class NoDeviceTests: XCTestCase {
    func testCommandsSayThereIsNoRDMADevice() throws {
        guard !FileManager.default.fileExists(atPath: "/dev/infiniband/rdma_cm") else {
            throw XCTSkip("skipped: this machine has an RDMA device (the message is for machines without one)")
        }
        let cli = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("vkverbs")
        guard FileManager.default.isExecutableFile(atPath: cli.path) else {
            return XCTFail("\(cli.path) is missing: build it (swift build) before the tests")
        }
        for args in [["pingpong", "--client", "192.0.2.1"], ["pingpong", "--server"], ["stream", "--client", "192.0.2.1", "--messages", "1"],
                     ["selftest"]] {
            let (status, output, _, _) = try runProcess(cli, args)
            XCTAssertEqual(status, 1, "\(args): \(output)")
            XCTAssertTrue(output.contains("no RDMA device") && output.contains("rdma link add"), "\(args): \(output)")
        }
    }
}
