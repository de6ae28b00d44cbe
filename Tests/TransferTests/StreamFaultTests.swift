import Foundation
import RDMATestSupport
import NumberedStream
import SelfTest
import Verbs
import XCTest

/// Faults in the middle of a numbered, checksummed stream: each side sees a typed error within
/// its timeout, the sender reconnects, and in the end the receiver accepted exactly what the sender
/// sent, with nothing completed missing, nothing duplicated and nothing leaked.
final class StreamFaultTests: RDMATestCase {
    private final class ReceiverRun: @unchecked Sendable {
        let receiver: StreamReceiver
        let done = DispatchSemaphore(value: 0)
        var result: Result<SequencedStream.Summary, SequencedStream.StreamError>?
        var lines: [String] = []
        let lock = NSLock()
        init(address: String, options: SequencedStream.Options, faultAfter: Set<UInt64>) throws {
            var log: (String) -> Void = { _ in }
            receiver = try StreamReceiver(bind: address, port: 0, options: options, log: { log($0) })
            receiver.faultAfter = faultAfter
            log = { [unowned self] line in lock.withLock { lines.append(line) } }
            DispatchQueue.global().async { [self] in
                result = Result { () throws(SequencedStream.StreamError) in try receiver.run() }
                done.signal()
            }
        }
    }

    private func stream(messages: UInt64, messageSize: Int, senderFaults: Set<UInt64> = [], receiverFaults: Set<UInt64> = [])
        throws -> (sender: SequencedStream.Summary, receiver: SequencedStream.Summary, log: [String], seconds: Double) {
        var options = SequencedStream.Options()
        options.messageSize = messageSize
        options.window = 16
        options.timeout = .seconds(30)
        options.reconnectWithin = .seconds(60)
        let run = try ReceiverRun(address: env.address, options: options, faultAfter: receiverFaults)
        var senderLog: [String] = []
        let sender = StreamSender(host: env.address, port: run.receiver.listener!.port, messages: messages, options: options,
                                  log: { senderLog.append($0) })
        sender.faultAfter = senderFaults
        let start = Date()
        let mine = try sender.run()
        XCTAssertEqual(run.done.wait(timeout: .now() + 60), .success, "the receiver finishes")
        let theirs = try XCTUnwrap(run.result).get()
        return (mine, theirs, senderLog + run.lock.withLock { run.lines }, Date().timeIntervalSince(start))
    }

    func testQueuePairDrivenToErrorOnTheSenderMidStream() throws {
        let baseline = try baselineCounts()
        let r = try stream(messages: 2000, messageSize: 4096, senderFaults: [100, 777, 1500])
        XCTAssertEqual(r.sender.accepted, 2000)
        XCTAssertEqual(r.receiver, r.sender, "the receiver accepted exactly what the sender sent: \(r.log)")
        XCTAssertEqual(r.sender.reconnects, 3, r.log.joined(separator: "\n"))
        for fault in r.sender.faults { XCTAssertGreaterThanOrEqual(fault.resumedAt, fault.completed, "nothing completed was lost") }
        XCTAssertLessThan(r.seconds, 120, "each fault is noticed within the timeout")
        print("stream with 3 sender-side QP faults: \(r.sender) in \(String(format: "%.1f", r.seconds)) s")
        XCTAssertEqual(try resourceCounts(), baseline, "every QP, CQ, MR, PD and cm_id of every connection was released")
    }

    func testQueuePairDrivenToErrorOnTheReceiverMidStream() throws {
        let baseline = try baselineCounts()
        let r = try stream(messages: 1000, messageSize: 65536, receiverFaults: [250, 600])
        XCTAssertEqual(r.receiver.accepted, 1000)
        XCTAssertEqual(r.receiver, r.sender, r.log.joined(separator: "\n"))
        XCTAssertEqual(r.sender.reconnects, 2, r.log.joined(separator: "\n"))
        for fault in r.sender.faults { XCTAssertGreaterThanOrEqual(fault.resumedAt, fault.completed) }
        XCTAssertLessThan(r.seconds, 150)
        print("stream with 2 receiver-side QP faults: \(r.sender) in \(String(format: "%.1f", r.seconds)) s")
        XCTAssertEqual(try resourceCounts(), baseline)
    }

    func testADescriptorClaimingMoreThanWasRegisteredIsARemoteAccessError() throws {
        let baseline = try baselineCounts()
        do {
            let pair = try ConnectedPair(address: env.address)
            let src = try pair.client.pd.register(HostBuffer(count: 65536), access: .local)
            let dst = try pair.server.pd.register(HostBuffer(count: 4096), access: .remote)
            var claimed = dst.remoteBuffer
            claimed.length = 65536  // A peer's descriptor that promises more than it registered.
            let start = ContinuousClock.now
            try pair.client.queuePair.postSend(SendRequest(id: 9, operation: .write(claimed, offset: 0), segment: try src.segment(), signaled: true))
            let wc = try XCTUnwrap(try pair.client.queuePair.sendCQ.wait(timeout: .seconds(30)).first)
            XCTAssertEqual(wc.status, .remoteAccessError)
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(30))
            XCTAssertEqual(try pair.client.queuePair.state(), .error, "the connection is done; the application reconnects")
        }
        XCTAssertEqual(try resourceCounts(), baseline)
    }
}
