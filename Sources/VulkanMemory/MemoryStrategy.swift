/// How GPU memory is made reachable by the NIC, best first. The automatic choice tries
/// them in `allCases` order.
public enum MemoryStrategy: String, CaseIterable, Codable, Sendable, Hashable, CustomStringConvertible {
    /// VK_NV_external_memory_rdma: device memory whose `vkGetMemoryRemoteAddressNV` address the
    /// NIC registers through `ibv_reg_mr` (a GPU peer-memory client resolves it). Zero copies.
    case rdmaAddress
    /// VK_EXT_external_memory_dma_buf: device memory exported as a dma-buf fd, registered
    /// with `ibv_reg_dmabuf_mr`. Zero copies.
    case dmaBuf
    /// VK_EXT_external_memory_host: page-aligned host pages imported into Vulkan; the NIC
    /// registers the same pages. The GPU reaches them over the bus.
    case hostPointerImport
    /// Host-visible, host-coherent device memory mapped into the process and registered there.
    case hostVisible
    /// A device-local buffer plus a registered host-visible staging buffer; the caller copies
    /// between them with `GPUCommandRunner`.
    case staged

    public var description: String { rawValue }
}

/// Why a strategy was not used.
public struct StrategyRejection: Hashable, Sendable, CustomStringConvertible {
    public var strategy: MemoryStrategy
    public var error: VulkanError

    public init(strategy: MemoryStrategy, error: VulkanError) {
        self.strategy = strategy
        self.error = error
    }

    public var reason: String { error.description }
    public var description: String { "\(strategy): \(reason)" }
}
