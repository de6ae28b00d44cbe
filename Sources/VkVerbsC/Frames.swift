// The frame streams of vkverbs.h (vkv_frame_receiver, vkv_frame_sender): FrameStream's receiver
// and sender behind handles. Every argument is checked before anything is allocated or connected,
// and an accept or connect that fails leaves no handle (and nothing registered) behind.
#if canImport(Glibc)
import Glibc
#endif
import CVulkan
import FrameStream
import NumberedStream
import Verbs
import VulkanMemory

private let table = HandleTable.shared

/// vkv_frame_receiver: one sender's stream into a ring of slots. Calls are serialized by `lock`
/// (a FrameReceiver has one consumer); `receiver` is nil once closed.
final class FrameReceiverObject {
    let lock = Lock()
    var receiver: FrameReceiver?
    /// The Vulkan ring (nil for host memory) and the application's Vulkan objects it lives on.
    let vulkanRing: VulkanFrameRing?
    let vulkan: VulkanObject?
    let timeline: TimelineSemaphore?
    let started = ContinuousClock.now

    init(receiver: FrameReceiver, vulkanRing: VulkanFrameRing?, vulkan: VulkanObject?, timeline: TimelineSemaphore?) {
        self.receiver = receiver
        self.vulkanRing = vulkanRing
        self.vulkan = vulkan
        self.timeline = timeline
    }

    func open(_ function: String) throws -> FrameReceiver {
        guard let receiver else { throw APIError(.disconnected, "\(function): the stream is closed") }
        return receiver
    }

    deinit { receiver?.close() }
}

/// vkv_frame_sender: the sending end; calls serialized by `lock`.
final class FrameSenderObject {
    let lock = Lock()
    let sender: FrameSender

    init(sender: FrameSender) { self.sender = sender }

    deinit { sender.close() }
}

// MARK: Constants (must match vkverbs.h)

private let receiverVerifyChecksums: UInt32 = 1
private let senderReadAfterWrite: UInt32 = 1, senderNoChecksum: UInt32 = 2
private let policies: [UInt32: FrameStream.Policy] = [0: .block, 1: .dropOldest, 2: .latestWins]
private let strategyHost: Int32 = 6
/// vkv_frame_receiver_next's *state.
private let frameNone: Int32 = 0, frameReady: Int32 = 1, frameEnded: Int32 = 2

/// struct vkv_frame_receiver_options (32 bytes): slot_size u64 @0, slots u32 @8, policy u32 @12,
/// ready_limit u32 @16, credit_batch u32 @20, flags u32 @24, timeout_ms i32 @28.
private func receiverOptions(_ raw: UnsafeRawPointer?) throws -> FrameReceiver.Options {
    guard let raw else { throw APIError(.invalidArgument, "options is NULL") }
    let slotSize = raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
    let slots = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
    let policy = raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
    let readyLimit = raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
    let creditBatch = raw.loadUnaligned(fromByteOffset: 20, as: UInt32.self)
    let flags = raw.loadUnaligned(fromByteOffset: 24, as: UInt32.self)
    let timeout = raw.loadUnaligned(fromByteOffset: 28, as: Int32.self)
    guard slots >= 1, slots <= UInt32(FrameStream.maxSlots) else {
        throw APIError(.invalidArgument, "options->slots must be 1 to \(FrameStream.maxSlots), got \(slots)")
    }
    guard slotSize >= 1, slotSize <= UInt64(FrameStream.maxFrameSize) else {
        throw APIError(.invalidArgument, "options->slot_size must be 1 to \(FrameStream.maxFrameSize) bytes, got \(slotSize)")
    }
    guard let p = policies[policy] else {
        throw APIError(.invalidArgument, "options->policy \(policy) is not a vkv_frame_policy")
    }
    guard readyLimit <= slots else { throw APIError(.invalidArgument, "options->ready_limit \(readyLimit) exceeds the \(slots) slots") }
    guard creditBatch <= slots else { throw APIError(.invalidArgument, "options->credit_batch \(creditBatch) exceeds the \(slots) slots") }
    guard flags & ~receiverVerifyChecksums == 0 else {
        throw APIError(.invalidArgument, "options->flags: unknown bits 0x\(String(flags, radix: 16))")
    }
    guard timeout != 0 else { throw APIError(.invalidArgument, "options->timeout_ms is 0 (every wait needs a bound; < 0: none)") }
    var options = FrameReceiver.Options()
    options.slots = Int(slots)
    options.slotSize = Int(slotSize)
    options.policy = p
    options.readyLimit = readyLimit == 0 ? nil : Int(readyLimit)
    options.creditBatch = creditBatch == 0 ? nil : Int(creditBatch)
    options.verifyChecksums = flags & receiverVerifyChecksums != 0
    options.timeout = duration(milliseconds: timeout)
    return options
}

// MARK: Receiver

@_cdecl("vkv_frame_receiver_accept")
public func vkv_frame_receiver_accept(
    _ listener: OpaquePointer?, _ optionsPointer: UnsafeRawPointer?, _ vulkan: OpaquePointer?, _ strategy: Int32,
    _ timeline: VkSemaphore?, _ waitMilliseconds: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guarded("vkv_frame_receiver_accept") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        var options = try receiverOptions(optionsPointer)
        // The ring's memory: host memory without a vkv_vulkan, else Vulkan memory of the strategy asked for.
        var vk: VulkanObject?
        var ring: VulkanFrameRing?
        var semaphore: TimelineSemaphore?
        if vulkan == nil {
            guard strategy == strategyHost else {
                throw APIError(.invalidArgument, "strategy \(strategy) needs a vkv_vulkan; without one the ring is host memory (VKV_STRATEGY_HOST)")
            }
            guard timeline == nil else { throw APIError(.invalidArgument, "a timeline semaphore needs the vkv_vulkan of its device") }
        } else {
            let object = try table.lookup(vulkan, .vulkan, as: VulkanObject.self, name: "vulkan")
            let wanted: MemoryStrategy?
            if strategy == 0 {
                wanted = nil
            } else {
                guard let s = vkvStrategies[strategy] else {
                    throw APIError(.invalidArgument, "unknown strategy \(strategy) (VKV_STRATEGY_AUTO..VKV_STRATEGY_STAGED with a vkv_vulkan)")
                }
                wanted = s
            }
            let r = VulkanFrameRing(device: object.device, strategy: wanted)
            options.ringMemory = r.memory
            if let timeline {
                semaphore = try TimelineSemaphore(borrowing: timeline, device: object.device)
                options.timeline = semaphore
            }
            vk = object
            ring = r
        }
        let l = try table.lookup(listener, .listener, as: ListenerObject.self, name: "listener")
        let receiver = try l.lock.withLock {
            try FrameReceiver.accept(acceptor: RDMAStreamAcceptor(listener: l.listener), options: options,
                                     wait: duration(milliseconds: waitMilliseconds))
        }
        out.pointee = table.insert(FrameReceiverObject(receiver: receiver, vulkanRing: ring, vulkan: vk, timeline: semaphore),
                                   .frameReceiver)
    }
}

@_cdecl("vkv_frame_receiver_ring")
public func vkv_frame_receiver_ring(
    _ receiver: OpaquePointer?, _ strategy: UnsafeMutablePointer<Int32>?, _ hostPointer: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    _ buffer: UnsafeMutablePointer<VkBuffer?>?, _ staging: UnsafeMutablePointer<VkBuffer?>?
) -> Int32 {
    guarded("vkv_frame_receiver_ring") {
        let r = try table.lookup(receiver, .frameReceiver, as: FrameReceiverObject.self, name: "receiver")
        guard strategy != nil || hostPointer != nil || buffer != nil || staging != nil else {
            throw APIError(.invalidArgument, "strategy, host_pointer, buffer and staging_buffer are all NULL")
        }
        try r.lock.withLock {
            let fr = try r.open("vkv_frame_receiver_ring")
            let allocation = r.vulkanRing?.allocation
            strategy?.pointee = allocation.flatMap { a in vkvStrategies.first { $0.value == a.strategy }?.key } ?? strategyHost
            hostPointer?.pointee = fr.ring.bytes?.baseAddress
            buffer?.pointee = allocation?.buffer.raw
            staging?.pointee = allocation?.staging?.raw
        }
    }
}

/// Fills a struct vkv_frame (56 bytes: number, offset, length, sent_at_ns, checksum u64; slot,
/// has_checksum u32; data pointer).
private func fill(_ out: UnsafeMutableRawPointer, _ frame: FrameReceiver.Frame, data: UnsafeMutableRawPointer?) {
    out.storeBytes(of: frame.number, toByteOffset: 0, as: UInt64.self)
    out.storeBytes(of: UInt64(frame.offset), toByteOffset: 8, as: UInt64.self)
    out.storeBytes(of: UInt64(frame.length), toByteOffset: 16, as: UInt64.self)
    out.storeBytes(of: frame.sentAtNanoseconds, toByteOffset: 24, as: UInt64.self)
    out.storeBytes(of: frame.checksum ?? 0, toByteOffset: 32, as: UInt64.self)
    out.storeBytes(of: UInt32(frame.slot), toByteOffset: 40, as: UInt32.self)
    out.storeBytes(of: frame.checksum == nil ? 0 : 1, toByteOffset: 44, as: UInt32.self)
    out.storeBytes(of: data, toByteOffset: 48, as: UnsafeMutableRawPointer?.self)
}

@_cdecl("vkv_frame_receiver_next")
public func vkv_frame_receiver_next(
    _ receiver: OpaquePointer?, _ timeoutMilliseconds: Int32, _ frame: UnsafeMutableRawPointer?, _ state: UnsafeMutablePointer<Int32>?
) -> Int32 {
    guarded("vkv_frame_receiver_next") {
        let state = try requireOut(state, "state")
        state.pointee = frameNone
        guard let frame else { throw APIError(.invalidArgument, "frame is NULL") }
        memset(frame, 0, 56)
        let r = try table.lookup(receiver, .frameReceiver, as: FrameReceiverObject.self, name: "receiver")
        try r.lock.withLock {
            let fr = try r.open("vkv_frame_receiver_next")
            let got = timeoutMilliseconds == 0 ? try fr.poll() : try fr.next(timeout: duration(milliseconds: timeoutMilliseconds))
            if let got {
                fill(frame, got, data: fr.ring.bytes.map { $0.baseAddress! + got.offset })
                state.pointee = frameReady
            } else if fr.ended {
                state.pointee = frameEnded
            }
        }
    }
}

@_cdecl("vkv_frame_receiver_release")
public func vkv_frame_receiver_release(_ receiver: OpaquePointer?, _ number: UInt64) -> Int32 {
    guarded("vkv_frame_receiver_release") {
        let r = try table.lookup(receiver, .frameReceiver, as: FrameReceiverObject.self, name: "receiver")
        try r.lock.withLock { try r.open("vkv_frame_receiver_release").release(frame: number) }
    }
}

/// Fills a struct vkv_frame_statistics (96 bytes: 11 u64, then seconds as a double).
@_cdecl("vkv_frame_receiver_statistics")
public func vkv_frame_receiver_statistics(_ receiver: OpaquePointer?, _ out: UnsafeMutableRawPointer?) -> Int32 {
    guarded("vkv_frame_receiver_statistics") {
        guard let out else { throw APIError(.invalidArgument, "statistics is NULL") }
        memset(out, 0, 96)
        let r = try table.lookup(receiver, .frameReceiver, as: FrameReceiverObject.self, name: "receiver")
        try r.lock.withLock {
            let s = try r.open("vkv_frame_receiver_statistics").statistics
            let values: [UInt64] = [s.arrived, s.delivered, s.dropped, s.released, s.bytes, s.creditWrites, s.latency.count,
                                    s.latency.percentile(0.5), s.latency.percentile(0.99), s.latency.percentile(0.999), s.latency.max]
            for (i, v) in values.enumerated() { out.storeBytes(of: v, toByteOffset: i * 8, as: UInt64.self) }
            out.storeBytes(of: FrameSender.seconds(since: r.started), toByteOffset: 88, as: Double.self)
        }
    }
}

@_cdecl("vkv_frame_receiver_latency_percentile")
public func vkv_frame_receiver_latency_percentile(_ receiver: OpaquePointer?, _ fraction: Double, _ nanoseconds: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_frame_receiver_latency_percentile") {
        let out = try requireOut(nanoseconds, "nanoseconds")
        out.pointee = 0
        guard fraction >= 0, fraction <= 1 else { throw APIError(.invalidArgument, "fraction \(fraction) is not in [0, 1]") }
        let r = try table.lookup(receiver, .frameReceiver, as: FrameReceiverObject.self, name: "receiver")
        try r.lock.withLock { out.pointee = try r.open("vkv_frame_receiver_latency_percentile").statistics.latency.percentile(fraction) }
    }
}

@_cdecl("vkv_frame_receiver_close")
public func vkv_frame_receiver_close(_ receiver: OpaquePointer?) -> Int32 {
    guarded("vkv_frame_receiver_close") {
        let r = try table.remove(receiver, .frameReceiver, as: FrameReceiverObject.self, name: "receiver")
        // After a call on another thread; the receiver (and its registrations) go before the ring's memory.
        r.lock.withLock {
            r.receiver?.close()
            r.receiver = nil
        }
    }
}

// MARK: Sender

@_cdecl("vkv_frame_sender_connect")
public func vkv_frame_sender_connect(
    _ host: UnsafePointer<CChar>?, _ port: UInt16, _ frameSize: UInt64, _ maxSlots: UInt32, _ flags: UInt32,
    _ timeoutMilliseconds: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guarded("vkv_frame_sender_connect") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        guard let host else { throw APIError(.invalidArgument, "host is NULL") }
        guard port != 0 else { throw APIError(.invalidArgument, "port 0") }
        guard frameSize >= 1, frameSize <= UInt64(FrameStream.maxFrameSize) else {
            throw APIError(.invalidArgument, "frame_size must be 1 to \(FrameStream.maxFrameSize) bytes, got \(frameSize)")
        }
        guard maxSlots >= 1, maxSlots <= UInt32(FrameStream.maxSlots) else {
            throw APIError(.invalidArgument, "max_slots must be 1 to \(FrameStream.maxSlots), got \(maxSlots)")
        }
        guard flags & ~(senderReadAfterWrite | senderNoChecksum) == 0 else {
            throw APIError(.invalidArgument, "unknown flags 0x\(String(flags, radix: 16))")
        }
        guard timeoutMilliseconds != 0 else { throw APIError(.invalidArgument, "timeout_ms is 0 (every wait needs a bound; < 0: none)") }
        var options = FrameSender.Options()
        options.frameSize = Int(frameSize)
        options.maxSlots = Int(maxSlots)
        options.timeout = duration(milliseconds: timeoutMilliseconds)
        options.visibility = flags & senderReadAfterWrite != 0 ? .readAfterWrite : .none
        options.checksum = flags & senderNoChecksum == 0
        let sender: FrameSender
        do {
            sender = try FrameSender.connect(dialer: RDMAStreamDialer(host: String(cString: host), port: port), options: options)
        } catch FrameStream.FrameError.peerLost(let why) {
            // While connecting, a lost peer is a connection that could not be set up.
            throw APIError(.connection, why)
        }
        out.pointee = table.insert(FrameSenderObject(sender: sender), .frameSender)
    }
}

@_cdecl("vkv_frame_sender_geometry")
public func vkv_frame_sender_geometry(_ sender: OpaquePointer?, _ slots: UnsafeMutablePointer<UInt32>?, _ slotSize: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_frame_sender_geometry") {
        let s = try table.lookup(sender, .frameSender, as: FrameSenderObject.self, name: "sender")
        guard slots != nil || slotSize != nil else { throw APIError(.invalidArgument, "slots and slot_size are both NULL") }
        slots?.pointee = UInt32(s.sender.slots)
        slotSize?.pointee = UInt64(s.sender.slotSize)
    }
}

@_cdecl("vkv_frame_sender_wait_credit")
public func vkv_frame_sender_wait_credit(_ sender: OpaquePointer?, _ timeoutMilliseconds: Int32) -> Int32 {
    guarded("vkv_frame_sender_wait_credit") {
        let s = try table.lookup(sender, .frameSender, as: FrameSenderObject.self, name: "sender")
        try s.lock.withLock {
            if timeoutMilliseconds == 0 {
                guard try s.sender.ready() else { throw APIError(.timeout, "no credit now (timeout_ms 0 looks once)") }
            } else {
                try s.sender.waitForCredit(timeout: duration(milliseconds: timeoutMilliseconds))
            }
        }
    }
}

@_cdecl("vkv_frame_sender_send")
public func vkv_frame_sender_send(_ sender: OpaquePointer?, _ data: UnsafeRawPointer?, _ length: UInt64,
                                  _ number: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_frame_sender_send") {
        number?.pointee = 0
        let s = try table.lookup(sender, .frameSender, as: FrameSenderObject.self, name: "sender")
        guard length <= UInt64(s.sender.options.frameSize) else {
            throw FrameStream.FrameError.frameTooLarge(size: Int(clamping: length), limit: s.sender.options.frameSize)
        }
        guard data != nil || length == 0 else { throw APIError(.invalidArgument, "data is NULL but length is \(length)") }
        let sent = try s.lock.withLock { try s.sender.send(UnsafeRawBufferPointer(start: data, count: Int(length))) }
        number?.pointee = sent
    }
}

/// Fills a struct vkv_frame_sender_summary (32 bytes: frames, bytes, credit_waits u64, seconds double).
@_cdecl("vkv_frame_sender_finish")
public func vkv_frame_sender_finish(_ sender: OpaquePointer?, _ summary: UnsafeMutableRawPointer?) -> Int32 {
    guarded("vkv_frame_sender_finish") {
        if let summary { memset(summary, 0, 32) }
        let s = try table.lookup(sender, .frameSender, as: FrameSenderObject.self, name: "sender")
        let got = try s.lock.withLock { try s.sender.finish() }
        guard let summary else { return }
        summary.storeBytes(of: got.frames, toByteOffset: 0, as: UInt64.self)
        summary.storeBytes(of: got.bytes, toByteOffset: 8, as: UInt64.self)
        summary.storeBytes(of: got.creditWaits, toByteOffset: 16, as: UInt64.self)
        summary.storeBytes(of: got.seconds, toByteOffset: 24, as: Double.self)
    }
}

@_cdecl("vkv_frame_sender_close")
public func vkv_frame_sender_close(_ sender: OpaquePointer?) -> Int32 {
    guarded("vkv_frame_sender_close") {
        let s = try table.remove(sender, .frameSender, as: FrameSenderObject.self, name: "sender")
        s.lock.withLock { s.sender.close() }
    }
}
