import Foundation
import RDMATestSupport
import Transfer
import Verbs
import XCTest

/// A peer process killed mid-transfer, and the resources the kernel counts.
final class PeerFailureTests: RDMATestCase {
    private var vkverbs: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("vkverbs")
    }

    /// Connects to the sink (retrying while it starts), checks the link, kills the sink while writes
    /// are in flight and returns how long after the kill the engine failed.
    private func writeUntilThePeerDies(_ sink: Process) throws -> Duration {
        let connection = try connectWithRetry(port: 18531)
        let remote = try RemoteBuffer(decoding: connection.peerPrivateData)
        let engine = try TransferEngine(connection: connection, options: .init(window: 32, maxChunk: 64 << 10, timeout: .seconds(60)))
        let source = try connection.pd.register(HostBuffer(count: 8 << 20), access: .local)
        try engine.write(try source.segment(), to: remote)  // The link works before the kill.

        let killedAt = ContinuousClock.now
        let pid = sink.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(500)) { kill(pid, SIGKILL) }
        do {
            while ContinuousClock.now - killedAt < .seconds(60) {
                _ = try engine.postWrite(try source.segment(), to: remote)
                _ = try engine.progress()
            }
            try engine.drain()
            XCTFail("writes to a killed peer kept succeeding")
        } catch let error as TransferError {
            switch error {
            case .disconnected, .failed, .timedOut: break
            default: XCTFail("expected a typed transfer failure, got \(error)")
            }
        }
        let took = ContinuousClock.now - killedAt
        XCTAssertThrowsError(try engine.write(try source.segment(), to: remote), "the engine stays failed")
        return took
    }

    private func resourceListing(_ kind: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["rdma", "resource", "show", kind]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    private func connectWithRetry(port: UInt16) throws -> Connection {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                return try connectToSink(port: port)
            } catch {
                guard case let .connection(f) = error, f.isNoListener, ContinuousClock.now < deadline else { throw error }
                Thread.sleep(forTimeInterval: 0.3)
            }
        }
    }

    private func connectToSink(port: UInt16) throws(VerbsError) -> Connection {
        let route = try ResolvedRoute.resolve(host: env.address, port: port)
        let pd = try ProtectionDomain(context: route.context)
        let send = try CompletionQueue(context: route.context, capacity: 256, channel: CompletionChannel(context: route.context))
        let receive = try CompletionQueue(context: route.context, capacity: 16)
        return try route.prepare(pd: pd, sendCQ: send, receiveCQ: receive).connect(timeout: .seconds(10))
    }

    func testPeerProcessKilledMidTransferFailsPendingOperationsPromptly() throws {
        guard FileManager.default.isExecutableFile(atPath: vkverbs.path) else {
            if RDMAEnvironment.isRequired { XCTFail("\(vkverbs.path) is missing: build it before the fabric run") }
            throw XCTSkip("skipped: vkverbs is not built next to the tests")
        }
        let before = try baselineCounts()
        let sink = Process()
        sink.executableURL = vkverbs
        sink.arguments = ["sink", "--bind", env.address, "--port", "18531", "--size", String(8 << 20), "--hold", "120"]
        sink.standardOutput = FileHandle.nullDevice
        sink.standardError = FileHandle.nullDevice
        try sink.run()
        defer { if sink.isRunning { kill(sink.processIdentifier, SIGKILL) }; sink.waitUntilExit() }

        let failedAfter = try writeUntilThePeerDies(sink)
        XCTAssertLessThan(failedAfter, .seconds(45), "pending operations failed within a bounded time (took \(failedAfter))")
        sink.waitUntilExit()
        // The killed process' objects are torn down by the kernel as its files close, which can
        // finish a moment after it is reaped: give the counts a few seconds to come back.
        var after = try resourceCounts()
        for _ in 0..<50 where ["qp", "cq", "mr", "pd", "cm_id"].contains(where: { after[$0] != before[$0] }) {
            Thread.sleep(forTimeInterval: 0.1)
            after = try resourceCounts()
        }
        for kind in ["qp", "cq", "mr", "pd", "cm_id"] where after[kind] != before[kind] {
            XCTFail("\(kind) leaked: \(before[kind] ?? -1) before, \(after[kind] ?? -1) after\n\(try resourceListing(kind))")
        }
    }
}
