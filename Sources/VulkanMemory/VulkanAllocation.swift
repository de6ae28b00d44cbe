import CVulkan

/// GPU-usable memory the NIC can register, made by one `MemoryStrategy`. Keeps its
/// device (and through it the instance) alive; a memory region registered from
/// `registrable` keeps this allocation alive.
public final class VulkanAllocation: Sendable {
    public let strategy: MemoryStrategy
    /// Each better strategy that was not used, and why (empty when the caller named the strategy).
    public let rejected: [StrategyRejection]
    /// The buffer the GPU reads and writes.
    public let buffer: DeviceBuffer
    /// `.staged` only: the host-visible buffer the NIC registers; copy with
    /// `copyToStaging` / `copyFromStaging`.
    public let staging: DeviceBuffer?
    public let size: UInt64
    private let location: RegistrableMemory.Location

    init(strategy: MemoryStrategy, rejected: [StrategyRejection], buffer: DeviceBuffer, staging: DeviceBuffer? = nil,
         size: UInt64, location: RegistrableMemory.Location) {
        self.strategy = strategy
        self.rejected = rejected
        self.buffer = buffer
        self.staging = staging
        self.size = size
        self.location = location
    }

    public var device: VulkanDevice { buffer.device }

    /// What the NIC registers (VulkanRegistration's `register(with:access:)` hands it to a protection domain).
    public var registrable: RegistrableMemory { RegistrableMemory(location: location, owner: self) }

    /// The bytes the NIC sees, as the host sees them (nil for the RDMA-address and dma-buf strategies).
    public var hostBytes: UnsafeMutableRawBufferPointer? { (staging ?? buffer).bytes }

    /// `.staged`: copies the GPU buffer into the staging buffer (`vkCmdCopyBuffer`), e.g. before the NIC sends it.
    public func copyToStaging(using engine: GPUCommandRunner, timeout: Duration = .seconds(10)) throws(VulkanError) {
        guard let staging else { return }
        try engine.copy(from: buffer, to: staging, timeout: timeout)
    }

    /// `.staged`: copies the staging buffer into the GPU buffer, e.g. after the NIC received into it.
    public func copyFromStaging(using engine: GPUCommandRunner, timeout: Duration = .seconds(10)) throws(VulkanError) {
        guard let staging else { return }
        try engine.copy(from: staging, to: buffer, timeout: timeout)
    }
}
