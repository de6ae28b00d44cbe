#if canImport(Glibc)
import Glibc
#endif
import NumberedStream
import Verbs
import VulkanMemory

/// The receiving end of a frame stream: takes one sender from a `StreamAcceptor`, exposes its ring
/// of slots (memory the caller chooses, registered in the connection's protection domain) and
/// hands arrivals to the consumer in order under the policy. `next` gives the consumer a frame it
/// then holds, `release` gives the slot back, and the credit goes back to the sender in batches.
///
/// Not for use from several threads at once (a stream has one consumer).
public final class FrameReceiver {
    /// Registers `bytes` bytes of ring memory in `pd`, for remote write (and read, for the
    /// sender's read-after-write). Host memory by default; the CLI passes Vulkan memory.
    public typealias RingMemory = (_ pd: ProtectionDomain, _ bytes: Int) throws(FrameStream.FrameError) -> MemoryRegion

    public struct Options {
        public var slots = 16
        /// Bytes of a slot: the largest frame a sender may send.
        public var slotSize = 1 << 20
        public var policy: FrameStream.Policy = .block
        /// Drop-oldest: frames that may wait for the consumer (default: half the slots).
        public var readyLimit: Int?
        /// Frames released before a credit goes back (default: a quarter of the slots). A credit
        /// also goes back whenever the consumer finds nothing waiting, so a batch never stalls.
        public var creditBatch: Int?
        /// Bound on every wait: for a sender, for its descriptor, for a credit write.
        public var timeout: Duration = .seconds(10)
        /// Check each frame's checksum where the ring is host-visible.
        public var verifyChecksums = true
        /// Signalled to `frame + 1` when frame `frame` arrives, so GPU work waiting on it starts.
        public var timeline: TimelineSemaphore?
        /// The ring's memory.
        public var ringMemory: RingMemory = { (pd, bytes) throws(FrameStream.FrameError) in
            try FrameStream.FrameError.bridge { () throws(VerbsError) in try pd.register(try HostBuffer(count: bytes), access: .remote) }
        }
        public init() {}

        func validate() throws(FrameStream.FrameError) {
            try FrameStream.checkGeometry(slots: slots, frameSize: slotSize)
            if let b = creditBatch, b < 1 || b > slots { throw .invalidOptions("credit batch must be in 1...\(slots), got \(b)") }
        }
    }

    /// A frame the consumer holds: its bytes are `length` bytes at `offset` in `ring`.
    public struct Frame: Sendable, Equatable {
        public var number: UInt64
        public var slot: Int
        public var offset: Int
        public var length: Int
        public var sentAtNanoseconds: UInt64
        public var checksum: UInt64?
    }

    /// What the receiver saw; `latency` runs from the sender's timestamp to the consumer's release.
    public struct Statistics: Sendable, Equatable {
        public var arrived: UInt64 = 0
        public var delivered: UInt64 = 0
        public var dropped: UInt64 = 0
        public var released: UInt64 = 0
        public var bytes: UInt64 = 0
        public var creditWrites: UInt64 = 0
        public var latency = LatencyHistogram()
        public var seconds: Double = 0
    }

    public let options: Options
    /// The ring: slot `s` is `options.slotSize` bytes at `s * options.slotSize`.
    public let ring: MemoryRegion
    /// The sender's hello.
    public let hello: FrameWire.Hello
    public private(set) var statistics = Statistics()
    /// The sender said it is done and every frame arrived.
    public private(set) var ended = false
    let endpoint: any ConnectedEndpoint
    let headers: MemoryRegion
    /// The credit's source word (offset 0) and the credit descriptor's receive buffer (offset 64).
    let control: MemoryRegion
    private var state: FrameRing
    private var creditWord: RemoteBuffer?
    private var slotHeaders: [FrameWire.Header?]
    private var held: [UInt64: Frame] = [:]
    private var creditsInFlight = 0
    private var nextReceiveID: UInt64 = 0
    private var closed = false
    private let started = ContinuousClock.now

    static let descriptorID = UInt64(1) << 62
    static let creditID = UInt64(1) << 61
    static let descriptorSendID = descriptorID + 1
    static let maxCreditsInFlight = 16

    /// Takes one sender from `acceptor` within `wait`; a sender whose frames do not fit a slot, or
    /// whose queues do not take the ring's slots, is refused with its reason (and the wait goes on).
    public static func accept(acceptor: any StreamAcceptor, options: Options, wait: Duration) throws(FrameStream.FrameError) -> FrameReceiver {
        try options.validate()
        let deadline = ContinuousClock.now.advanced(by: wait)
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw .timedOut("waiting for a frame sender", after: wait) }
            var hello: FrameWire.Hello?
            let endpoint = try FrameStream.FrameError.bridge { () throws(VerbsError) in
                try acceptor.accept(wait: min(left, .seconds(1)), sendDepth: maxCreditsInFlight + 8, receiveDepth: options.slots + 8,
                                    timeout: options.timeout) { bytes in
                    let h: FrameWire.Hello
                    do { h = try FrameWire.decodeHello(bytes) } catch { return .reject(reason: "\(error)") }
                    guard h.frameSize <= options.slotSize else {
                        return .reject(reason: "\(h.frameSize)-byte frames do not fit \(options.slotSize)-byte slots")
                    }
                    guard options.slots <= h.maxSlots else {
                        return .reject(reason: "the ring has \(options.slots) slots, the sender takes \(h.maxSlots)")
                    }
                    hello = h
                    return .accept(answer: FrameWire.encode(FrameWire.Answer(slots: options.slots, slotSize: options.slotSize)))
                }
            }
            if let endpoint, let hello {
                do throws(FrameStream.FrameError) { return try FrameReceiver(endpoint: endpoint, hello: hello, options: options) } catch {
                    try? endpoint.disconnect(timeout: .milliseconds(500))
                    throw error
                }
            }
        }
    }

    private init(endpoint: any ConnectedEndpoint, hello: FrameWire.Hello, options: Options) throws(FrameStream.FrameError) {
        self.endpoint = endpoint
        self.hello = hello
        self.options = options
        state = try FrameRing(slots: options.slots, policy: options.policy, readyLimit: options.readyLimit)
        slotHeaders = Array(repeating: nil, count: options.slots)
        // Bounded by the receiver's own settings, whatever the sender asked: slots * slotSize.
        let ring = try options.ringMemory(endpoint.pd, options.slots * options.slotSize)
        self.ring = ring
        guard ring.length >= options.slots * options.slotSize, ring.access.contains(.remoteWrite) else {
            throw .invalidOptions("the ring memory must be \(options.slots * options.slotSize) bytes with remote write access")
        }
        (headers, control) = try FrameStream.FrameError.bridge { () throws(VerbsError) in
            let headers = try endpoint.pd.register(try HostBuffer(count: options.slots * FrameWire.headerSize), access: [.localWrite, .remoteWrite])
            let control = try endpoint.pd.register(try HostBuffer(count: 4096), access: .local)
            // The sender's credit descriptor comes first; then one receive per slot for arrivals, and the end.
            try endpoint.postReceive(id: Self.descriptorID, segment: try control.segment(offset: 64, length: 64))
            for id in 0..<UInt64(options.slots + 2) { try endpoint.postReceive(id: id, segment: nil) }
            let bytes = FrameWire.encode(FrameWire.RingDescriptor(ring: ring.remoteBuffer, headers: headers.remoteBuffer))
            UnsafeMutableRawBufferPointer(rebasing: control.bytes![128..<128 + bytes.count]).copyBytes(from: bytes)
            try endpoint.postSend(SendRequest(id: Self.descriptorSendID, operation: .send,
                                              segment: try control.segment(offset: 128, length: bytes.count)))
            return (headers, control)
        }
        creditsInFlight = 1  // the ring descriptor's send
        nextReceiveID = UInt64(options.slots + 2)
    }

    deinit { close() }

    private func postArrivalReceive(_ endpoint: any ConnectedEndpoint) throws(VerbsError) {
        try endpoint.postReceive(id: nextReceiveID, segment: nil)
        nextReceiveID = (nextReceiveID + 1) % Self.creditID
    }

    /// The bytes of `frame` where the ring is host-visible (nil for device-only memory).
    public func bytes(of frame: Frame) -> UnsafeRawBufferPointer? {
        guard let all = ring.bytes else { return nil }
        return UnsafeRawBufferPointer(rebasing: all[frame.offset..<frame.offset + frame.length])
    }

    /// The next frame for the consumer if one is there now, without waiting (nil: none yet, or
    /// the stream ended; see `ended`): for a consumer that polls once per iteration of its loop.
    public func poll() throws(FrameStream.FrameError) -> Frame? {
        try progress()
        if let frame = try takeNext() { return frame }
        try sendCredit(force: true)
        if ended, held.isEmpty { try flushCredits() }
        return nil
    }

    private func takeNext() throws(FrameStream.FrameError) -> Frame? {
        guard let taken = state.take() else { return nil }
        guard let header = slotHeaders[taken.slot] else { throw fail(.protocolError("frame \(taken.frame) has no header")) }
        let frame = Frame(number: taken.frame, slot: taken.slot, offset: taken.slot * options.slotSize, length: header.length,
                          sentAtNanoseconds: header.sentAtNanoseconds, checksum: header.checksum)
        held[frame.number] = frame
        statistics.delivered = state.delivered
        return frame
    }

    /// The next frame for the consumer, waiting up to `timeout` (default: the options'); nil once
    /// the sender ended the stream and nothing is left. The consumer holds the frame until `release`.
    public func next(timeout: Duration? = nil) throws(FrameStream.FrameError) -> Frame? {
        let limit = timeout ?? options.timeout
        let deadline = ContinuousClock.now.advanced(by: limit)
        var spins = 0
        while true {
            try progress()
            if let frame = try takeNext() { return frame }
            // Nothing waits: whatever was released goes back now, so the sender is never held up by a batch.
            try sendCredit(force: true)
            if ended {
                if held.isEmpty { try flushCredits() }
                return nil
            }
            // Every 256 turns while spinning, every turn once napping (a nap can take milliseconds in a busy guest).
            if spins & 255 == 255 || spins > 4096 {
                guard endpoint.processEvents() else { throw fail(.peerLost("the connection went down while waiting for a frame")) }
                if ContinuousClock.now >= deadline { throw FrameStream.FrameError.timedOut("waiting for a frame", after: limit) }
            }
            spins += 1
            if spins > 4096 { usleep(20) } else if spins > 64 { sched_yield() }
        }
    }

    /// Gives `frame`'s slot back; the credit goes to the sender once a batch is released. A frame
    /// the consumer does not hold is refused (`.notHeld`) and nothing changes.
    public func release(_ frame: Frame) throws(FrameStream.FrameError) {
        try release(frame: frame.number)
    }

    /// Gives the slot of frame number `number` back (as `release(_:)`); the latency is taken from
    /// the frame as it was handed out, whatever the caller kept of it.
    public func release(frame number: UInt64) throws(FrameStream.FrameError) {
        guard let frame = held.removeValue(forKey: number) else { throw .notHeld(frame: number) }
        try state.release(frame.number)
        let now = FrameStream.wallClockNanoseconds()
        statistics.latency.record(now >= frame.sentAtNanoseconds ? now - frame.sentAtNanoseconds : 0)
        statistics.released += 1
        try progress()
        try sendCredit(force: ended)
        if ended, held.isEmpty, state.waiting == 0 { try flushCredits() }
    }

    /// Disconnects (bounded); idempotent. Regions are released with the receiver.
    public func close() {
        guard !closed else { return }
        closed = true
        statistics.seconds = FrameSender.seconds(since: started)
        try? endpoint.disconnect(timeout: .milliseconds(500))
        _ = try? endpoint.pollSendCompletions(max: 1 << 16)
        _ = try? endpoint.pollReceiveCompletions(max: 1 << 16)
    }

    private func fail(_ error: FrameStream.FrameError) -> FrameStream.FrameError {
        close()
        return error
    }

    /// Takes the completions that are there: the credit descriptor, arrivals, the end, credit writes.
    private func progress() throws(FrameStream.FrameError) {
        guard !closed else { throw .peerLost("the stream is closed") }
        let sends = try FrameStream.FrameError.bridge { () throws(VerbsError) in try endpoint.pollSendCompletions(max: 64) }
        for wc in sends {
            guard wc.isSuccess else { throw fail(.peerLost("a credit write failed: \(wc.status)")) }
            creditsInFlight -= 1
        }
        let arrivals = try FrameStream.FrameError.bridge { () throws(VerbsError) in try endpoint.pollReceiveCompletions(max: 64) }
        for wc in arrivals {
            do { try take(wc) } catch { throw fail(error) }
        }
    }

    private func take(_ wc: WorkCompletion) throws(FrameStream.FrameError) {
        guard wc.isSuccess else { throw .peerLost("a receive completed with \(wc.status)") }
        if wc.workRequestID == Self.descriptorID {
            creditWord = try FrameWire.decodeDescriptor(UnsafeRawBufferPointer(rebasing: control.bytes![64..<64 + Int(min(wc.byteCount, 64))]))
            return
        }
        guard creditWord != nil else { throw .protocolError("an arrival before the sender's credit descriptor") }
        guard !ended else { throw .protocolError("an arrival after the end of the stream") }
        try FrameStream.FrameError.bridge { () throws(VerbsError) in try postArrivalReceive(endpoint) }
        guard let immediate = wc.immediate else { throw .protocolError("a message without an immediate") }
        if wc.opcode == .receiveWithImmediate {
            guard Int(wc.byteCount) <= options.slotSize else {
                throw .protocolError("a \(wc.byteCount)-byte write into a \(options.slotSize)-byte slot")
            }
            let expected = state.arrived
            // The immediate and the header are checked before the arrival is taken, so a bad one
            // leaves the ring as it was.
            let slot = try FrameWire.checkImmediate(immediate, expected: expected, slots: options.slots)
            let header = try FrameWire.decodeHeader(UnsafeRawBufferPointer(rebasing: headers.bytes![slot * FrameWire.headerSize..<(slot + 1) * FrameWire.headerSize]),
                                                    frame: expected, frameSize: options.slotSize)
            guard wc.byteCount == 0 || Int(wc.byteCount) == header.length else {
                throw .protocolError("frame \(expected): \(wc.byteCount) bytes written, the header says \(header.length)")
            }
            let (frame, _) = try state.arrive(immediate: immediate)
            if let sum = header.checksum, options.verifyChecksums, let all = ring.bytes {
                let bytes = UnsafeRawBufferPointer(rebasing: all[slot * options.slotSize..<slot * options.slotSize + header.length])
                guard FrameStream.checksum(bytes, frame: frame) == sum else { throw .corrupted(frame: frame) }
            }
            slotHeaders[slot] = header
            statistics.arrived = state.arrived
            statistics.dropped = state.dropped
            statistics.bytes += UInt64(header.length)
            if let timeline = options.timeline {
                // A value already reached is not signalled again (Vulkan forbids it): a GPU check
                // abandoned before its frame arrived signals the value it waited for.
                do { if try timeline.value() <= frame { try timeline.signal(frame + 1) } } catch { throw .vulkan(error) }
            }
        } else {
            guard wc.byteCount == 0, immediate == UInt32(truncatingIfNeeded: state.arrived) else {
                throw .protocolError("an end of stream at \(immediate) after \(state.arrived) frames (\(wc.byteCount) bytes)")
            }
            ended = true
        }
    }

    /// Writes the credit into the sender's credit word when a batch (or, `force`, any) was released.
    private func sendCredit(force: Bool) throws(FrameStream.FrameError) {
        guard let creditWord else { return }
        let deadline = ContinuousClock.now.advanced(by: options.timeout)
        while creditsInFlight >= Self.maxCreditsInFlight {
            try progress()
            if ContinuousClock.now >= deadline { throw fail(.timedOut("waiting for a credit write to complete", after: options.timeout)) }
        }
        guard let value = state.creditToSend(batch: options.creditBatch ?? max(1, options.slots / 4), force: force) else { return }
        control.bytes!.storeBytes(of: value.littleEndian, as: UInt64.self)
        try FrameStream.FrameError.bridge { () throws(VerbsError) in
            try endpoint.postSend(SendRequest(id: Self.creditID | (value & 0xFFFF_FFFF), operation: .write(creditWord, offset: 0),
                                              segment: try control.segment(offset: 0, length: 8), inline: endpoint.maxInlineData >= 8))
        }
        creditsInFlight += 1
        statistics.creditWrites += 1
    }

    /// Sends what is left of the credit and waits (bounded) until every credit write completed.
    private func flushCredits() throws(FrameStream.FrameError) {
        try sendCredit(force: true)
        let deadline = ContinuousClock.now.advanced(by: options.timeout)
        while creditsInFlight > 0 {
            try progress()
            if ContinuousClock.now >= deadline { throw FrameStream.FrameError.timedOut("waiting for the last credit write", after: options.timeout) }
            if creditsInFlight > 0 { usleep(20) }
        }
    }
}
