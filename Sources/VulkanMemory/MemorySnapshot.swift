import CVulkan

/// Where a heap's budget figure came from.
public enum BudgetSource: String, Codable, Sendable, Hashable {
    /// `VkPhysicalDeviceMemoryBudgetPropertiesEXT` (VK_EXT_memory_budget): budget minus usage.
    case memoryBudgetExtension
    /// No VK_EXT_memory_budget: the heap's size, which overstates what is free.
    case heapSize
}

/// One `VkMemoryHeap`, with its budget.
public struct MemoryHeapInfo: Codable, Sendable, Hashable {
    public var index: Int
    public var size: UInt64
    public var deviceLocal: Bool
    /// `heapBudget` (or the size when there is no budget extension).
    public var budget: UInt64
    /// `heapUsage` (0 when there is no budget extension).
    public var usage: UInt64
    public var budgetSource: BudgetSource

    /// What can still be allocated from the heap, as far as the driver says.
    public var available: UInt64 { budget > usage ? budget - usage : 0 }
}

/// One `VkMemoryType`.
public struct MemoryTypeInfo: Codable, Sendable, Hashable {
    public var index: Int
    public var heapIndex: Int
    /// `VkMemoryPropertyFlags`.
    public var propertyFlags: UInt32
    /// The flags' names without the `VK_MEMORY_PROPERTY_` prefix, e.g. `HOST_VISIBLE_BIT`.
    public var properties: [String]
    /// Carries `VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV`.
    public var rdmaCapable: Bool

    public func has(_ flags: VkMemoryPropertyFlagBits...) -> Bool {
        flags.allSatisfy { propertyFlags & $0.rawValue == $0.rawValue }
    }

    static func names(_ flags: UInt32) -> [String] {
        let known: [(VkMemoryPropertyFlagBits, String)] = [
            (VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, "DEVICE_LOCAL_BIT"),
            (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, "HOST_VISIBLE_BIT"),
            (VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, "HOST_COHERENT_BIT"),
            (VK_MEMORY_PROPERTY_HOST_CACHED_BIT, "HOST_CACHED_BIT"),
            (VK_MEMORY_PROPERTY_LAZILY_ALLOCATED_BIT, "LAZILY_ALLOCATED_BIT"),
            (VK_MEMORY_PROPERTY_PROTECTED_BIT, "PROTECTED_BIT"),
            (VK_MEMORY_PROPERTY_DEVICE_COHERENT_BIT_AMD, "DEVICE_COHERENT_BIT_AMD"),
            (VK_MEMORY_PROPERTY_DEVICE_UNCACHED_BIT_AMD, "DEVICE_UNCACHED_BIT_AMD"),
            (VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV, "RDMA_CAPABLE_BIT_NV"),
        ]
        return known.filter { flags & $0.0.rawValue != 0 }.map(\.1)
    }
}

/// A physical device's memory types and heaps at one moment.
public struct MemorySnapshot: Codable, Sendable, Hashable {
    public var heaps: [MemoryHeapInfo]
    public var types: [MemoryTypeInfo]

    /// The first type allowed by `bits` that has every flag of `required`, preferring one
    /// that has none of `avoided`, then one that also has every flag of `preferred`, and whose
    /// heap has `size` bytes of budget.
    func pick(bits: UInt32, required: UInt32, preferred: UInt32 = 0, avoided: UInt32 = 0, size: UInt64)
        -> (type: MemoryTypeInfo?, overBudgetHeap: MemoryHeapInfo?)
    {
        let allowed = types.filter { bits & (1 << UInt32($0.index)) != 0 && $0.propertyFlags & required == required }
        func rank(_ t: MemoryTypeInfo) -> Int {
            (t.propertyFlags & avoided != 0 ? 2 : 0) + (t.propertyFlags & preferred != preferred ? 1 : 0)
        }
        let ordered = allowed.enumerated().sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }.map(\.element)
        if let fit = ordered.first(where: { heaps[$0.heapIndex].available >= size }) { return (fit, nil) }
        return (nil, ordered.first.map { heaps[$0.heapIndex] })
    }
}
