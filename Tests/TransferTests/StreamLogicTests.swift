import Dispatch
import Sharing
@testable import NumberedStream
import Verbs
import VerbsEmbedded
import XCTest

/// The numbered stream's logic on the in-memory twin, at host speed: resume after faults on
/// either side, a link that is down for a while, hostile hellos and messages. (StreamFaultTests
/// runs the same sender and receiver over rxe in the fabric.)
final class StreamLogicTests: XCTestCase {
    /// A dialer and an acceptor over one in-memory listener.
    private struct Dialer: StreamDialer {
        let listener: InMemoryListener
        var peerName: String { "in-memory" }
        func dial(hello: [UInt8], sendDepth: Int, receiveDepth: Int, timeout: Duration) throws(VerbsError)
            -> (endpoint: any ConnectedEndpoint, answer: [UInt8]) {
            let (endpoint, answer) = try listener.dial(privateData: hello, timeout: timeout)
            return (endpoint, answer)
        }
    }

    private struct Acceptor: StreamAcceptor {
        let listener: InMemoryListener
        func accept(wait: Duration, sendDepth: Int, receiveDepth: Int, timeout: Duration,
                    decide: ([UInt8]) -> StreamDecision) throws(VerbsError) -> (any ConnectedEndpoint)? {
            listener.accept(wait: wait) { hello in
                switch decide(hello) {
                case let .accept(answer): return (answer, [])
                case let .reject(reason): return (nil, Array(reason.utf8))
                }
            }
        }
    }

    private final class Lines: Sendable {
        let lines = Locked<[String]>([])
        func add(_ line: String) { lines.withLock { $0.append(line) } }
        var all: String { lines.withLock { $0.joined(separator: "\n") } }
    }

    private func options(window: Int = 8, messageSize: Int = 1024) -> SequencedStream.Options {
        var o = SequencedStream.Options()
        o.window = window
        o.messageSize = messageSize
        o.timeout = .seconds(5)
        o.reconnectWithin = .seconds(10)
        o.progressEvery = 100
        return o
    }

    /// Runs a receiver on a thread and `send` on this one; returns both summaries and the log.
    private func stream(_ listener: InMemoryListener, options: SequencedStream.Options, receiverFaults: Set<UInt64> = [],
                        send: (Lines) throws -> SequencedStream.Summary) throws
        -> (sender: SequencedStream.Summary, receiver: SequencedStream.Summary, log: String) {
        let lines = Lines()
        let receiver = StreamReceiver(acceptor: Acceptor(listener: listener), options: options, log: { lines.add("receiver: \($0)") })
        receiver.faultAfter = receiverFaults
        let result = Locked<Result<SequencedStream.Summary, SequencedStream.StreamError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let r = receiver
        Thread.detachNewThread {
            let got = Result { () throws(SequencedStream.StreamError) in try r.run() }
            result.withLock { $0 = got }
            done.signal()
        }
        let mine: SequencedStream.Summary
        do { mine = try send(lines) } catch {
            _ = done.wait(timeout: .now() + 30)
            XCTFail("the sender failed: \(error)\n\(lines.all)")
            throw error
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success, "the receiver finishes")
        let theirs = try XCTUnwrap(result.withLock { $0 }).get()
        return (mine, theirs, lines.all)
    }

    func testACleanStreamArrivesWhole() throws {
        let listener = InMemoryListener()
        let r = try stream(listener, options: options()) { lines in
            try StreamSender(dialer: Dialer(listener: listener), messages: 3000, options: options(), log: { lines.add("sender: \($0)") }).run()
        }
        XCTAssertEqual(r.sender.accepted, 3000)
        XCTAssertEqual(r.receiver, r.sender)
        XCTAssertEqual(r.sender.reconnects, 0, r.log)
        XCTAssertEqual(r.receiver.reconnects, 0, r.log)
        for link in listener.links { XCTAssertEqual(link.finish().a.pendingSends, 0) }
    }

    func testFaultsOnBothSidesResumeWithoutLossOrDuplicate() throws {
        let listener = InMemoryListener()
        let r = try stream(listener, options: options(), receiverFaults: [700, 2100]) { lines in
            let sender = StreamSender(dialer: Dialer(listener: listener), messages: 3000, options: options(), log: { lines.add("sender: \($0)") })
            sender.faultAfter = [150, 1500]
            return try sender.run()
        }
        XCTAssertEqual(r.receiver, r.sender, r.log)
        XCTAssertEqual(r.sender.accepted, 3000)
        XCTAssertEqual(r.sender.reconnects, 4, r.log)
        XCTAssertEqual(r.receiver.reconnects, 4, "the receiver counts the same reconnects: \(r.log)")
        for fault in r.sender.faults { XCTAssertGreaterThanOrEqual(fault.resumedAt, fault.completed, "nothing completed was lost") }
    }

    func testALinkDownForAWhileIsWaitedOut() throws {
        let listener = InMemoryListener()
        let r = try stream(listener, options: options()) { lines in
            let sender = StreamSender(dialer: Dialer(listener: listener), messages: 2000, options: options(), log: { lines.add("sender: \($0)") })
            sender.progress = { completed in
                guard completed == 500 else { return }
                // The link goes down and stays unreachable for half a second.
                listener.unreachable = true
                listener.links.last?.inject(.disconnect)
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { listener.unreachable = false }
            }
            return try sender.run()
        }
        XCTAssertEqual(r.receiver, r.sender, r.log)
        XCTAssertEqual(r.sender.reconnects, 1, r.log)
        XCTAssertEqual(r.receiver.reconnects, 1, "the receiver counts the reconnect: \(r.log)")
        XCTAssertTrue(r.log.contains("connect attempt"), "the sender retried while the link was down: \(r.log)")
    }

    /// Every connection's completions held on both ends and handed over a few at a time, newest
    /// connection first (across queue pairs, out of posting order), with a fault whose flushes
    /// come late: the stream still arrives whole, once, in order.
    func testCompletionsReorderedAcrossConnectionsLoseAndRepeatNothing() throws {
        let listener = InMemoryListener()
        let done = Locked(false)
        let deliverer = Thread {
            while !done.withLock({ $0 }) {
                for link in listener.links.reversed() {
                    link.holdCompletions(.a)
                    link.holdCompletions(.b)
                    link.deliverCompletions(.a, queue: .send, count: 2)
                    link.deliverCompletions(.b, queue: .receive, count: 3)
                    link.deliverCompletions(.b, queue: .send)
                    link.deliverCompletions(.a, queue: .receive)
                }
                usleep(100)
            }
        }
        deliverer.start()
        defer { done.withLock { $0 = true } }
        let r = try stream(listener, options: options()) { lines in
            let sender = StreamSender(dialer: Dialer(listener: listener), messages: 2000, options: options(), log: { lines.add("sender: \($0)") })
            sender.progress = { completed in
                if completed == 600 { listener.links.last?.inject(.disconnect) }
            }
            return try sender.run()
        }
        XCTAssertEqual(r.receiver, r.sender, r.log)
        XCTAssertEqual(r.sender.accepted, 2000)
        XCTAssertGreaterThanOrEqual(r.sender.reconnects, 1, r.log)
        for fault in r.sender.faults { XCTAssertGreaterThanOrEqual(fault.resumedAt, fault.completed, "nothing completed was lost") }
    }

    func testHostileHellosAreRefusedBeforeAnythingIsAllocated() throws {
        let listener = InMemoryListener()
        var small = options()
        small.maxReceiveMemory = 1 << 20
        let r = try stream(listener, options: small) { lines in
            var big = small
            big.messageSize = 1 << 20  // 8 slots of 1 MiB: over the receiver's 1 MiB budget.
            XCTAssertThrowsError(try StreamSender(dialer: Dialer(listener: listener), messages: 10, options: big).run()) {
                XCTAssertTrue("\($0)".contains("over memory budget"), "\($0)")
            }
            for garbage: [UInt8] in [[], Array("VKST".utf8), Array(repeating: 0xFF, count: 25),
                                     Array("VKST".utf8) + [1] + [0, 0, 0, 0] + Array(repeating: 0, count: 16)] {
                XCTAssertThrowsError(try listener.dial(privateData: garbage, timeout: .seconds(5))) {
                    guard case let .connection(failure) = $0 as? VerbsError else { return XCTFail("\($0)") }
                    XCTAssertEqual(failure.peerMessage, "bad request")
                }
            }
            // The receiver goes on and serves a well-formed sender.
            return try StreamSender(dialer: Dialer(listener: listener), messages: 100, options: small, log: { lines.add("sender: \($0)") }).run()
        }
        XCTAssertEqual(r.receiver, r.sender, r.log)
        XCTAssertEqual(listener.links.count, 1, "only the good sender got a connection")
    }

    func testAcceptanceRefusesGapsDuplicatesAndBadChecksums() throws {
        func message(_ seq: UInt64, _ payload: [UInt8], checksum: UInt64? = nil, kind: UInt32 = 0) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 32 + payload.count)
            out.withUnsafeMutableBytes { p in
                p.storeBytes(of: seq.littleEndian, as: UInt64.self)
                p.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 8, as: UInt32.self)
                p.storeBytes(of: kind.littleEndian, toByteOffset: 12, as: UInt32.self)
                for (i, b) in payload.enumerated() { p[32 + i] = b }
                let sum = checksum ?? SequencedStream.checksum(p.baseAddress! + 32, count: payload.count, seq: seq)
                p.storeBytes(of: sum.littleEndian, toByteOffset: 16, as: UInt64.self)
            }
            return out
        }
        func accept(_ a: inout StreamAcceptance, _ bytes: [UInt8]) throws -> Bool {
            try bytes.withUnsafeBytes { p in try a.accept(p) }
        }
        var a = StreamAcceptance(messages: 3, messageSize: 16)
        XCTAssertFalse(try accept(&a, message(0, [1, 2, 3])))
        XCTAssertThrowsError(try accept(&a, message(0, [1, 2, 3]))) { XCTAssertTrue("\($0)".contains("duplicate"), "\($0)") }
        XCTAssertThrowsError(try accept(&a, message(2, [1]))) { XCTAssertTrue("\($0)".contains("missing"), "\($0)") }
        XCTAssertThrowsError(try accept(&a, message(1, [9], checksum: 42))) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
        XCTAssertThrowsError(try accept(&a, message(1, Array(repeating: 0, count: 17)))) { XCTAssertTrue("\($0)".contains("payload"), "\($0)") }
        XCTAssertThrowsError(try accept(&a, Array(message(1, [1, 2]).prefix(20)))) { XCTAssertTrue("\($0)".contains("no header"), "\($0)") }
        XCTAssertThrowsError(try accept(&a, message(3, [], kind: 1))) { XCTAssertTrue("\($0)".contains("end marker"), "\($0)") }
        XCTAssertFalse(try accept(&a, message(1, [4])))
        XCTAssertFalse(try accept(&a, message(2, [])))
        XCTAssertThrowsError(try accept(&a, message(3, [1]))) { XCTAssertTrue("\($0)".contains("beyond"), "\($0)") }
        XCTAssertTrue(try accept(&a, message(3, [], kind: 1)))
        XCTAssertEqual(a.summary.accepted, 3)
        XCTAssertThrowsError(try StreamWire.decodeHello(Array("VKST".utf8) + [1, 0xFF, 0xFF, 0xFF, 0xFF] + Array(repeating: 0, count: 16),
                                                        maxMessageSize: 1 << 20))
        XCTAssertThrowsError(try StreamWire.decodeAnswer(Array("VKST".utf8) + [0, 0, 0, 0, 0, 0, 0, 9], messages: 8))
    }
}
