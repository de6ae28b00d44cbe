import Foundation
import RDMATestSupport
import Verbs
import XCTest

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
