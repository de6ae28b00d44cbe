import Dispatch
@testable import FrameStream
import NumberedStream
import Sharing
import Verbs
import VerbsEmbedded
import XCTest

/// Sender and receiver of a frame stream over the in-memory twin, at host speed: ordered
/// delivery without loss or duplicate, every policy's drop count, back-pressure, a receiver that
/// stalls or dies, and hostile peers on either side.
final class FrameStreamLogicTests: XCTestCase {
    struct Dialer: StreamDialer {
        let listener: InMemoryListener
        var peerName: String { "in-memory" }
        func dial(hello: [UInt8], sendDepth: Int, receiveDepth: Int, timeout: Duration) throws(VerbsError)
            -> (endpoint: any ConnectedEndpoint, answer: [UInt8]) {
            let (endpoint, answer) = try listener.dial(privateData: hello, timeout: timeout)
            return (endpoint, answer)
        }
    }

    struct Acceptor: StreamAcceptor {
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

    private func receiverOptions(slots: Int = 8, slotSize: Int = 256, policy: FrameStream.Policy = .block) -> FrameReceiver.Options {
        var o = FrameReceiver.Options()
        o.slots = slots
        o.slotSize = slotSize
        o.policy = policy
        o.timeout = .seconds(10)
        return o
    }

    private func senderOptions(frameSize: Int = 256, timeout: Duration = .seconds(10)) -> FrameSender.Options {
        var o = FrameSender.Options()
        o.frameSize = frameSize
        o.maxSlots = 16
        o.timeout = timeout
        return o
    }

    /// Runs `consume` with a receiver accepted on another thread while `produce` runs here with a sender.
    private func run<T: Sendable>(_ listener: InMemoryListener, receiver options: FrameReceiver.Options,
                                  sender senderOptions: FrameSender.Options, dialer: (any StreamDialer)? = nil,
                                  consume: @escaping @Sendable (FrameReceiver) throws -> T,
                                  produce: (FrameSender) throws -> Void) throws -> T {
        let result = Locked<Result<T, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let o = options
        Thread.detachNewThread {
            let got = Result { () throws -> T in
                let receiver = try FrameReceiver.accept(acceptor: Acceptor(listener: listener), options: o, wait: .seconds(10))
                defer { receiver.close() }
                return try consume(receiver)
            }
            result.withLock { $0 = got }
            done.signal()
        }
        let sender = try FrameSender.connect(dialer: dialer ?? Dialer(listener: listener), options: senderOptions)
        try produce(sender)
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "the receiver finishes")
        return try XCTUnwrap(result.withLock { $0 }).get()
    }

    static func pattern(_ frame: UInt64, _ p: UnsafeMutableRawBufferPointer) {
        for i in 0..<p.count { p[i] = UInt8(truncatingIfNeeded: frame &* 31 &+ UInt64(i)) }
    }

    /// A receiver and a sender connected over one in-memory link; both then run on this thread
    /// (the link executes requests whenever either end is called).
    private func pair(receiver options: FrameReceiver.Options, sender senderOptions: FrameSender.Options) throws -> (FrameReceiver, FrameSender) {
        let listener = InMemoryListener(sendQueueDepth: 128, receiveQueueDepth: 128)
        final class Box: @unchecked Sendable {  // handed from the accepting thread to this one after `done`
            var result: Result<FrameReceiver, Error>?
        }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let o = options
        Thread.detachNewThread {
            box.result = Result { try FrameReceiver.accept(acceptor: Acceptor(listener: listener), options: o, wait: .seconds(10)) }
            done.signal()
        }
        let sender = try FrameSender.connect(dialer: Dialer(listener: listener), options: senderOptions)
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        return (try XCTUnwrap(box.result).get(), sender)
    }

    /// Block mode: 100,000 frames through 8 slots, each checked by number, length and bytes; the
    /// producer sends while it has credit, the consumer takes what is there, on one thread.
    func testBlockDeliversEveryFrameOnceInOrder() throws {
        let total: UInt64 = 100_000
        let (r, s) = try pair(receiver: receiverOptions(), sender: senderOptions())
        var next: UInt64 = 0, expected: UInt64 = 0
        func consume() throws {
            while let frame = try r.poll() {
                XCTAssertEqual(frame.number, expected)
                let length = Int(frame.number % 257)
                XCTAssertEqual(frame.length, length)
                let bytes = try XCTUnwrap(r.bytes(of: frame))
                if let bad = (0..<length).first(where: { bytes[$0] != UInt8(truncatingIfNeeded: frame.number &* 31 &+ UInt64($0)) }) {
                    XCTFail("frame \(frame.number) corrupted at byte \(bad)")
                }
                try r.release(frame)
                expected += 1
            }
        }
        while next < total {
            if try s.ready() {
                XCTAssertEqual(try s.send(length: Int(next % 257)) { Self.pattern(next, $0) }, next)
                next += 1
            } else {
                try consume()
            }
        }
        try s.end()
        try consume()
        XCTAssertTrue(r.ended)
        XCTAssertEqual(try s.finish().frames, total)
        let stats = r.statistics
        XCTAssertEqual(expected, total)
        XCTAssertEqual(stats.arrived, total)
        XCTAssertEqual(stats.delivered, total)
        XCTAssertEqual(stats.released, total)
        XCTAssertEqual(stats.dropped, 0)
        XCTAssertEqual(stats.latency.count, total)
        XCTAssertLessThan(stats.creditWrites, total, "credits are batched")
        r.close()
    }

    /// The drop policies against a consumer that looks only after the sender sent: exact counts.
    func testDropPoliciesCountExactlyWhatTheyDropped() throws {
        for (policy, delivered) in [(FrameStream.Policy.latestWins, [UInt64(9)]), (.dropOldest, [6, 7, 8, 9])] {
            let listener = InMemoryListener()
            var options = receiverOptions(slots: 16, policy: policy)
            options.readyLimit = 4
            let sent = DispatchSemaphore(value: 0)
            let (numbers, stats) = try run(listener, receiver: options, sender: senderOptions(), consume: { r in
                _ = sent.wait(timeout: .now() + 30)
                var numbers: [UInt64] = []
                while let frame = try r.next() {
                    numbers.append(frame.number)
                    try r.release(frame)
                }
                return (numbers, r.statistics)
            }, produce: { s in
                for f in 0..<10 as Range<UInt64> { try s.send(length: 16) { Self.pattern(f, $0) } }
                sent.signal()
                _ = try s.finish()
            })
            XCTAssertEqual(numbers, delivered, "\(policy)")
            XCTAssertEqual(stats.dropped, 10 - UInt64(delivered.count), "\(policy)")
            XCTAssertEqual(stats.arrived, 10)
        }
    }

    /// A consumer slower than the sender under the drop policies (it takes one frame for every
    /// three sent): every frame is delivered or counted dropped, exactly once, delivered frames come
    /// in order, and the newest is never dropped.
    func testDropPoliciesAccountForEveryFrameUnderLoad() throws {
        for policy in [FrameStream.Policy.latestWins, .dropOldest] {
            let total: UInt64 = 20000
            let (r, s) = try pair(receiver: receiverOptions(slots: 4, policy: policy), sender: senderOptions())
            var numbers: [UInt64] = []
            var sent: UInt64 = 0
            while sent < total {
                if try s.ready() {
                    try s.send(length: 8) { Self.pattern(sent, $0) }
                    sent += 1
                }
                let stuck = try !s.ready()
                if sent % 3 == 0 || stuck, let frame = try r.poll() {
                    numbers.append(frame.number)
                    try r.release(frame)
                }
            }
            try s.end()
            while let frame = try r.poll() {
                numbers.append(frame.number)
                try r.release(frame)
            }
            _ = try s.finish()
            let stats = r.statistics
            XCTAssertEqual(stats.arrived, total)
            XCTAssertGreaterThan(stats.dropped, 0, "\(policy): the consumer was slower")
            XCTAssertEqual(UInt64(numbers.count) + stats.dropped, total, "\(policy)")
            XCTAssertEqual(numbers, numbers.sorted(), "\(policy)")
            XCTAssertEqual(Set(numbers).count, numbers.count, "no duplicate")
            XCTAssertEqual(numbers.last, total - 1, "the newest frame is never dropped")
            r.close()
        }
    }

    /// A consumer that takes frames and never releases them: the blocking sender waits, then
    /// gets `.timedOut` within its bound.
    func testAStalledReceiverMakesABlockingSenderWaitThenTimeOut() throws {
        let listener = InMemoryListener()
        let stop = DispatchSemaphore(value: 0)
        let taken = try run(listener, receiver: receiverOptions(slots: 4), sender: senderOptions(timeout: .milliseconds(300)), consume: { r in
            var taken = 0
            while taken < 4, (try r.next(timeout: .seconds(5))) != nil { taken += 1 }
            _ = stop.wait(timeout: .now() + 30)
            return taken
        }, produce: { s in
            for f in 0..<4 as Range<UInt64> { try s.send(length: 8) { Self.pattern(f, $0) } }
            let start = ContinuousClock.now
            XCTAssertThrowsError(try s.send(length: 8) { Self.pattern(4, $0) }) { error in
                guard case .timedOut = error as? FrameStream.FrameError else { return XCTFail("\(error)") }
            }
            let waited = ContinuousClock.now - start
            XCTAssertGreaterThanOrEqual(waited, .milliseconds(300))
            XCTAssertLessThan(waited, .seconds(5))
            XCTAssertEqual(s.outstanding, 4)
            stop.signal()
        })
        XCTAssertEqual(taken, 4)
    }

    /// `waitForCredit(timeout:)` (the C API's wait) is bounded by its own timeout against a stalled
    /// consumer and leaves the stream going; `release(frame:)` frees by number, refuses a frame not
    /// held, and the latency comes from the frame as handed out, not from what the caller passes.
    func testWaitForCreditIsBoundedByItsOwnTimeoutAndReleaseByNumber() throws {
        let (r, s) = try pair(receiver: receiverOptions(slots: 4), sender: senderOptions())
        defer {
            r.close()
            s.close()
        }
        for f in 0..<4 as Range<UInt64> { try s.send(length: 8) { Self.pattern(f, $0) } }
        var held: [FrameReceiver.Frame] = []
        for _ in 0..<4 { held.append(try XCTUnwrap(try r.next(timeout: .seconds(5)))) }
        let start = ContinuousClock.now
        XCTAssertThrowsError(try s.waitForCredit(timeout: .milliseconds(200))) { error in
            guard case .timedOut = error as? FrameStream.FrameError else { return XCTFail("\(error)") }
        }
        let waited = ContinuousClock.now - start
        XCTAssertGreaterThanOrEqual(waited, .milliseconds(200))
        XCTAssertLessThan(waited, .seconds(5))
        var forged = held[0]
        forged.sentAtNanoseconds = 0  // 1970: a latency of 56 years if it were believed
        try r.release(forged)
        XCTAssertLessThan(r.statistics.latency.max, 60_000_000_000)
        for f in held.dropFirst() { try r.release(frame: f.number) }
        XCTAssertThrowsError(try r.release(frame: 0)) { XCTAssertEqual($0 as? FrameStream.FrameError, .notHeld(frame: 0)) }
        XCTAssertEqual(r.statistics.released, 4)
        XCTAssertNil(try r.poll())  // nothing waits: the credit goes back
        try s.waitForCredit(timeout: .seconds(5))
        XCTAssertEqual(try s.send(length: 8) { Self.pattern(4, $0) }, 4)
    }

    /// The receiver goes away mid-stream (its link goes down): the sender gets a typed error, not a hang.
    func testAReceiverThatDiesGivesTheSenderATypedError() throws {
        let listener = InMemoryListener()
        let died = DispatchSemaphore(value: 0)
        _ = try run(listener, receiver: receiverOptions(slots: 4), sender: senderOptions(timeout: .seconds(3)), consume: { r in
            for _ in 0..<2 { if let f = try r.next() { try r.release(f) } }
            listener.links.last?.inject(.disconnect)
            died.signal()
            return 0
        }, produce: { s in
            let start = ContinuousClock.now
            var failure: FrameStream.FrameError?
            for f in 0..<100 as Range<UInt64> {
                if f == 4 { _ = died.wait(timeout: .now() + 10) }
                do throws(FrameStream.FrameError) { try s.send(length: 8) { Self.pattern(f, $0) } } catch { failure = error; break }
            }
            guard case .peerLost? = failure else { return XCTFail("expected peerLost, got \(String(describing: failure))") }
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(4))
        })
    }

    /// A frame larger than the stream's frame size is refused with a typed error; the stream goes on.
    func testAFrameTooLargeIsRefusedAndTheStreamGoesOn() throws {
        let listener = InMemoryListener()
        let numbers = try run(listener, receiver: receiverOptions(), sender: senderOptions(frameSize: 64), consume: { r in
            var numbers: [UInt64] = []
            while let f = try r.next() {
                numbers.append(f.number)
                try r.release(f)
            }
            return numbers
        }, produce: { s in
            try s.send(length: 64) { Self.pattern(0, $0) }
            XCTAssertThrowsError(try s.send(length: 65) { _ in }) {
                XCTAssertEqual($0 as? FrameStream.FrameError, .frameTooLarge(size: 65, limit: 64))
            }
            try s.send(length: 1) { Self.pattern(1, $0) }
            _ = try s.finish()
        })
        XCTAssertEqual(numbers, [0, 1])
    }

    func testSettingsThatCannotRunAreRefusedBeforeConnecting() throws {
        let listener = InMemoryListener()
        var zero = receiverOptions()
        zero.slots = 0
        XCTAssertThrowsError(try FrameReceiver.accept(acceptor: Acceptor(listener: listener), options: zero, wait: .milliseconds(10))) {
            guard case .invalidOptions = $0 as? FrameStream.FrameError else { return XCTFail("\($0)") }
        }
        var o = senderOptions()
        o.frameSize = 0
        XCTAssertThrowsError(try FrameSender.connect(dialer: Dialer(listener: listener), options: o)) {
            guard case .invalidOptions = $0 as? FrameStream.FrameError else { return XCTFail("\($0)") }
        }
    }

    /// A sender whose frames do not fit the receiver's slots is refused with the reason; the
    /// receiver takes the next sender.
    func testASenderWhoseFramesDoNotFitIsRefusedWithTheReason() throws {
        let listener = InMemoryListener()
        let result = Locked<Result<UInt64, FrameStream.FrameError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let got = Result { () throws(FrameStream.FrameError) -> UInt64 in
                var o = FrameReceiver.Options()
                o.slots = 4
                o.slotSize = 128
                let r = try FrameReceiver.accept(acceptor: Acceptor(listener: listener), options: o, wait: .seconds(10))
                defer { r.close() }
                var n: UInt64 = 0
                while let f = try r.next() { n += 1; try r.release(f) }
                return n
            }
            result.withLock { $0 = got }
            done.signal()
        }
        XCTAssertThrowsError(try FrameSender.connect(dialer: Dialer(listener: listener), options: senderOptions(frameSize: 129))) { error in
            guard case let .rejected(why)? = error as? FrameStream.FrameError else { return XCTFail("\(error)") }
            XCTAssertTrue(why.contains("129-byte frames"), why)
        }
        let s = try FrameSender.connect(dialer: Dialer(listener: listener), options: senderOptions(frameSize: 128))
        try s.send(length: 128) { Self.pattern(0, $0) }
        _ = try s.finish()
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(try result.withLock { $0 }?.get(), 1)
    }

    /// A dialer that finds nothing listening (rdmacm's reject with reason 8, as for a port nobody
    /// listens on) for its first `absent` dials, then reaches `listener`.
    final class LateDialer: StreamDialer, @unchecked Sendable {  // used from the test's thread only
        let listener: InMemoryListener
        let absent: Int
        var dials = 0
        init(listener: InMemoryListener, absent: Int) {
            self.listener = listener
            self.absent = absent
        }
        var peerName: String { "in-memory, late" }
        func dial(hello: [UInt8], sendDepth: Int, receiveDepth: Int, timeout: Duration) throws(VerbsError)
            -> (endpoint: any ConnectedEndpoint, answer: [UInt8]) {
            dials += 1
            if dials <= absent {
                throw .connection(ConnectionFailure(reason: .rejected, event: "RDMA_CM_EVENT_REJECTED", status: 8, privateData: []))
            }
            return try Dialer(listener: listener).dial(hello: hello, sendDepth: sendDepth, receiveDepth: receiveDepth, timeout: timeout)
        }
    }

    /// A receiver not yet listening: the sender tries again while `connectRetry` lasts and then
    /// streams; without it, or once it has run out, the first refusal ends the connect.
    func testTheConnectIsRetriedWhileNoReceiverListensYet() throws {
        let listener = InMemoryListener()
        var o = senderOptions()
        // No retry: the first "no listener" ends it, typed.
        let once = LateDialer(listener: listener, absent: 1)
        XCTAssertThrowsError(try FrameSender.connect(dialer: once, options: o)) {
            guard case .rejected? = $0 as? FrameStream.FrameError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(once.dials, 1)
        // A retry shorter than the absence: it gives up when it runs out, not before, not after.
        o.connectRetry = .milliseconds(600)
        let short = LateDialer(listener: listener, absent: 100)
        let start = ContinuousClock.now
        XCTAssertThrowsError(try FrameSender.connect(dialer: short, options: o)) {
            guard case .rejected? = $0 as? FrameStream.FrameError else { return XCTFail("\($0)") }
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(600))
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3))
        XCTAssertTrue((2...4).contains(short.dials), "\(short.dials) dials in 600 ms, one every 250 ms")
        // Long enough: the third dial finds the receiver and the stream runs.
        o.connectRetry = .seconds(10)
        let late = LateDialer(listener: listener, absent: 2)
        let numbers = try run(listener, receiver: receiverOptions(), sender: o, dialer: late, consume: { r in
            var numbers: [UInt64] = []
            while let f = try r.next() { numbers.append(f.number); try r.release(f) }
            return numbers
        }, produce: { s in
            for f in 0..<3 as Range<UInt64> { try s.send(length: 8) { Self.pattern(f, $0) } }
            _ = try s.finish()
        })
        XCTAssertEqual(late.dials, 3)
        XCTAssertEqual(numbers, [0, 1, 2])
    }

    /// A hostile sender: a write-with-immediate naming a slot outside the ring. The receiver ends
    /// the stream with `.slotOutOfRange`.
    func testAnImmediateOutOfRangeEndsTheStreamWithATypedError() throws {
        let error = try hostileSender { endpoint, ring, headerRegion in
            try endpoint.postSend(SendRequest(id: 1, operation: .writeWithImmediate(ring.ring, offset: 0, immediate: 40 << 16), segment: nil))
            _ = headerRegion
        }
        XCTAssertEqual(error, .slotOutOfRange(slot: 40, slots: 4))
    }

    /// A hostile sender writing frame 0 with a header that names another frame.
    func testAHeaderNamingAnotherFrameEndsTheStream() throws {
        let error = try hostileSender { endpoint, ring, staging in
            FrameWire.encode(.init(frame: 3, sentAtNanoseconds: 0, length: 0, checksum: nil), into: staging.bytes!.baseAddress!)
            try endpoint.postSend(SendRequest(id: 1, operation: .write(ring.headers, offset: 0), segment: try staging.segment(offset: 0, length: 32)))
            try endpoint.postSend(SendRequest(id: 2, operation: .writeWithImmediate(ring.ring, offset: 0, immediate: 0), segment: nil))
        }
        guard case .protocolError = error else { return XCTFail("\(error)") }
    }

    /// A sender whose frame 5 carries a false checksum (`Options.falseChecksums`): the receiver's
    /// CPU check on arrival ends the stream with `.corrupted(frame: 5)`; frames 0 to 4 came through.
    func testAFalseChecksumEndsTheStreamWhereTheCPUChecks() throws {
        var so = senderOptions()
        so.falseChecksums = [5]
        let (r, s) = try pair(receiver: receiverOptions(), sender: so)
        var taken: [UInt64] = []
        for f in 0..<UInt64(5) { try s.send(length: 200) { Self.pattern(f, $0) } }
        while taken.count < 5, let frame = try r.next(timeout: .seconds(5)) {
            taken.append(frame.number)
            try r.release(frame)
        }
        XCTAssertEqual(taken, [0, 1, 2, 3, 4])
        for f in 5..<UInt64(7) { try s.send(length: 200) { Self.pattern(f, $0) } }
        XCTAssertThrowsError(try r.next(timeout: .seconds(5))) { error in
            XCTAssertEqual(error as? FrameStream.FrameError, .corrupted(frame: 5))
        }
        s.close()
    }

    /// Connects by hand as a sender, hands over a credit descriptor, lets `attack` post what it
    /// likes, and returns the error the receiver's `next` ends with.
    private func hostileSender(_ attack: (InMemoryEndpoint, FrameWire.RingDescriptor, MemoryRegion) throws -> Void) throws -> FrameStream.FrameError {
        let listener = InMemoryListener()
        let result = Locked<FrameStream.FrameError?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            do {
                var o = FrameReceiver.Options()
                o.slots = 4
                o.slotSize = 64
                o.timeout = .seconds(5)
                let r = try FrameReceiver.accept(acceptor: Acceptor(listener: listener), options: o, wait: .seconds(10))
                while let f = try r.next() { try r.release(f) }
            } catch let e as FrameStream.FrameError {
                result.withLock { $0 = e }
            } catch {}
            done.signal()
        }
        let hello = FrameWire.Hello(frameSize: 64, maxSlots: 16)
        let (endpoint, answerBytes) = try listener.dial(privateData: FrameWire.encode(hello), timeout: .seconds(5))
        let answer = try FrameWire.decodeAnswer(answerBytes, for: hello)
        let memory = try endpoint.pd.register(HostBuffer(count: 4096), access: [.localWrite, .remoteWrite])
        try endpoint.postReceive(id: 0, segment: try memory.segment(offset: 1024, length: 64))
        let descriptor = FrameWire.encodeDescriptor(RemoteBuffer(address: memory.address, length: 8, rkey: memory.rkey))
        UnsafeMutableRawBufferPointer(rebasing: memory.bytes![2048..<2048 + descriptor.count]).copyBytes(from: descriptor)
        try endpoint.postSend(SendRequest(id: 0, operation: .send, segment: try memory.segment(offset: 2048, length: descriptor.count)))
        let wc = try XCTUnwrap(try endpoint.waitReceiveCompletions(timeout: .seconds(5), mode: .busyPoll, max: 1).first)
        let ring = try FrameWire.decodeRing(UnsafeRawBufferPointer(rebasing: memory.bytes![1024..<1024 + Int(wc.byteCount)]), for: answer)
        try attack(endpoint, ring, memory)
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        return try XCTUnwrap(result.withLock { $0 })
    }

    /// A hostile receiver that grants more credit than frames were sent: the sender ends the
    /// stream with `.badCredit`.
    func testACreditBeyondWhatWasSentEndsTheStream() throws {
        let listener = InMemoryListener()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            defer { done.signal() }
            guard let request = listener.take(wait: .seconds(10)) else { return }
            let endpoint = request.endpoint
            do {
                let ringMemory = try endpoint.pd.register(HostBuffer(count: 8192), access: .remote)
                let control = try endpoint.pd.register(HostBuffer(count: 4096), access: .remote)
                try endpoint.postReceive(id: 0, segment: try control.segment(offset: 1024, length: 64))
                for id in 1...8 as ClosedRange<UInt64> { try endpoint.postReceive(id: id, segment: nil) }
                _ = try request.accept(answer: FrameWire.encode(FrameWire.Answer(slots: 4, slotSize: 64)), timeout: .seconds(5))
                let ring = FrameWire.RingDescriptor(ring: ringMemory.remoteBuffer,
                                                    headers: RemoteBuffer(address: ringMemory.address + 4096, length: 128, rkey: ringMemory.rkey))
                let bytes = FrameWire.encode(ring)
                UnsafeMutableRawBufferPointer(rebasing: control.bytes![2048..<2048 + bytes.count]).copyBytes(from: bytes)
                try endpoint.postSend(SendRequest(id: 0, operation: .send, segment: try control.segment(offset: 2048, length: bytes.count)))
                let wc = try endpoint.waitReceiveCompletions(timeout: .seconds(5), mode: .busyPoll, max: 1)[0]
                let credit = try FrameWire.decodeDescriptor(UnsafeRawBufferPointer(rebasing: control.bytes![1024..<1024 + Int(wc.byteCount)]))
                // One frame arrives; grant a thousand.
                _ = try endpoint.waitReceiveCompletions(timeout: .seconds(5), mode: .busyPoll, max: 1)
                control.bytes!.storeBytes(of: UInt64(1000).littleEndian, as: UInt64.self)
                try endpoint.postSend(SendRequest(id: 1, operation: .write(credit, offset: 0), segment: try control.segment(offset: 0, length: 8)))
                _ = try endpoint.waitSendCompletions(timeout: .seconds(5), mode: .busyPoll, max: 4)
                usleep(500_000)
            } catch {}
        }
        let s = try FrameSender.connect(dialer: Dialer(listener: listener), options: senderOptions(frameSize: 64, timeout: .seconds(5)))
        try s.send(length: 8) { Self.pattern(0, $0) }
        var failure: FrameStream.FrameError?
        for f in 1..<5000 as Range<UInt64> {
            do throws(FrameStream.FrameError) { try s.send(length: 8) { Self.pattern(f, $0) } } catch { failure = error; break }
            usleep(100)
        }
        guard case let .badCredit(granted, _, _)? = failure else { return XCTFail("expected badCredit, got \(String(describing: failure))") }
        XCTAssertEqual(granted, 1000)
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
    }

    /// After a clean stream and both ends gone, the link holds nothing: no region, no receive, no completion.
    func testACleanStreamLeavesNothingBehind() throws {
        let listener = InMemoryListener()
        _ = try run(listener, receiver: receiverOptions(), sender: senderOptions(), consume: { r in
            while let f = try r.next() { try r.release(f) }
            return 0
        }, produce: { s in
            for f in 0..<50 as Range<UInt64> { try s.send(length: 32) { Self.pattern(f, $0) } }
            _ = try s.finish()
        })
        let left = try XCTUnwrap(listener.links.last).finish()
        XCTAssertEqual(left.a.registeredRegions, 0, "\(left)")
        XCTAssertEqual(left.b.registeredRegions, 0, "\(left)")
        XCTAssertEqual(left.a.pendingSends + left.b.pendingSends, 0, "\(left)")
    }
}
