import CVulkan

/// An external memory handle type this module asks drivers about.
public enum ExternalHandleType: String, Codable, Sendable, Hashable, CaseIterable {
    /// `VK_EXTERNAL_MEMORY_HANDLE_TYPE_RDMA_ADDRESS_BIT_NV`.
    case rdmaAddress
    /// `VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT`.
    case dmaBuf
    /// `VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT`.
    case opaqueFD
    /// `VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT`.
    case hostAllocation

    var bit: VkExternalMemoryHandleTypeFlagBits {
        switch self {
        case .rdmaAddress: return VK_EXTERNAL_MEMORY_HANDLE_TYPE_RDMA_ADDRESS_BIT_NV
        case .dmaBuf: return VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT
        case .opaqueFD: return VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT
        case .hostAllocation: return VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
        }
    }

    /// The device extension that defines the handle type (nil: core 1.1).
    var extensionName: String? {
        switch self {
        case .rdmaAddress: return ExtensionName.externalMemoryRDMA
        case .dmaBuf: return ExtensionName.externalMemoryDMABuf
        case .opaqueFD: return ExtensionName.externalMemoryFD
        case .hostAllocation: return ExtensionName.externalMemoryHost
        }
    }
}

/// The answer of `vkGetPhysicalDeviceExternalBufferProperties` for one handle type.
public struct ExternalBufferSupport: Codable, Sendable, Hashable {
    public var handleType: ExternalHandleType
    /// False when the device lacks the extension that defines the handle type, so asking
    /// would be invalid usage; the flags below are then all false.
    public var queried: Bool
    public var exportable: Bool
    public var importable: Bool
    public var dedicatedOnly: Bool
    /// `compatibleHandleTypes` as raw bits.
    public var compatibleHandleTypes: UInt32
}

/// The buffer usage every allocation of this module gets: copies both ways and shader storage.
let bufferUsage: VkBufferUsageFlags = VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue
    | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue | VK_BUFFER_USAGE_STORAGE_BUFFER_BIT.rawValue

/// A `VkPhysicalDevice` of an instance. Queries only; the instance owns it.
public struct PhysicalDevice: Sendable {
    public let instance: VulkanInstance
    private let handle: VulkanHandle
    /// Its position in `vkEnumeratePhysicalDevices` (-1 when the application handed it over).
    public let index: Int

    init(instance: VulkanInstance, raw: VkPhysicalDevice, index: Int) {
        self.instance = instance
        handle = VulkanHandle(raw)
        self.index = index
    }

    public var raw: VkPhysicalDevice { handle.raw }

    /// Wraps the application's `VkPhysicalDevice` of `instance`.
    public init(borrowing raw: VkPhysicalDevice, of instance: VulkanInstance) {
        self.init(instance: instance, raw: raw, index: -1)
    }

    /// `vkGetPhysicalDeviceProperties`.
    public var properties: VkPhysicalDeviceProperties {
        var props = VkPhysicalDeviceProperties()
        vkGetPhysicalDeviceProperties(raw, &props)
        return props
    }

    public var name: String { string(fromCharArray: properties.deviceName) }

    /// The version both the instance and the device speak.
    public var effectiveAPIVersion: APIVersion {
        min(instance.apiVersion, APIVersion(rawValue: properties.apiVersion))
    }

    /// The device extensions it supports (`vkEnumerateDeviceExtensionProperties`).
    public func supportedExtensions() throws(VulkanError) -> Set<String> {
        var count: UInt32 = 0
        try check(vkEnumerateDeviceExtensionProperties(raw, nil, &count, nil), "vkEnumerateDeviceExtensionProperties",
                  VulkanError.deviceEnumeration)
        var props = [VkExtensionProperties](repeating: VkExtensionProperties(), count: Int(count))
        try check(vkEnumerateDeviceExtensionProperties(raw, nil, &count, &props),
                  "vkEnumerateDeviceExtensionProperties", VulkanError.deviceEnumeration)
        return Set(props.prefix(Int(count)).map { string(fromCharArray: $0.extensionName) })
    }

    /// The `externalMemoryRDMA` feature (`VkPhysicalDeviceExternalMemoryRDMAFeaturesNV` chained
    /// into `vkGetPhysicalDeviceFeatures2`). Only asked when the extension is there.
    public func supportsExternalMemoryRDMAFeature() throws(VulkanError) -> Bool {
        guard try supportedExtensions().contains(ExtensionName.externalMemoryRDMA) else { return false }
        var rdma = VkPhysicalDeviceExternalMemoryRDMAFeaturesNV()
        rdma.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV
        var features = VkPhysicalDeviceFeatures2()
        features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        withUnsafeMutablePointer(to: &rdma) { chained in
            features.pNext = UnsafeMutableRawPointer(chained)
            vkGetPhysicalDeviceFeatures2(raw, &features)
        }
        return rdma.externalMemoryRDMA == VkBool32(VK_TRUE)
    }

    /// Memory types and heaps (`vkGetPhysicalDeviceMemoryProperties2`), with
    /// `VkPhysicalDeviceMemoryBudgetPropertiesEXT` chained in when VK_EXT_memory_budget is supported.
    public func memorySnapshot() throws(VulkanError) -> MemorySnapshot {
        let hasBudget = try supportedExtensions().contains(ExtensionName.memoryBudget)
        var budget = VkPhysicalDeviceMemoryBudgetPropertiesEXT()
        budget.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT
        var props = VkPhysicalDeviceMemoryProperties2()
        props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2
        if hasBudget {
            withUnsafeMutablePointer(to: &budget) { chained in
                props.pNext = UnsafeMutableRawPointer(chained)
                vkGetPhysicalDeviceMemoryProperties2(raw, &props)
            }
        } else {
            vkGetPhysicalDeviceMemoryProperties2(raw, &props)
        }
        let memory = props.memoryProperties
        let heapBudgets = withUnsafeBytes(of: budget.heapBudget) { Array($0.bindMemory(to: VkDeviceSize.self)) }
        let heapUsages = withUnsafeBytes(of: budget.heapUsage) { Array($0.bindMemory(to: VkDeviceSize.self)) }
        let heaps = withUnsafeBytes(of: memory.memoryHeaps) { Array($0.bindMemory(to: VkMemoryHeap.self)) }
            .prefix(Int(memory.memoryHeapCount)).enumerated().map { i, heap in
                MemoryHeapInfo(index: i, size: heap.size,
                               deviceLocal: heap.flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT.rawValue != 0,
                               budget: hasBudget ? heapBudgets[i] : heap.size, usage: hasBudget ? heapUsages[i] : 0,
                               budgetSource: hasBudget ? .memoryBudgetExtension : .heapSize)
            }
        let types = withUnsafeBytes(of: memory.memoryTypes) { Array($0.bindMemory(to: VkMemoryType.self)) }
            .prefix(Int(memory.memoryTypeCount)).enumerated().map { i, type in
                MemoryTypeInfo(index: i, heapIndex: Int(type.heapIndex), propertyFlags: type.propertyFlags,
                               properties: MemoryTypeInfo.names(type.propertyFlags),
                               rdmaCapable: type.propertyFlags & VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV.rawValue != 0)
            }
        return MemorySnapshot(heaps: heaps, types: types)
    }

    /// `vkGetPhysicalDeviceExternalBufferProperties` for a buffer of this module's usage.
    /// Handle types whose extension the device lacks are reported as not queried.
    public func externalBufferSupport(_ type: ExternalHandleType) throws(VulkanError) -> ExternalBufferSupport {
        var result = ExternalBufferSupport(handleType: type, queried: false, exportable: false, importable: false,
                                           dedicatedOnly: false, compatibleHandleTypes: 0)
        if let ext = type.extensionName, !(try supportedExtensions().contains(ext)) { return result }
        var info = VkPhysicalDeviceExternalBufferInfo()
        info.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_BUFFER_INFO
        info.usage = bufferUsage
        info.handleType = type.bit
        var props = VkExternalBufferProperties()
        props.sType = VK_STRUCTURE_TYPE_EXTERNAL_BUFFER_PROPERTIES
        vkGetPhysicalDeviceExternalBufferProperties(raw, &info, &props)
        let features = props.externalMemoryProperties.externalMemoryFeatures
        result.queried = true
        result.exportable = features & VK_EXTERNAL_MEMORY_FEATURE_EXPORTABLE_BIT.rawValue != 0
        result.importable = features & VK_EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT.rawValue != 0
        result.dedicatedOnly = features & VK_EXTERNAL_MEMORY_FEATURE_DEDICATED_ONLY_BIT.rawValue != 0
        result.compatibleHandleTypes = props.externalMemoryProperties.compatibleHandleTypes
        return result
    }

    /// `minImportedHostPointerAlignment` (`VkPhysicalDeviceExternalMemoryHostPropertiesEXT` chained
    /// into `vkGetPhysicalDeviceProperties2`), or nil without VK_EXT_external_memory_host.
    public func minImportedHostPointerAlignment() throws(VulkanError) -> UInt64? {
        guard try supportedExtensions().contains(ExtensionName.externalMemoryHost) else { return nil }
        var host = VkPhysicalDeviceExternalMemoryHostPropertiesEXT()
        host.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT
        queryProperties2(chaining: &host)
        return host.minImportedHostPointerAlignment
    }

    /// The first queue family that can compute (which implies transfer)
    /// (`vkGetPhysicalDeviceQueueFamilyProperties`).
    public func computeQueueFamily() -> UInt32? {
        var count: UInt32 = 0
        vkGetPhysicalDeviceQueueFamilyProperties(raw, &count, nil)
        var families = [VkQueueFamilyProperties](repeating: VkQueueFamilyProperties(), count: Int(count))
        vkGetPhysicalDeviceQueueFamilyProperties(raw, &count, &families)
        return families.prefix(Int(count)).firstIndex {
            $0.queueFlags & VK_QUEUE_COMPUTE_BIT.rawValue != 0 && $0.queueCount > 0
        }.map(UInt32.init)
    }

    func requireVersion() throws(VulkanError) {
        guard effectiveAPIVersion >= .v1_1 else {
            throw .apiVersionTooOld(found: effectiveAPIVersion.description, needed: APIVersion.v1_1.description)
        }
    }
}

extension PhysicalDevice {
    /// `vkGetPhysicalDeviceProperties2` with `extended` (an extension properties struct, its
    /// sType set) as the whole pNext chain; the driver fills it in.
    func queryProperties2<T>(chaining extended: inout T) {
        var props = VkPhysicalDeviceProperties2()
        props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
        withUnsafeMutablePointer(to: &extended) { chained in
            props.pNext = UnsafeMutableRawPointer(chained)
            vkGetPhysicalDeviceProperties2(raw, &props)
        }
    }
}
