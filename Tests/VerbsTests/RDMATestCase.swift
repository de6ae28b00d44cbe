import Foundation
import SelfTest
import Verbs
import XCTest

/// Base of every test that needs RDMA: finds an active port once (through
/// `RDMAEnvironment`) or skips with the reason; inside the fabric
/// (VKVERBS_REQUIRE_RDMA=1) a missing device fails instead.
class RDMATestCase: XCTestCase {
    private(set) var env: RDMAEnvironment!
    private(set) var pd: ProtectionDomain!

    override func setUpWithError() throws {
        switch RDMAEnvironment.detect() {
        case let .success(found):
            env = found
            pd = try ProtectionDomain(context: found.context)
        case let .failure(why):
            if RDMAEnvironment.isRequired {
                XCTFail("RDMA is required here (VKVERBS_REQUIRE_RDMA=1) but \(why)")
                throw why
            }
            throw XCTSkip("skipped: \(why)")
        }
    }

    override func tearDown() {
        pd = nil
        env = nil
    }

    /// Counts of the device's resources from `rdma resource show`, for leak checks.
    func resourceCounts() throws -> [String: Int] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["rdma", "resource", "show", env.context.name]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        // "0: rxe0: pd 2 cq 4 qp 1 cm_id 0 mr 3 ctx 1 srq 0"
        let words = String(decoding: data, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        var out: [String: Int] = [:]
        for (i, w) in words.enumerated() where i + 1 < words.count {
            if ["pd", "cq", "qp", "mr", "cm_id"].contains(w), let n = Int(words[i + 1]) { out[w] = n }
        }
        XCTAssertFalse(out.isEmpty, "could not parse `rdma resource show`")
        return out
    }

    /// Asserts that `error` is the VerbsError case `matches` accepts.
    func assertVerbsError(_ error: any Error, _ what: String, file: StaticString = #filePath, line: UInt = #line,
                          _ matches: (VerbsError) -> Bool) {
        guard let e = error as? VerbsError, matches(e) else {
            return XCTFail("expected \(what), got \(error)", file: file, line: line)
        }
    }
}

/// Two queue pairs on the same device connected by hand (no rdmacm), through every
/// state transition: the fixture for the explicit-QP tests.
final class ManualPair {
    let cqA, cqB: CompletionQueue
    let a, b: QueuePair

    init(env: RDMAEnvironment, pd: ProtectionDomain) throws {
        let channel = try CompletionChannel(context: env.context)
        cqA = try CompletionQueue(context: env.context, capacity: 32, channel: channel)
        cqB = try CompletionQueue(context: env.context, capacity: 32, channel: channel)
        a = try QueuePair(pd: pd, sendCQ: cqA, receiveCQ: cqA, capabilities: .init(maxInlineData: 64))
        b = try QueuePair(pd: pd, sendCQ: cqB, receiveCQ: cqB)
    }

    func connect(env: RDMAEnvironment) throws {
        let port = env.port
        let mtu = port.activeMTU ?? .mtu1024
        for qp in [a, b] { try qp.modifyToInit(port: port.number, access: .remote) }
        let ea = QueuePairEndpoint(queuePairNumber: a.number, packetSequenceNumber: 100, gid: env.gid.gid)
        let eb = QueuePairEndpoint(queuePairNumber: b.number, packetSequenceNumber: 200, gid: env.gid.gid)
        try a.modifyToReadyToReceive(remote: eb, port: port.number, gidIndex: env.gid.index, mtu: mtu)
        try b.modifyToReadyToReceive(remote: ea, port: port.number, gidIndex: env.gid.index, mtu: mtu)
        try a.modifyToReadyToSend(packetSequenceNumber: 100)
        try b.modifyToReadyToSend(packetSequenceNumber: 200)
    }
}
