import CVulkan
import Verbs
import VulkanMemory

/// Moves a device-local Vulkan buffer to or from a peer through registered host-visible bounce
/// buffers ("slots"). The GPU side is a `StagingRing`: every chunk's copy is queued up front and
/// ordered by timeline semaphores, so the GPU copies chunk k+1 while the NIC moves chunk k and the
/// host only watches counters and posts work requests. Same engine, same remote descriptor as the
/// zero-copy paths. Used by one thread at a time; not Sendable.
public final class StagedPipeline {
    public let engine: TransferEngine
    public let device: VulkanDevice
    public let chunkSize: Int
    private let regions: [MemoryRegion]
    private let ring: StagingRing

    /// Chunk size and slot count where the caller names none, by device type, as measured with
    /// `vkverbs gpu-bench` on an H200 (docs/nvidia-results.md): on a discrete GPU 16 MiB chunks
    /// in 3 slots (0.92x CUDA from 64 MiB, where 4 MiB chunks gave 0.83x and 1 MiB 0.63x: each
    /// chunk leaves the copy engine idle about 11 us); on a CPU driver (lavapipe) and other
    /// devices 1 MiB in 3. Either is capped at the engine's largest work request.
    public static func defaults(for device: VulkanDevice) -> (chunkSize: Int, slotCount: Int) {
        switch device.physicalDevice.properties.deviceType {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return (16 << 20, 3)
        default: return (1 << 20, 3)
        }
    }

    /// `slotCount` bounce buffers of `chunkSize` bytes (2 = double, 3 = triple buffering; nil:
    /// `defaults(for:)`), each registered with the engine's protection domain for local access
    /// only. A chunk must fit one work request (`engine.maxChunk`). Needs timeline semaphores.
    public init(engine: TransferEngine, device: VulkanDevice, chunkSize: Int? = nil, slotCount: Int? = nil) throws(TransferError) {
        let defaults = Self.defaults(for: device)
        let chunk = chunkSize ?? min(defaults.chunkSize, engine.maxChunk)
        let slotCount = slotCount ?? defaults.slotCount
        guard chunk > 0, slotCount >= 2 else {
            throw TransferError.verbs(.invalidArgument("a staged pipeline needs chunkSize > 0 and at least 2 slots"))
        }
        guard chunk <= engine.maxChunk else {
            throw TransferError.verbs(.invalidArgument("a chunk of \(chunk) bytes exceeds the engine's largest work request (\(engine.maxChunk))"))
        }
        self.engine = engine
        self.device = device
        self.chunkSize = chunk
        var buffers: [DeviceBuffer] = []
        var regions: [MemoryRegion] = []
        do {
            for _ in 0..<slotCount {
                let buffer = try DeviceBuffer(device: device, size: UInt64(chunk), hostVisible: true)
                let region = try TransferError.bridge { () throws(VerbsError) in
                    try engine.pd.register(address: buffer.hostAddress, length: chunk, access: .local, owner: buffer)
                }
                buffers.append(buffer)
                regions.append(region)
            }
            ring = try StagingRing(device: device, slots: buffers, chunkSize: UInt64(chunk))
            // `read` returns with the bytes in place for any reader unless told otherwise (the
            // ring's default, named here because `read`'s contract depends on it).
            ring.receiveReaders = .any
        } catch let error as TransferError {
            throw error
        } catch let error as VulkanError {
            throw TransferError.vulkan(error)
        } catch {
            preconditionFailure("a staging slot is made by calls that throw only VulkanError or TransferError: \(error)")
        }
        self.regions = regions
    }

    /// Bounce buffers in the ring.
    public var slotCount: Int { regions.count }

    /// Who reads a `read`'s destination: `.any` by default (each received chunk ends with a
    /// barrier; work on the ring's queue may read it without waiting, the host where it maps
    /// it). With `.semaphoreWaiters` the chunks end with none, and every reader must be GPU work
    /// that waits on `completion` (on an H200 the ring's receiving transfers through 16 MiB slots
    /// ran at 0.80x / 0.92x of CUDA at 256 KiB / 1 MiB without the barrier, 0.67x / 0.84x with
    /// it: docs/nvidia-results.md).
    public var receiveReaders: StagingRing.ReceiveReaders {
        get { ring.receiveReaders }
        set { ring.receiveReaders = newValue }
    }

    /// The timeline value the last `read`'s (or `write`'s) copies end with: what a reader waits
    /// for on the GPU under `receiveReaders = .semaphoreWaiters`.
    public var completion: (semaphore: TimelineSemaphore, value: UInt64) { ring.completion }

    /// How the host waits on the GPU's counter (bounded spin, then block).
    public var hostWait: HostWait {
        get { ring.hostWait }
        set { ring.hostWait = newValue }
    }

    /// Writes `length` bytes of `source` from `sourceOffset` to `remote` at `remoteOffset`;
    /// with `immediate`, the peer is told once after the last chunk. `after`: GPU work that
    /// produces the source (a timeline value is waited for on the GPU, a fence on the host).
    /// Returns once every write has completed.
    public func write(from source: DeviceBuffer, sourceOffset: UInt64 = 0, length: Int? = nil,
                      to remote: RemoteBuffer, at remoteOffset: UInt64 = 0, immediate: UInt32? = nil,
                      after gpu: GPUCompletion? = nil) throws(TransferError) {
        let length = length ?? Int(source.size - min(sourceOffset, source.size))
        guard length > 0, sourceOffset <= source.size, UInt64(length) <= source.size - sourceOffset else {
            throw TransferError.outOfBounds("\(length) bytes at \(sourceOffset) do not fit the \(source.size)-byte source buffer")
        }
        guard remoteOffset <= remote.length, UInt64(length) <= remote.length - remoteOffset else {
            throw TransferError.outOfBounds("a staged write of \(length) bytes at \(remoteOffset) exceeds the \(remote.length)-byte remote buffer")
        }
        let timeout = engine.options.timeout
        var gpuAfter: (semaphore: TimelineSemaphore, value: UInt64)?
        switch gpu {
        case let .timeline(semaphore, value)?: gpuAfter = (semaphore, value)
        case let gpu?: try gpu.wait(timeout: timeout)
        case nil: break
        }
        let chunks = try vulkan { () throws(VulkanError) in
            try ring.begin(.toSlots, buffer: source, offset: sourceOffset, length: UInt64(length), after: gpuAfter)
        }
        let slots = regions.count
        var tickets: [Ticket] = []
        tickets.reserveCapacity(chunks)
        var releasedUpTo = 0
        do {
            for k in 0..<chunks {
                // Chunk k's copy waits for the write that last read its slot: release it first.
                while releasedUpTo <= k - slots {
                    try engine.wait(for: tickets[releasedUpTo])
                    try vulkan { () throws(VulkanError) in try ring.release(releasedUpTo) }
                    releasedUpTo += 1
                }
                try vulkan { () throws(VulkanError) in try ring.waitCopied(k, timeout: timeout) }
                let size = Int(ring.length(ofChunk: k))
                let segment = try TransferError.bridge { () throws(VerbsError) in try regions[k % slots].segment(offset: 0, length: size) }
                tickets.append(try engine.postWrite(segment, to: remote, at: remoteOffset + UInt64(k * chunkSize),
                                                    immediate: k == chunks - 1 ? immediate : nil))
                // Writes already done release their slots now, without waiting.
                while releasedUpTo <= k, try finished(tickets[releasedUpTo]) {
                    try vulkan { () throws(VulkanError) in try ring.release(releasedUpTo) }
                    releasedUpTo += 1
                }
            }
            for ticket in tickets[releasedUpTo...] { try engine.wait(for: ticket) }
            try vulkan { () throws(VulkanError) in try ring.finish(timeout: timeout) }
        } catch {
            ring.abort(timeout: timeout)
            throw error
        }
    }

    /// Reads `length` bytes from `remote` at `remoteOffset` into `destination` from
    /// `destinationOffset`: RDMA reads into the slots, each chunk copied on to the device buffer
    /// as soon as its read completes, the slot read into again once its copy is done. Returns
    /// once the last copy is done (the bytes are in `destination`).
    public func read(into destination: DeviceBuffer, destinationOffset: UInt64 = 0, length: Int? = nil,
                     from remote: RemoteBuffer, at remoteOffset: UInt64 = 0) throws(TransferError) {
        let length = length ?? Int(destination.size - min(destinationOffset, destination.size))
        guard length > 0, destinationOffset <= destination.size, UInt64(length) <= destination.size - destinationOffset else {
            throw TransferError.outOfBounds("\(length) bytes at \(destinationOffset) do not fit the \(destination.size)-byte destination buffer")
        }
        guard remoteOffset <= remote.length, UInt64(length) <= remote.length - remoteOffset else {
            throw TransferError.outOfBounds("a staged read of \(length) bytes at \(remoteOffset) exceeds the \(remote.length)-byte remote buffer")
        }
        let timeout = engine.options.timeout
        let chunks = try vulkan { () throws(VulkanError) in
            try ring.begin(.fromSlots, buffer: destination, offset: destinationOffset, length: UInt64(length))
        }
        let slots = regions.count
        var tickets: [Ticket] = []
        tickets.reserveCapacity(chunks)
        do {
            func post(_ k: Int) throws(TransferError) {
                let size = Int(ring.length(ofChunk: k))
                let segment = try TransferError.bridge { () throws(VerbsError) in try regions[k % slots].segment(offset: 0, length: size) }
                tickets.append(try engine.postRead(into: segment, from: remote, at: remoteOffset + UInt64(k * chunkSize)))
            }
            for k in 0..<min(slots, chunks) { try post(k) }
            for k in 0..<chunks {
                // The slot holds chunk k: the GPU may copy it on.
                try engine.wait(for: tickets[k])
                try vulkan { () throws(VulkanError) in try ring.release(k) }
                if k + slots < chunks {
                    // The slot is free once that copy is done.
                    try vulkan { () throws(VulkanError) in try ring.waitCopied(k, timeout: timeout) }
                    try post(k + slots)
                }
            }
            try vulkan { () throws(VulkanError) in try ring.finish(timeout: timeout) }
        } catch {
            ring.abort(timeout: timeout)
            try? engine.drain()  // No read may still fill a slot.
            throw error
        }
    }

    /// Whether `ticket` has completed (`wait` with no time to spare returns at once when it has).
    private func finished(_ ticket: Ticket) throws(TransferError) -> Bool {
        do {
            try engine.wait(for: ticket, timeout: .zero)
            return true
        } catch {
            if case .timedOut = error { return false }
            throw error
        }
    }

    private func vulkan<T>(_ body: () throws(VulkanError) -> T) throws(TransferError) -> T {
        do { return try body() } catch {
            if case let .timedOut(op, after) = error { throw TransferError.timedOut(operation: op, after: after) }
            throw TransferError.vulkan(error)
        }
    }
}
