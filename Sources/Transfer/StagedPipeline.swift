import CVulkan
import Verbs
import VulkanMemory

/// Moves a device-local Vulkan buffer to a peer through registered host-visible bounce buffers:
/// the GPU copies chunk k+1 into one slot while the NIC writes chunk k from another, so the
/// copy and the network overlap. Same engine, same remote descriptor as the zero-copy paths.
/// Used by one thread at a time (its slots' command buffers are re-recorded per chunk); not Sendable.
public final class StagedPipeline {
    public let engine: TransferEngine
    public let device: VulkanDevice
    public let chunkSize: Int
    private let slots: [(buffer: DeviceBuffer, region: MemoryRegion, runner: GPUCommandRunner)]

    /// `slotCount` bounce buffers of `chunkSize` bytes (2 = double, 3 = triple buffering), each
    /// registered with the engine's protection domain for local access only.
    public init(engine: TransferEngine, device: VulkanDevice, chunkSize: Int = 1 << 20, slotCount: Int = 3) throws(TransferError) {
        guard chunkSize > 0, slotCount >= 2 else {
            throw TransferError.verbs(.invalidArgument("a staged pipeline needs chunkSize > 0 and at least 2 slots"))
        }
        self.engine = engine
        self.device = device
        let chunk = min(chunkSize, engine.maxChunk)
        self.chunkSize = chunk
        var made: [(DeviceBuffer, MemoryRegion, GPUCommandRunner)] = []
        for _ in 0..<slotCount {
            do {
                let buffer = try DeviceBuffer(device: device, size: UInt64(chunk), hostVisible: true)
                let region = try TransferError.bridge { () throws(VerbsError) in
                    try engine.pd.register(address: buffer.hostAddress, length: chunk, access: .local, owner: buffer)
                }
                made.append((buffer, region, try GPUCommandRunner(device: device)))
            } catch let error as TransferError {
                throw error
            } catch let error as VulkanError {
                throw TransferError.vulkan(error)
            } catch {
                preconditionFailure("a staging slot is made by calls that throw only VulkanError or TransferError: \(error)")
            }
        }
        slots = made
    }

    /// Writes `length` bytes of `source` from `sourceOffset` to `remote` at `remoteOffset`;
    /// with `immediate`, the peer is told once after the last chunk. `after`: GPU work that
    /// produces the source, waited for before the first copy.
    public func write(from source: DeviceBuffer, sourceOffset: UInt64 = 0, length: Int? = nil,
                      to remote: RemoteBuffer, at remoteOffset: UInt64 = 0, immediate: UInt32? = nil,
                      after gpu: GPUCompletion? = nil) throws(TransferError) {
        let length = length ?? Int(source.size - min(sourceOffset, source.size))
        guard length > 0, sourceOffset + UInt64(length) <= source.size else {
            throw TransferError.outOfBounds("\(length) bytes at \(sourceOffset) do not fit the \(source.size)-byte source buffer")
        }
        guard remoteOffset <= remote.length, UInt64(length) <= remote.length - remoteOffset else {
            throw TransferError.outOfBounds("a staged write of \(length) bytes at \(remoteOffset) exceeds the \(remote.length)-byte remote buffer")
        }
        try gpu?.wait(timeout: engine.options.timeout)
        let chunks = (length + chunkSize - 1) / chunkSize
        var tickets = [Ticket?](repeating: nil, count: slots.count)
        let timeout = engine.options.timeout

        func size(_ k: Int) -> Int { min(chunkSize, length - k * chunkSize) }
        func copy(_ k: Int) throws(TransferError) {
            let slot = slots[k % slots.count]
            do {
                try slot.runner.submit(timeout: timeout) { (recorder) throws(VulkanError) in
                    try recorder.copy(from: source, to: slot.buffer, size: UInt64(size(k)),
                                      sourceOffset: sourceOffset + UInt64(k * chunkSize))
                }
            } catch { throw TransferError.vulkan(error) }
        }

        try copy(0)
        for k in 0..<chunks {
            let slot = slots[k % slots.count]
            do { try slot.runner.waitForCompletion(timeout: timeout) } catch { throw TransferError.vulkan(error) }
            let segment = try TransferError.bridge { () throws(VerbsError) in try slot.region.segment(offset: 0, length: size(k)) }
            tickets[k % slots.count] = try engine.postWrite(
                segment, to: remote, at: remoteOffset + UInt64(k * chunkSize),
                immediate: k == chunks - 1 ? immediate : nil)
            if k + 1 < chunks {
                // The next slot is free once the write that last used it has completed.
                if let previous = tickets[(k + 1) % slots.count] { try engine.wait(for: previous) }
                tickets[(k + 1) % slots.count] = nil
                try copy(k + 1)
            }
        }
        for case let t? in tickets { try engine.wait(for: t) }
    }
}
