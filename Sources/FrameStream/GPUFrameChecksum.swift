import VulkanMemory

/// Checks frames in a ring of Vulkan memory on the GPU: a compute shader (`FrameChecksumShader`)
/// adds up `FrameChecksum`'s sums over the frame's bytes where the NIC wrote them, and the result
/// is compared with the checksum the sender computed on the CPU and put in the frame's header.
///
/// Each check is one submission on the ring's device: it waits on the receiver's timeline
/// semaphore for the frame's value (`frame + 1`) where one is given, acquires the slot's bytes
/// (`CommandRecorder.acquire`: a queue family acquire from `VK_QUEUE_FAMILY_EXTERNAL` for dma-buf
/// and RDMA-address memory, a barrier from host writes for host-visible and imported host memory),
/// copies them from the staging buffer first for the staged strategy (so the GPU's own buffer is
/// what is checked), and dispatches the shader. Not for use from several threads at once.
public final class GPUFrameChecksum {
    /// The ring's memory: what the receiver's slots are.
    public let ring: VulkanAllocation
    /// Who the device treats as the ring's writer (from the ring's strategy).
    public let writer: ExternalWriter
    /// Frames checked, and those whose bytes did not match their header's checksum.
    public private(set) var verified: UInt64 = 0
    public private(set) var mismatches: UInt64 = 0
    let timeline: TimelineSemaphore?
    /// The bound on each wait for a check.
    public var timeout: Duration
    private let kernel: ComputeKernel
    private let runner: GPUCommandRunner
    /// Two 32-bit sums the shader adds into (host-visible).
    private let sums: DeviceBuffer
    /// The seed of the submitted check and the timeline value it waits for.
    private var pending: (seed: UInt32, waitsFor: UInt64?)?

    /// Prepares the shader on the ring's device. `timeline` (on the same device) is the receiver's
    /// `Options.timeline`: each check then waits on the device for the frame's arrival. `writer`
    /// overrides what the ring's strategy implies (`ExternalWriter.nic(writing:)`), e.g. to treat
    /// imported host pages as external memory.
    public init(ring: VulkanAllocation, timeline: TimelineSemaphore? = nil, writer: ExternalWriter? = nil,
                timeout: Duration = .seconds(10)) throws(FrameStream.FrameError) {
        let device = ring.device
        if let timeline, timeline.device !== device { throw .invalidOptions("the timeline semaphore belongs to another device than the ring") }
        let limit = UInt64(device.physicalDevice.properties.limits.maxStorageBufferRange)
        guard ring.buffer.size <= limit else {
            throw .invalidOptions("a \(ring.buffer.size)-byte ring is beyond the device's \(limit)-byte storage buffer range")
        }
        guard ring.buffer.size / 4 <= UInt64(UInt32.max) else { throw .invalidOptions("a \(ring.buffer.size)-byte ring is too large for the shader") }
        self.ring = ring
        self.writer = writer ?? ExternalWriter.nic(writing: ring.strategy)
        self.timeline = timeline
        self.timeout = timeout
        do {
            kernel = try ComputeKernel(device: device, spirv: FrameChecksumShader.spirv,
                                       pushConstantSize: FrameChecksumShader.pushConstantSize, storageBuffers: 2)
            runner = try GPUCommandRunner(device: device)
            sums = try DeviceBuffer(device: device, size: 16, hostVisible: true)
        } catch {
            throw .vulkan(error)
        }
    }

    deinit {
        // A submission waiting for a value nobody signalled would hold the queue (and the runner's
        // own teardown) forever: the value is signalled here so it drains. Only a check submitted
        // ahead of its frame's arrival (`submit`) can be left like that.
        if let waitsFor = pending?.waitsFor, let timeline, let value = try? timeline.value(), value < waitsFor {
            try? timeline.signal(waitsFor)
        }
        // The kernel and the sums must outlive the last submission that uses them (a check whose
        // wait timed out may still run): wait, one timeout at a time, until it is done or the
        // device says it cannot tell (lost).
        while (try? runner.isIdle) == false { try? runner.waitForCompletion(timeout: timeout) }
    }

    /// Checks `frame` (taken from `receiver`): its bytes in the ring against its header's checksum.
    /// A mismatch is counted and thrown as `.corrupted`; a frame sent without a checksum is refused.
    public func verify(_ frame: FrameReceiver.Frame) throws(FrameStream.FrameError) {
        guard let expected = frame.checksum else { throw .protocolError("frame \(frame.number) carries no checksum to verify") }
        let got = try checksum(frame: frame.number, offset: frame.offset, length: frame.length)
        verified += 1
        guard got == expected else {
            mismatches += 1
            throw .corrupted(frame: frame.number)
        }
    }

    /// The checksum of frame `frame`'s `length` bytes at `offset` of the ring, computed on the GPU.
    public func checksum(frame: UInt64, offset: Int, length: Int) throws(FrameStream.FrameError) -> UInt64 {
        try submit(frame: frame, offset: offset, length: length)
        return try result()
    }

    /// Submits the check and returns at once (`result` waits for it). With a timeline, the GPU
    /// starts only once the semaphore reaches `frame + 1`: a check submitted before its frame
    /// arrived waits on the device, without the host polling.
    func submit(frame: UInt64, offset: Int, length: Int) throws(FrameStream.FrameError) {
        // A check whose result was not taken (its wait timed out) must finish first; its result is dropped.
        if pending != nil {
            try waitForPending()
            pending = nil
        }
        guard offset >= 0, length >= 0, offset % 4 == 0 else {
            throw .invalidOptions("a frame at byte \(offset) of the ring: the GPU checksum needs slots of a multiple of 4 bytes")
        }
        let words = (UInt64(length) + 3) / 4
        // The shader reads whole words; the acquire and the copy cover at least one.
        let range = (offset: UInt64(offset), size: max(words * 4, 4))
        guard range.offset + range.size <= ring.buffer.size else {
            throw .invalidOptions("\(length) bytes at \(offset) do not fit the \(ring.buffer.size)-byte ring")
        }
        let seed = FrameChecksum.seed(frame: frame, length: length)
        let waitsFor = timeline.map { _ in frame &+ 1 }
        let groups = UInt32(min(max((words + 4095) / 4096, 1), 256))
        let constants = [UInt32(offset / 4), UInt32(length), seed]
        do {
            try runner.submit(timeout: timeout, closing: .full,
                              waitingFor: timeline.map { ($0, frame &+ 1) }) { [ring, writer, sums, kernel] (recorder) throws(VulkanError) in
                try recorder.fill(sums, value: 0)
                if let staging = ring.staging {
                    try recorder.acquire(staging, offset: range.offset, size: range.size, writtenBy: writer, for: .transferRead)
                    try recorder.copy(from: staging, to: ring.buffer, size: range.size, sourceOffset: range.offset, destinationOffset: range.offset)
                } else {
                    try recorder.acquire(ring.buffer, offset: range.offset, size: range.size, writtenBy: writer, for: .shaderRead)
                }
                recorder.barrier()
                try recorder.dispatch(kernel, buffers: [ring.buffer, sums], groups: groups, pushConstants: constants)
            }
        } catch {
            throw .vulkan(error)
        }
        pending = (seed, waitsFor)
    }

    /// Waits (up to the timeout) for the submitted check and returns its checksum.
    func result() throws(FrameStream.FrameError) -> UInt64 {
        guard let (seed, _) = pending else { throw .invalidOptions("no check was submitted") }
        try waitForPending()
        pending = nil
        let words = sums.bytes!
        let lo = UInt32(littleEndian: words.load(fromByteOffset: 0, as: UInt32.self))
        let hi = UInt32(littleEndian: words.load(fromByteOffset: 4, as: UInt32.self))
        return FrameChecksum.finish(lo: lo, hi: hi, seed: seed)
    }

    /// Waits up to the timeout for the submitted check; a timeout leaves it pending.
    private func waitForPending() throws(FrameStream.FrameError) {
        do { try runner.waitForCompletion(timeout: timeout) } catch {
            if case let .timedOut(what, after) = error { throw .timedOut(what, after: after) }
            throw .vulkan(error)
        }
    }

    /// Whether the submitted check finished (one status query).
    var isIdle: Bool {
        get throws(FrameStream.FrameError) {
            do { return try runner.isIdle } catch { throw .vulkan(error) }
        }
    }
}
