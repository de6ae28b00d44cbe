import CVulkan

/// Everything that decides which memory strategy can work on one physical device.
public struct CapabilityReport: Codable, Sendable, Equatable {
    public struct Extensions: Codable, Sendable, Hashable {
        public var externalMemoryRDMA: Bool
        public var externalMemoryFD: Bool
        public var externalMemoryDMABuf: Bool
        public var externalMemoryHost: Bool
        public var memoryBudget: Bool
    }

    public var deviceIndex: Int
    public var deviceName: String
    public var deviceType: String
    public var vendorID: UInt32
    public var deviceID: UInt32
    public var apiVersion: APIVersion
    public var extensions: Extensions
    /// `VkPhysicalDeviceExternalMemoryRDMAFeaturesNV::externalMemoryRDMA`.
    public var externalMemoryRDMAFeature: Bool
    /// Who provides VK_NV_external_memory_rdma (nil: nobody).
    public var externalMemoryRDMASource: ExternalMemoryRDMASource?
    public var heaps: [MemoryHeapInfo]
    public var memoryTypes: [MemoryTypeInfo]
    /// Indices of the types with `VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV`.
    public var rdmaCapableMemoryTypes: [Int]
    /// The heaps those types live in.
    public var rdmaCapableHeaps: [Int]
    /// The budget figures' origin (the same for every heap).
    public var budgetSource: BudgetSource
    /// RDMA-address, dma-buf and opaque-fd answers of `vkGetPhysicalDeviceExternalBufferProperties`.
    public var externalBuffers: [ExternalBufferSupport]
    /// VK_EXT_external_memory_host is supported.
    public var hostPointerImport: Bool
    public var minImportedHostPointerAlignment: UInt64?
    /// What the NIC takes, as the caller said (nil: not told).
    public var nic: NICCapabilities?

    public func externalBuffer(_ type: ExternalHandleType) -> ExternalBufferSupport? {
        externalBuffers.first { $0.handleType == type }
    }
}

/// Where a device's VK_NV_external_memory_rdma comes from.
public enum ExternalMemoryRDMASource: String, Codable, Sendable, Hashable {
    /// The driver: remote addresses are GPU addresses a peer-memory client resolves.
    case driver
    /// VK_LAYER_VKVERBS_rdma_emulation (docs/vulkan-layer.md): remote addresses are host mappings of
    /// host-visible memory, which `ibv_reg_mr` registers without a peer-memory client.
    case vkverbsLayer = "vkverbs-layer"
}

extension PhysicalDevice {
    /// Who provides VK_NV_external_memory_rdma: nil when `vkEnumerateDeviceExtensionProperties` does
    /// not list it; the layer when it is active on the instance (`vkEnumerateDeviceLayerProperties`,
    /// which lists the instance's layers, names it) and lists the extension as its own for this
    /// device (it does not when the driver has the extension itself); the driver otherwise.
    public func externalMemoryRDMASource() throws(VulkanError) -> ExternalMemoryRDMASource? {
        guard try supportedExtensions().contains(ExtensionName.externalMemoryRDMA) else { return nil }
        var count: UInt32 = 0
        try check(vkEnumerateDeviceLayerProperties(raw, &count, nil), "vkEnumerateDeviceLayerProperties",
                  VulkanError.deviceEnumeration)
        var layers = [VkLayerProperties](repeating: VkLayerProperties(), count: Int(count))
        try check(vkEnumerateDeviceLayerProperties(raw, &count, &layers), "vkEnumerateDeviceLayerProperties",
                  VulkanError.deviceEnumeration)
        guard layers.prefix(Int(count)).contains(where: { string(fromCharArray: $0.layerName) == ExtensionName.rdmaEmulationLayer })
        else { return .driver }
        var extCount: UInt32 = 0
        try check(vkEnumerateDeviceExtensionProperties(raw, ExtensionName.rdmaEmulationLayer, &extCount, nil),
                  "vkEnumerateDeviceExtensionProperties", VulkanError.deviceEnumeration)
        var props = [VkExtensionProperties](repeating: VkExtensionProperties(), count: Int(extCount))
        try check(vkEnumerateDeviceExtensionProperties(raw, ExtensionName.rdmaEmulationLayer, &extCount, &props),
                  "vkEnumerateDeviceExtensionProperties", VulkanError.deviceEnumeration)
        let own = props.prefix(Int(extCount)).contains { string(fromCharArray: $0.extensionName) == ExtensionName.externalMemoryRDMA }
        return own ? .vkverbsLayer : .driver
    }

    /// Builds the report; `nic` (what the NIC takes, e.g. VulkanRegistration's
    /// `NICCapabilities.probe(pd:)`) is carried into it as given. Vulkan calls:
    /// `vkEnumerateDeviceExtensionProperties`, `vkGetPhysicalDeviceFeatures2`,
    /// `vkGetPhysicalDeviceMemoryProperties2`, `vkGetPhysicalDeviceExternalBufferProperties`,
    /// `vkGetPhysicalDeviceProperties2`, `vkEnumerateDeviceLayerProperties`.
    public func capabilityReport(nic: NICCapabilities? = nil) throws(VulkanError) -> CapabilityReport {
        try requireVersion()
        let props = properties
        let exts = try supportedExtensions()
        let memory = try memorySnapshot()
        let rdmaTypes = memory.types.filter(\.rdmaCapable)
        var buffers: [ExternalBufferSupport] = []
        for type in [ExternalHandleType.rdmaAddress, .dmaBuf, .opaqueFD] {
            buffers.append(try externalBufferSupport(type))
        }
        let typeName: String
        switch props.deviceType {
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: typeName = "integratedGPU"
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: typeName = "discreteGPU"
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: typeName = "virtualGPU"
        case VK_PHYSICAL_DEVICE_TYPE_CPU: typeName = "cpu"
        default: typeName = "other"
        }
        return CapabilityReport(
            deviceIndex: index, deviceName: name, deviceType: typeName, vendorID: props.vendorID,
            deviceID: props.deviceID, apiVersion: APIVersion(rawValue: props.apiVersion),
            extensions: .init(
                externalMemoryRDMA: exts.contains(ExtensionName.externalMemoryRDMA),
                externalMemoryFD: exts.contains(ExtensionName.externalMemoryFD),
                externalMemoryDMABuf: exts.contains(ExtensionName.externalMemoryDMABuf),
                externalMemoryHost: exts.contains(ExtensionName.externalMemoryHost),
                memoryBudget: exts.contains(ExtensionName.memoryBudget)),
            externalMemoryRDMAFeature: try supportsExternalMemoryRDMAFeature(),
            externalMemoryRDMASource: try externalMemoryRDMASource(),
            heaps: memory.heaps, memoryTypes: memory.types,
            rdmaCapableMemoryTypes: rdmaTypes.map(\.index),
            rdmaCapableHeaps: Array(Set(rdmaTypes.map(\.heapIndex))).sorted(),
            budgetSource: memory.heaps.first?.budgetSource ?? .heapSize,
            externalBuffers: buffers,
            hostPointerImport: exts.contains(ExtensionName.externalMemoryHost),
            minImportedHostPointerAlignment: try minImportedHostPointerAlignment(),
            nic: nic)
    }
}

extension VulkanInstance {
    /// One report per physical device.
    public func capabilityReports(nic: NICCapabilities? = nil) throws(VulkanError) -> [CapabilityReport] {
        var reports: [CapabilityReport] = []
        for device in try physicalDevices() { reports.append(try device.capabilityReport(nic: nic)) }
        return reports
    }
}
