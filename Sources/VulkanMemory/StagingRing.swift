import CVulkan

/// The GPU side of a staged transfer: a buffer moved in chunks through a ring of bounce buffers
/// ("slots"), every chunk's copy queued ahead of the host and ordered by two timeline semaphores
/// instead of a host round trip per chunk.
///
/// - `copied`: the GPU signals `base + k + 1` once chunk k's copy is done.
/// - `released`: the host signals `base + k + 1` once the NIC is done with chunk k's slot side,
///   but only while a queued copy waits for it: a copy submitted after the release it needs
///   waits for nothing on the GPU, and a release no queued copy waits for costs no host call
///   (a sending transfer of up to `slots` chunks signals nothing). The counter may therefore lag
///   behind the releases; it never passes them.
///
/// Sending (`toSlots`: device buffer -> slot): chunk k's copy waits until chunk k - slots has been
/// released (the NIC has read that slot), so the host only posts the NIC write of chunk k once
/// `copied` reaches k + 1 and releases it when the write completes. Receiving (`fromSlots`:
/// slot -> device buffer): chunk k's copy waits until chunk k is released (the NIC has filled the
/// slot), and the slot may be filled again once `copied` reaches k + 1. By default a receiving
/// copy is submitted only once its release is made (`receiveSubmission`), so it waits for
/// nothing on the GPU and the host signals nothing.
///
/// Who may read what a receiving transfer copied in (`receiveReaders`): by default any reader
/// (each receiving chunk ends with a barrier: later work on the ring's queue may read without
/// waiting, the host where it maps the buffer). A caller whose every reader is GPU work that waits
/// on `copied` for the transfer's `completion` value sets `.semaphoreWaiters`, and the receiving
/// copies end with no barrier: a semaphore signal's first access scope holds every memory access
/// the device made before it, and a wait's second access scope every access after it (the Vulkan
/// spec's semaphore signal and wait operations), so the waiting work sees the bytes on any queue.
/// Sending chunks always end with the copy-to-host barrier the NIC's reads of host memory need.
///
/// Each transfer's copies go to the device's queue for copies of its largest chunk
/// (`VulkanDevice.copyRole(forBytes: min(chunkSize, length))`: the family measured fastest for
/// that size; the buffers are shared between the device's families), so a small transfer through
/// a ring of large slots runs where a single small copy would. A ring made for one queue role
/// keeps it. Transfers follow one another (each ends with every copy done), so the two queues
/// never hold copies of the ring at once. Work on the main queue that produced a sending
/// transfer's source must be ordered by `after` or waited for first.
///
/// Copies are recorded once per chunk position and reused while the buffer, offsets and sizes stay
/// the same (a weak reference tells a live buffer from a new one at the same address); they are
/// submitted in batches (one `vkQueueSubmit` for up to 32 chunks) as the host waits, up to 256
/// chunks ahead of the one it waits for. Every host
/// wait polls with a bounded spin (`hostWait`) and ends at its timeout. After a failure `abort`
/// releases every queued copy so the queue never stays blocked on the host. One thread at a time.
public final class StagingRing {
    public enum Direction: String, Sendable, Codable {
        /// Device buffer -> slots (what a sender stages).
        case toSlots
        /// Slots -> device buffer (what a receiver stages).
        case fromSlots
    }

    public let device: VulkanDevice
    /// The queue of the transfer in progress, or of the last one (before any: of a full chunk).
    public var queue: DeviceQueue { lanes[lane].queue }
    public let slots: [DeviceBuffer]
    public let chunkSize: UInt64
    public var hostWait: HostWait
    /// When set, chunk 0 resets queries 0 and 1 and writes query 0 at its start, the last chunk
    /// query 1 at its end.
    public var timestamps: TimestampQueryPool? {
        didSet { if timestamps !== oldValue { invalidateRecordings() } }
    }
    /// The barrier each chunk's copy ends with; nil (the default): by direction and
    /// `receiveReaders` (`closing(for:buffer:readers:)`): `.copyToHost` for `toSlots` (only the
    /// NIC, through host memory, reads a slot next: 1.5-1.9 us less per chunk than `.full` on an
    /// H200, docs/nvidia-results.md); for `fromSlots` none while every reader waits on `copied`,
    /// else `.copyToDevice`, or `.full` where the device buffer is host-visible.
    public var closing: ClosingBarrier? = nil {
        didSet { if closing != oldValue { invalidateRecordings() } }
    }

    /// Who reads the device buffer after a receiving (`fromSlots`) transfer.
    public enum ReceiveReaders: String, Sendable, Codable, CaseIterable {
        /// Only GPU work whose submission waits on `copied` reaching `completion.value` (any
        /// queue): the semaphore carries the memory dependency, the copies end with no barrier.
        case semaphoreWaiters = "semaphore-waiters"
        /// Also later work on the ring's queue that does not wait, and the host where it maps the
        /// buffer: each receiving chunk ends with `.copyToDevice` (`.full` into mapped memory).
        /// Work on another queue needs the semaphore wait in any case.
        case any
    }
    /// Applies to recordings made after it is set; `.any` by default (the safe choice: a reader
    /// that does not wait still sees the bytes), `.semaphoreWaiters` where every reader waits.
    public var receiveReaders = ReceiveReaders.any {
        didSet { if receiveReaders != oldValue { invalidateRecordings() } }
    }

    /// What a reader of the transfer in progress (or of the last one) waits for: `copied` at the
    /// value its last chunk signals. Waiting for it on the GPU (`GPUCommandRunner.submit(waitingFor:)`,
    /// or a `VkSubmitInfo` wait) is what `receiveReaders = .semaphoreWaiters` asks of every reader.
    public var completion: (semaphore: TimelineSemaphore, value: UInt64) {
        (copied, base + UInt64(transfer?.chunks ?? 0))
    }
    public let copied: TimelineSemaphore
    public let released: TimelineSemaphore

    /// When a receiving (`fromSlots`) chunk's copy is submitted.
    public enum ReceiveSubmission: String, Sendable, Codable {
        /// When the host releases the chunk (its slot filled): the copy waits for nothing on the
        /// GPU, and no release is signalled. One `vkQueueSubmit` per chunk.
        case onRelease = "on-release"
        /// Ahead, in batches, each copy waiting on the GPU for `released` to reach its chunk; the
        /// host signals each release (`vkSignalSemaphore`).
        case upFront = "up-front"
    }
    /// Applies to transfers begun after it is set.
    public var receiveSubmission = ReceiveSubmission.onRelease

    /// Command buffers kept (each chunk position modulo this has its own).
    static let recordingCapacity = 1024
    /// Chunks submitted per `vkQueueSubmit`.
    static let batchSize = 32
    /// Chunks queued at most beyond the one the host waits for; well under `recordingCapacity`,
    /// so a command buffer is never recorded again before the copy it last held is done.
    static let lookahead = 256

    private struct Recording {
        let commandBuffer: VkCommandBuffer
        weak var buffer: DeviceBuffer?
        var direction = Direction.toSlots
        var bufferOffset: UInt64 = 0
        var length: UInt64 = 0
        var slot = 0
        var first = false
        var last = false
        var valid = false
        /// The `copied` value its last submission signals.
        var signals: UInt64 = 0
    }

    private struct Transfer {
        let direction: Direction
        let buffer: DeviceBuffer
        let offset: UInt64
        let length: UInt64
        let chunks: Int
        let after: (semaphore: TimelineSemaphore, value: UInt64)?
        /// Receiving copies are submitted only once released.
        let submitOnRelease: Bool
        var submitted = 0
        /// Releases the host made (`release`) ...
        var released = 0
        /// ... and how many of them the `released` semaphore shows (`base + signalled`).
        var signalled = 0
        /// The highest release a submitted copy waits for on the GPU; -1: none.
        var waitedFor = -1
    }

    /// A queue the ring submits to, with its command pool and recordings.
    private struct Lane {
        let queue: DeviceQueue
        let pool: VkCommandPool
        var recordings: [Recording] = []
    }

    /// One lane per distinct queue the ring may use (one or two).
    private var lanes: [Lane] = []
    /// The lane of the transfer in progress (or the last one).
    private var lane = 0
    /// The queue role every transfer uses, when the ring was made for one.
    private let fixedRole: DeviceQueue.Role?
    /// Both counters stand here between transfers.
    private var base: UInt64 = 0
    private var transfer: Transfer?
    /// Set when an abort could not bring the queue back: later use throws it.
    private var broken: VulkanError?

    /// A ring over `slots` (each at least `chunkSize` bytes, on `device`), with a command pool on
    /// the family of each queue it may submit to (`queue`'s alone when named; by default the queue
    /// for copies of each transfer's largest chunk) and the two timeline semaphores (the device
    /// needs the timelineSemaphore feature).
    public init(device: VulkanDevice, slots: [DeviceBuffer], chunkSize: UInt64, hostWait: HostWait? = nil,
                queue: DeviceQueue.Role? = nil) throws(VulkanError) {
        guard !slots.isEmpty, chunkSize > 0 else { throw .invalidArgument("a staging ring needs a slot and a chunk size > 0") }
        for slot in slots where slot.device !== device || slot.size < chunkSize {
            throw .invalidArgument("every slot must be a buffer of this device of at least \(chunkSize) bytes (one has \(slot.size))")
        }
        copied = try TimelineSemaphore(device: device, initialValue: 0)
        released = try TimelineSemaphore(device: device, initialValue: 0)
        var queues = [device.queue(queue ?? device.copyRole(forBytes: chunkSize))]
        if queue == nil {
            // The queue for a transfer smaller than the chunk size, where it is another one.
            let small = device.queue(device.copyRole(forBytes: 1))
            if small !== queues[0] { queues.append(small) }
        }
        var lanes: [Lane] = []
        for q in queues {
            do throws(VulkanError) {
                lanes.append(Lane(queue: q, pool: try device.makeResettableCommandPool(family: q.family)))
            } catch {
                for made in lanes { vkDestroyCommandPool(device.raw, made.pool, nil) }
                throw error
            }
        }
        self.lanes = lanes
        self.fixedRole = queue
        self.device = device
        self.slots = slots
        self.chunkSize = chunkSize
        self.hostWait = hostWait ?? .default(for: device)
    }

    deinit {
        if transfer != nil { _ = abort(timeout: .seconds(10)) }
        if broken != nil {
            // Copies may still be queued; the pool cannot go while they are.
            _ = try? device.waitIdle()
        }
        for lane in lanes { vkDestroyCommandPool(device.raw, lane.pool, nil) }  // Frees the command buffers with them.
    }

    /// Bytes of chunk `k` of the transfer in progress.
    public func length(ofChunk k: Int) -> UInt64 {
        guard let t = transfer else { return 0 }
        return min(chunkSize, t.length - UInt64(k) * chunkSize)
    }

    /// The queue a transfer of `length` bytes is submitted to.
    public func queue(forLength length: UInt64) -> DeviceQueue { lanes[lane(forLength: length)].queue }

    private func lane(forLength length: UInt64) -> Int {
        guard fixedRole == nil, lanes.count > 1 else { return 0 }
        let q = device.queue(device.copyRole(forBytes: min(chunkSize, max(length, 1))))
        return lanes.firstIndex { $0.queue === q } ?? 0
    }

    private func invalidateRecordings() {
        for l in lanes.indices { for i in lanes[l].recordings.indices { lanes[l].recordings[i].valid = false } }
    }

    /// The barrier a chunk's copy ends with when `closing` is nil: `.copyToHost` for `toSlots`; for
    /// `fromSlots` none when every reader waits on the semaphore, else `.copyToDevice`, or `.full`
    /// where the device buffer is host-visible (the host may read it).
    public static func closing(for direction: Direction, buffer: DeviceBuffer,
                               readers: ReceiveReaders = .any) -> ClosingBarrier {
        switch direction {
        case .toSlots: return .copyToHost
        case .fromSlots:
            if readers == .semaphoreWaiters { return .none }
            return buffer.memoryType.has(VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) ? .full : .copyToDevice
        }
    }

    /// The barrier this ring's chunks of `direction` into or out of `buffer` end with.
    public func closingBarrier(for direction: Direction, buffer: DeviceBuffer) -> ClosingBarrier {
        closing ?? Self.closing(for: direction, buffer: buffer, readers: receiveReaders)
    }

    /// The slot chunk `k` goes through.
    public func slot(ofChunk k: Int) -> DeviceBuffer { slots[k % slots.count] }

    /// Starts moving `length` bytes of `buffer` from `offset` (`direction`), in chunks; returns
    /// their number. Submits the first batch of copies. `after`: a timeline value every copy waits
    /// for on the GPU (the work that produced the source).
    public func begin(_ direction: Direction, buffer: DeviceBuffer, offset: UInt64 = 0, length: UInt64,
                      after: (semaphore: TimelineSemaphore, value: UInt64)? = nil) throws(VulkanError) -> Int {
        if let broken { throw broken }
        guard transfer == nil else { throw .invalidArgument("a staged transfer is already in progress on this ring") }
        guard buffer.device === device else { throw .invalidArgument("the buffer belongs to another device") }
        guard length > 0, offset <= buffer.size, length <= buffer.size - offset else {
            throw .invalidArgument("\(length) bytes at \(offset) do not fit the \(buffer.size)-byte buffer")
        }
        if let after, after.semaphore.device !== device { throw .invalidArgument("the semaphore belongs to another device") }
        let chunks = Int((length + chunkSize - 1) / chunkSize)
        // The last transfer is over (every copy done, or the ring broken above): switching is safe.
        lane = lane(forLength: length)
        transfer = Transfer(direction: direction, buffer: buffer, offset: offset, length: length, chunks: chunks, after: after,
                            submitOnRelease: direction == .fromSlots && receiveSubmission == .onRelease)
        do {
            try submitBatch(timeout: .seconds(10))
        } catch {
            _ = abort(timeout: .seconds(10))
            throw error
        }
        return chunks
    }

    /// Whether chunk `k`'s copy is done (one counter read).
    public func isCopied(_ k: Int) throws(VulkanError) -> Bool {
        try copied.value() >= base + UInt64(k) + 1
    }

    /// Waits until chunk `k`'s copy is done, submitting further batches first. Throws
    /// `.invalidArgument` when that copy waits on a release the host has not made yet (it could
    /// never finish), `.timedOut` after `timeout`.
    public func waitCopied(_ k: Int, timeout: Duration) throws(VulkanError) {
        guard let t = transfer, k >= 0, k < t.chunks else { throw .invalidArgument("chunk \(k) is not part of a transfer in progress") }
        let needs = t.direction == .toSlots ? k - slots.count : k
        guard needs < t.released else {
            throw .invalidArgument("chunk \(k)'s copy waits for chunk \(needs) to be released, and it was not")
        }
        while transfer!.submitted <= k { try submitBatch(timeout: timeout) }
        if try isCopied(k) { return }
        // Queue more while the GPU works, never more than `lookahead` ahead.
        if transfer!.submitted < min(t.chunks, k + 1 + Self.lookahead) { try submitBatch(timeout: timeout) }
        try copied.wait(for: base + UInt64(k) + 1, timeout: timeout, policy: hostWait)
    }

    /// Tells the GPU the NIC is done with chunk `k` (`vkSignalSemaphore`); chunks are released in order.
    public func release(_ k: Int) throws(VulkanError) {
        guard let t = transfer, k == t.released, k < t.chunks else {
            throw .invalidArgument("chunk \(k) released out of order (next: \(transfer?.released ?? 0))")
        }
        transfer!.released = k + 1
        // Only a queued copy that waits for this release needs the signal.
        if t.waitedFor >= t.signalled {
            try released.signal(base + UInt64(k) + 1)
            transfer!.signalled = k + 1
        }
        if t.submitOnRelease {
            do {
                try submitBatch(timeout: .seconds(10))
            } catch {
                _ = abort(timeout: .seconds(10))
                throw error
            }
        }
    }

    /// Submits what is left, releases what the host has not (for `toSlots` the last chunks need no
    /// release), waits until every copy is done and ends the transfer.
    public func finish(timeout: Duration) throws(VulkanError) {
        guard let t = transfer else { return }
        let end = base + UInt64(t.chunks)
        if transfer!.released < t.chunks {
            transfer!.released = t.chunks
            if transfer!.waitedFor >= transfer!.signalled {
                try released.signal(end)
                transfer!.signalled = t.chunks
            }
        }
        while transfer!.submitted < t.chunks { try submitBatch(timeout: timeout) }
        try copied.wait(for: end, timeout: timeout, policy: hostWait)
        base = end
        transfer = nil
    }

    /// Ends the transfer in progress after a failure: releases every queued copy so the queue
    /// moves on, waits (up to `timeout`) until they are done, and returns the error that left the
    /// ring unusable, if any. The slots' contents are then undefined.
    @discardableResult
    public func abort(timeout: Duration) -> VulkanError? {
        guard let t = transfer else { return broken }
        let end = base + UInt64(t.chunks)
        do throws(VulkanError) {
            if t.signalled < t.chunks { try released.signal(end) }
            try copied.wait(for: base + UInt64(t.submitted), timeout: timeout, policy: .blocking)
            // Copies never submitted never signal: the host brings the counter level.
            if t.submitted < t.chunks { try copied.signal(end) }
            base = end
        } catch {
            broken = error
        }
        transfer = nil
        return broken
    }

    // MARK: Submission

    /// Records (where the cached recording does not fit) and submits the next batch of chunks.
    private func submitBatch(timeout: Duration) throws(VulkanError) {
        guard var t = transfer, t.submitted < t.chunks else { return }
        let first = t.submitted
        // Receiving on release: only what the host has released.
        let count = min(Self.batchSize, (t.submitOnRelease ? min(t.released, t.chunks) : t.chunks) - first)
        guard count > 0 else { return }
        var buffers: [VkCommandBuffer?] = []
        buffers.reserveCapacity(count)
        for k in first..<(first + count) { buffers.append(try recording(for: k, t, timeout: timeout)) }
        // Per chunk: the release it waits for (and the caller's value), the copied value it signals.
        let stride = 2
        var waitSemaphores = [VkSemaphore?](repeating: nil, count: count * stride)
        var waitValues = [UInt64](repeating: 0, count: count * stride)
        let waitStages = [VkPipelineStageFlags](repeating: VK_PIPELINE_STAGE_ALL_COMMANDS_BIT.rawValue, count: count * stride)
        var waitCounts = [UInt32](repeating: 0, count: count)
        let signalSemaphores = [VkSemaphore?](repeating: copied.raw, count: count)
        var signalValues = [UInt64](repeating: 0, count: count)
        for i in 0..<count {
            let k = first + i
            var n = 0
            let needs = t.direction == .toSlots ? k - slots.count : k
            // A release the host already made needs no wait on the GPU.
            if needs >= t.released {
                waitSemaphores[i * stride + n] = released.raw
                waitValues[i * stride + n] = base + UInt64(needs) + 1
                n += 1
                t.waitedFor = needs
            }
            if let after = t.after {
                waitSemaphores[i * stride + n] = after.semaphore.raw
                waitValues[i * stride + n] = after.value
                n += 1
            }
            waitCounts[i] = UInt32(n)
            signalValues[i] = base + UInt64(k) + 1
        }
        var timelineInfos = [VkTimelineSemaphoreSubmitInfo](repeating: VkTimelineSemaphoreSubmitInfo(), count: count)
        var submits = [VkSubmitInfo](repeating: VkSubmitInfo(), count: count)
        let result = buffers.withUnsafeBufferPointer { cbs in
            waitSemaphores.withUnsafeBufferPointer { ws in
                waitValues.withUnsafeBufferPointer { wv in
                    waitStages.withUnsafeBufferPointer { st in
                        signalSemaphores.withUnsafeBufferPointer { ss in
                            signalValues.withUnsafeBufferPointer { sv in
                                timelineInfos.withUnsafeMutableBufferPointer { ti in
                                    submits.withUnsafeMutableBufferPointer { si in
                                        for i in 0..<count {
                                            ti[i].sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO
                                            ti[i].waitSemaphoreValueCount = waitCounts[i]
                                            ti[i].pWaitSemaphoreValues = wv.baseAddress! + i * stride
                                            ti[i].signalSemaphoreValueCount = 1
                                            ti[i].pSignalSemaphoreValues = sv.baseAddress! + i
                                            si[i].sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
                                            si[i].pNext = UnsafeRawPointer(ti.baseAddress! + i)
                                            si[i].waitSemaphoreCount = waitCounts[i]
                                            si[i].pWaitSemaphores = ws.baseAddress! + i * stride
                                            si[i].pWaitDstStageMask = st.baseAddress! + i * stride
                                            si[i].commandBufferCount = 1
                                            si[i].pCommandBuffers = cbs.baseAddress! + i
                                            si[i].signalSemaphoreCount = 1
                                            si[i].pSignalSemaphores = ss.baseAddress! + i
                                        }
                                        let queue = lanes[lane].queue
                                        return queue.lock.withLock { _ in
                                            vkQueueSubmit(queue.raw, UInt32(count), si.baseAddress, nil)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        try check(result, "vkQueueSubmit", VulkanError.submission)
        for k in first..<(first + count) { lanes[lane].recordings[k % Self.recordingCapacity].signals = base + UInt64(k) + 1 }
        t.submitted = first + count
        transfer = t
    }

    /// The command buffer for chunk `k`: the cached one when it records the same copy, else
    /// recorded anew (after its last submission is done).
    private func recording(for k: Int, _ t: Transfer, timeout: Duration) throws(VulkanError) -> VkCommandBuffer {
        let index = k % Self.recordingCapacity
        let l = lane
        if index == lanes[l].recordings.count {
            lanes[l].recordings.append(Recording(commandBuffer: try device.allocatePrimaryCommandBuffer(from: lanes[l].pool)))
        }
        // A command buffer runs once at a time: its previous submission must be done. With the
        // lookahead bound it is: the host has already seen every copy that far back.
        let previous = lanes[l].recordings[index].signals
        if previous > 0, try copied.value() < previous {
            try copied.wait(for: previous, timeout: timeout, policy: hostWait)
        }
        let bufferOffset = t.offset + UInt64(k) * chunkSize
        let length = min(chunkSize, t.length - UInt64(k) * chunkSize)
        let slot = k % slots.count
        let first = k == 0, last = k == t.chunks - 1
        let r = lanes[l].recordings[index]
        if r.valid, r.buffer === t.buffer, r.direction == t.direction, r.bufferOffset == bufferOffset, r.length == length,
           r.slot == slot, r.first == first || timestamps == nil, r.last == last || timestamps == nil {
            return r.commandBuffer
        }
        lanes[l].recordings[index].valid = false
        var begin = VkCommandBufferBeginInfo()
        begin.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        try check(vkBeginCommandBuffer(r.commandBuffer, &begin), "vkBeginCommandBuffer", VulkanError.commandRecording)
        let recorder = CommandRecorder(raw: r.commandBuffer, device: device, queue: lanes[l].queue)
        do throws(VulkanError) {
            if first, let timestamps {
                try recorder.resetQueries(timestamps, first: 0, count: 2)
                try recorder.writeTimestamp(timestamps, index: 0, stage: .top)
            }
            switch t.direction {
            case .toSlots:
                try recorder.copy(from: t.buffer, to: slots[slot], size: length, sourceOffset: bufferOffset)
            case .fromSlots:
                try recorder.copy(from: slots[slot], to: t.buffer, size: length, destinationOffset: bufferOffset)
            }
            if last, let timestamps { try recorder.writeTimestamp(timestamps, index: 1, stage: .bottom) }
        } catch {
            _ = vkEndCommandBuffer(r.commandBuffer)
            throw error
        }
        recorder.barrier(closingBarrier(for: t.direction, buffer: t.buffer))
        try check(vkEndCommandBuffer(r.commandBuffer), "vkEndCommandBuffer", VulkanError.commandRecording)
        lanes[l].recordings[index] = Recording(commandBuffer: r.commandBuffer, buffer: t.buffer, direction: t.direction,
                                      bufferOffset: bufferOffset, length: length, slot: slot, first: first, last: last,
                                      valid: true, signals: r.signals)
        return r.commandBuffer
    }
}

/// The transfer in progress, the recordings and the counters' base are this ring's alone.
@available(*, unavailable)
extension StagingRing: Sendable {}
