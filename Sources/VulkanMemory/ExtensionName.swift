/// The extension and layer names this module looks for.
public enum ExtensionName {
    public static let externalMemoryRDMA = "VK_NV_external_memory_rdma"
    public static let externalMemoryFD = "VK_KHR_external_memory_fd"
    public static let externalMemoryDMABuf = "VK_EXT_external_memory_dma_buf"
    public static let externalMemoryHost = "VK_EXT_external_memory_host"
    public static let memoryBudget = "VK_EXT_memory_budget"
    public static let timelineSemaphore = "VK_KHR_timeline_semaphore"
    public static let debugUtils = "VK_EXT_debug_utils"
    public static let validationLayer = "VK_LAYER_KHRONOS_validation"
    /// This package's layer that provides VK_NV_external_memory_rdma on drivers without it
    /// (Sources/VkLayerRDMA, docs/vulkan-layer.md).
    public static let rdmaEmulationLayer = "VK_LAYER_VKVERBS_rdma_emulation"

    /// The device extensions a module-made device enables when the device has them.
    public static let deviceDefaults = [externalMemoryRDMA, externalMemoryFD, externalMemoryDMABuf,
                                        externalMemoryHost, memoryBudget, timelineSemaphore]
}
