#if canImport(Glibc)
import Glibc
#endif
import NumberedStream
import Verbs

/// The sending end of a frame stream: connects through a `StreamDialer`, learns the receiver's
/// ring, and writes each frame into its slot when the credit allows, waiting (bounded by
/// `timeout`) while the receiver's consumer holds the slots. Frames are staged in the sender's own
/// registered memory (one staging slot per ring slot), so `send` returns once the frame is posted.
///
/// Not for use from several threads at once (a stream has one producer).
public final class FrameSender {
    public struct Options: Sendable {
        /// Bytes of the largest frame.
        public var frameSize = 1 << 20
        /// The most ring slots this sender takes (its send queue is sized for them).
        public var maxSlots = 256
        /// Bound on every wait: for credit, for a completion, for the receiver's descriptor.
        public var timeout: Duration = .seconds(10)
        public var visibility: FrameStream.Visibility = .none
        /// Checksum every frame (the receiver verifies it where its ring is host-visible).
        public var checksum = true
        /// Fault injection: these frames go out with a checksum that does not match their bytes
        /// (the right one with its lowest bit flipped), so a test sees the receiver catch them.
        public var falseChecksums: Set<UInt64> = []
        /// While nothing listens at the receiver's address yet (a receiver still starting), the
        /// connect is tried again every 250 ms for this long; any other failure ends it at once.
        public var connectRetry: Duration = .zero
        public init() {}

        /// Work requests one frame takes: header and payload, plus the read and the announcement.
        var requestsPerFrame: Int { visibility == .none ? 2 : 4 }
    }

    /// What the sender saw.
    public struct Summary: Sendable, Equatable, Codable {
        public var frames: UInt64 = 0
        public var bytes: UInt64 = 0
        /// Times `send` found no credit and had to wait for the receiver.
        public var creditWaits: UInt64 = 0
        public var seconds: Double = 0
    }

    public let options: Options
    public let slots: Int
    public let slotSize: Int
    public private(set) var summary = Summary()
    let endpoint: any ConnectedEndpoint
    let ring: FrameWire.RingDescriptor
    let staging: MemoryRegion
    let creditWord: MemoryRegion
    private var credit: FrameCredit
    /// Frames whose last work request completed (in order).
    private var completed: UInt64 = 0
    private var closed = false
    private let started = ContinuousClock.now
    private let headerArea: Int

    static let descriptorID = UInt64(1) << 62
    static let endID = descriptorID + 1

    /// Connects to the receiver `dialer` reaches and waits for its ring descriptor.
    public static func connect(dialer: any StreamDialer, options: Options) throws(FrameStream.FrameError) -> FrameSender {
        try FrameStream.checkGeometry(slots: options.maxSlots, frameSize: options.frameSize)
        let hello = FrameWire.Hello(frameSize: options.frameSize, maxSlots: options.maxSlots)
        let (endpoint, answerBytes): (any ConnectedEndpoint, [UInt8])
        let retryUntil = ContinuousClock.now.advanced(by: options.connectRetry)
        while true {
            do {
                (endpoint, answerBytes) = try dialer.dial(hello: FrameWire.encode(hello), sendDepth: options.requestsPerFrame * options.maxSlots + 8,
                                                          receiveDepth: 4, timeout: options.timeout)
                break
            } catch {
                if case let .connection(failure) = error, failure.isNoListener, ContinuousClock.now < retryUntil {
                    usleep(250_000)
                    continue
                }
                // Refused by the peer: with its reason, or (nothing listening there) the transport's.
                if case let .connection(failure) = error, failure.reason == .rejected { throw .rejected(failure.peerMessage ?? error.description) }
                throw FrameStream.FrameError(error)
            }
        }
        do throws(FrameStream.FrameError) {
            let answer = try FrameWire.decodeAnswer(answerBytes, for: hello)
            return try FrameSender(endpoint: endpoint, answer: answer, options: options)
        } catch {
            try? endpoint.disconnect(timeout: .seconds(1))
            throw error
        }
    }

    private init(endpoint: any ConnectedEndpoint, answer: FrameWire.Answer, options: Options) throws(FrameStream.FrameError) {
        self.endpoint = endpoint
        self.options = options
        slots = answer.slots
        slotSize = answer.slotSize
        credit = FrameCredit(slots: answer.slots)
        let headerArea = (answer.slots * FrameWire.headerSize + 4095) & ~4095
        self.headerArea = headerArea
        let (staging, creditWord, reply) = try FrameStream.FrameError.bridge { () throws(VerbsError) in
            // Local only: the receiver never reaches into the staged frames.
            let staging = try endpoint.pd.register(try HostBuffer(count: headerArea + answer.slots * options.frameSize), access: .local)
            // The credit word: the receiver writes it; 64 bytes, the descriptor's receive buffer after it.
            let creditWord = try endpoint.pd.register(try HostBuffer(count: 4096), access: [.localWrite, .remoteWrite])
            creditWord.bytes!.storeBytes(of: UInt64(0), as: UInt64.self)
            let reply = try creditWord.segment(offset: 64, length: 64)
            try endpoint.postReceive(id: Self.descriptorID, segment: reply)
            let descriptor = try creditWord.segment(offset: 128, length: FrameWire.descriptorSize)
            let bytes = FrameWire.encodeDescriptor(RemoteBuffer(address: creditWord.address, length: 8, rkey: creditWord.rkey))
            UnsafeMutableRawBufferPointer(rebasing: creditWord.bytes![128..<128 + bytes.count]).copyBytes(from: bytes)
            try endpoint.postSend(SendRequest(id: Self.descriptorID, operation: .send, segment: descriptor))
            return (staging, creditWord, reply)
        }
        self.staging = staging
        self.creditWord = creditWord
        // The receiver's ring descriptor, and the completion of our own descriptor.
        let deadline = ContinuousClock.now.advanced(by: options.timeout)
        var got: WorkCompletion?
        while got == nil {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw .timedOut("waiting for the receiver's ring descriptor", after: options.timeout) }
            got = try FrameStream.FrameError.bridge { () throws(VerbsError) in
                try endpoint.waitReceiveCompletions(timeout: left, mode: .busyPoll, max: 1).first
            }
        }
        guard let got, got.isSuccess, got.byteCount >= UInt32(FrameWire.ringDescriptorSize) else {
            throw .peerLost("the receiver's ring descriptor did not arrive (\(got.map { "\($0.status)" } ?? "nothing"))")
        }
        ring = try FrameWire.decodeRing(UnsafeRawBufferPointer(rebasing: creditWord.bytes![64..<64 + min(Int(got.byteCount), 64)]), for: answer)
        try drainSends(until: { self.descriptorSent })
        _ = reply
    }

    deinit { close() }

    private var descriptorSent = false

    /// Frames written and not yet released by the receiver.
    public var outstanding: UInt64 { credit.outstanding }

    /// Sends the frame `bytes` (at most `options.frameSize`); returns its number. Waits, up to the
    /// timeout, for credit. A frame that is too large is refused and the stream goes on.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer) throws(FrameStream.FrameError) -> UInt64 {
        try send(length: bytes.count) { slot in
            if let base = bytes.baseAddress, bytes.count > 0 { slot.baseAddress!.copyMemory(from: base, byteCount: bytes.count) }
        }
    }

    /// Sends a frame of `length` bytes that `fill` writes straight into its staging slot.
    @discardableResult
    public func send(length: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) throws(FrameStream.FrameError) -> UInt64 {
        guard !closed else { throw .peerLost("the stream is closed") }
        guard length >= 0, length <= options.frameSize else { throw .frameTooLarge(size: length, limit: options.frameSize) }
        try waitForCredit()
        let frame = credit.next()
        let slot = Int(frame % UInt64(slots))
        let payload = UnsafeMutableRawBufferPointer(rebasing: staging.bytes![headerArea + slot * options.frameSize..<headerArea + slot * options.frameSize + length])
        fill(payload)
        var sum = options.checksum ? FrameStream.checksum(UnsafeRawBufferPointer(payload), frame: frame) : nil
        if options.falseChecksums.contains(frame) { sum = sum.map { $0 ^ 1 } }
        FrameWire.encode(FrameWire.Header(frame: frame, sentAtNanoseconds: FrameStream.wallClockNanoseconds(), length: length, checksum: sum),
                         into: staging.bytes!.baseAddress! + slot * FrameWire.headerSize)
        let immediate = FrameWire.immediate(slot: slot, frame: frame)
        try FrameStream.FrameError.bridge { () throws(VerbsError) in
            let header = try staging.segment(offset: slot * FrameWire.headerSize, length: FrameWire.headerSize)
            try endpoint.postSend(SendRequest(id: frame, operation: .write(ring.headers, offset: UInt64(slot * FrameWire.headerSize)),
                                              segment: header, signaled: false, inline: endpoint.maxInlineData >= FrameWire.headerSize))
            let data = length > 0 ? try staging.segment(offset: headerArea + slot * options.frameSize, length: length) : nil
            let at = UInt64(slot) * UInt64(slotSize)
            switch options.visibility {
            case .none:
                try endpoint.postSend(SendRequest(id: frame, operation: .writeWithImmediate(ring.ring, offset: at, immediate: immediate), segment: data))
            case .readAfterWrite:
                try endpoint.postSend(SendRequest(id: frame, operation: .write(ring.ring, offset: at), segment: data, signaled: false))
                // One byte read back from the slot: the receiving NIC answers it only after the payload's writes.
                let probe = try creditWord.segment(offset: 256, length: 1)
                try endpoint.postSend(SendRequest(id: frame, operation: .read(ring.ring, offset: at), segment: probe, signaled: false))
                try endpoint.postSend(SendRequest(id: frame, operation: .writeWithImmediate(ring.ring, offset: at, immediate: immediate),
                                                  segment: nil, fence: true))
            }
        }
        summary.frames += 1
        summary.bytes += UInt64(length)
        return frame
    }

    /// Whether the next `send` can post at once (credit and a free staging slot), without waiting:
    /// for a producer that does other work meanwhile. Reads the credit word and the completions.
    public func ready() throws(FrameStream.FrameError) -> Bool {
        guard !closed else { throw .peerLost("the stream is closed") }
        try readCredit()
        try poll()
        return credit.canSend && credit.sent - completed < UInt64(slots)
    }

    /// Tells the receiver how many frames were sent, without waiting; `finish` then waits for it
    /// to release them. Idempotent.
    public func end() throws(FrameStream.FrameError) {
        guard !closed else { throw .peerLost("the stream is closed") }
        guard !endPosted else { return }
        let sent = credit.sent
        try FrameStream.FrameError.bridge { () throws(VerbsError) in
            try endpoint.postSend(SendRequest(id: Self.endID, operation: .sendWithImmediate(UInt32(truncatingIfNeeded: sent)), segment: nil))
        }
        endPosted = true
    }

    /// Ends the stream (`end`) and waits (up to the timeout) until the receiver has released
    /// every frame. Returns the summary; the connection is closed after.
    public func finish() throws(FrameStream.FrameError) -> Summary {
        try end()
        defer { close() }
        let sent = credit.sent
        try drainSends(until: { () throws(FrameStream.FrameError) in
            try self.readCredit()
            return self.endCompleted && self.credit.granted == sent
        }, what: "waiting for the receiver to release all \(sent) frames")
        summary.seconds = Self.seconds(since: started)
        return summary
    }

    /// Disconnects (bounded); outstanding frames are abandoned. Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        try? endpoint.disconnect(timeout: .milliseconds(500))
        _ = try? endpoint.pollSendCompletions(max: 1 << 16)
        _ = try? endpoint.pollReceiveCompletions(max: 1 << 16)
    }

    private var endCompleted = false
    private var endPosted = false

    private func readCredit() throws(FrameStream.FrameError) {
        let word = UInt64(littleEndian: creditWord.bytes!.baseAddress!.assumingMemoryBound(to: UInt64.self).pointee)
        do { try credit.update(word) } catch {
            close()
            throw error
        }
    }

    /// Waits until the next frame has credit and its staging slot is free again, up to `timeout`
    /// (default: the options'); `.timedOut` when the receiver gave none in time (the stream goes on),
    /// `.peerLost` when the link went down. A `send` after it posts without waiting.
    public func waitForCredit(timeout: Duration? = nil) throws(FrameStream.FrameError) {
        guard !closed else { throw .peerLost("the stream is closed") }
        try readCredit()
        try poll()
        let free = { self.credit.canSend && self.credit.sent - self.completed < UInt64(self.slots) }
        if free() { return }
        summary.creditWaits += 1
        try drainSends(until: { () throws(FrameStream.FrameError) in
            try self.readCredit()
            return free()
        }, what: "waiting for credit (\(credit.granted) of \(credit.sent) frames released by the receiver)", timeout: timeout)
    }

    /// Takes the send completions that are there; a failed one means the peer or the link is gone.
    private func poll() throws(FrameStream.FrameError) {
        let got = try FrameStream.FrameError.bridge { () throws(VerbsError) in try endpoint.pollSendCompletions(max: 64) }
        for wc in got {
            guard wc.isSuccess else {
                close()
                throw .peerLost("a work request failed: \(wc.status)")
            }
            switch wc.workRequestID {
            case Self.descriptorID: descriptorSent = true
            case Self.endID: endCompleted = true
            default: completed = max(completed, wc.workRequestID + 1)
            }
        }
    }

    /// Polls completions (and the link) until `done`, spinning briefly, then napping; bounded by the timeout.
    private func drainSends(until done: () throws(FrameStream.FrameError) -> Bool, what: String = "waiting for a completion",
                            timeout: Duration? = nil) throws(FrameStream.FrameError) {
        let limit = timeout ?? options.timeout
        let deadline = ContinuousClock.now.advanced(by: limit)
        var spins = 0
        while true {
            try poll()
            if try done() { return }
            // Every 256 turns while spinning, every turn once napping (a nap can take milliseconds in a busy guest).
            if spins & 255 == 255 || spins > 4096 {
                guard endpoint.processEvents() else {
                    close()
                    throw .peerLost("the connection went down while \(what)")
                }
                if ContinuousClock.now >= deadline { throw .timedOut(what, after: limit) }
            }
            spins += 1
            if spins > 4096 { usleep(20) } else if spins > 64 { sched_yield() }
        }
    }

    /// Seconds since `start`, for reports.
    public static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = (ContinuousClock.now - start).components
        return Double(d.seconds) + Double(d.attoseconds) / 1e18
    }
}

extension FrameStream {
    /// Nanoseconds of the wall clock (`CLOCK_REALTIME`): the sender's timestamp and the receiver's
    /// release are compared on it, so across hosts a latency is as good as their clock sync.
    public static func wallClockNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
