#if canImport(Glibc)
import Glibc
#endif
import CVulkan

extension VulkanDevice {
    /// Allocates `size` bytes the GPU can use and the NIC can register. With `strategy` nil the
    /// strategies are tried best first (`MemoryStrategy.allCases`) and the result lists why each
    /// better one was not used; a named strategy either works or throws its own error. With `nic`
    /// (what the NIC takes, e.g. VulkanRegistration's `NICCapabilities.probe(pd:)`), the NIC side
    /// is checked too (a peer-memory client for `.rdmaAddress`, dma-buf regions for `.dmaBuf`).
    /// Calls `vkCreateBuffer`, `vkAllocateMemory`, `vkBindBufferMemory`, then per strategy
    /// `vkGetMemoryRemoteAddressNV`, `vkGetMemoryFdKHR`, `vkGetMemoryHostPointerPropertiesEXT` or `vkMapMemory`.
    public func allocate(size: UInt64, strategy: MemoryStrategy? = nil, nic: NICCapabilities? = nil)
        throws(VulkanError) -> VulkanAllocation
    {
        guard size > 0 else { throw .invalidArgument("allocation size must be > 0") }
        guard size <= UInt64(Int.max) else { throw .invalidArgument("allocation size \(size) does not fit an Int") }
        // A request no heap can hold is the caller's error, not a reason to try every strategy.
        let heaps = try physicalDevice.memorySnapshot().heaps
        if let roomiest = heaps.max(by: { $0.available < $1.available }), roomiest.available < size {
            throw .overBudget(requested: size, available: roomiest.available, heap: roomiest.index)
        }
        if let strategy {
            return try attempt(strategy, size: size, nic: nic, rejected: [])
        }
        var rejected: [StrategyRejection] = []
        for candidate in MemoryStrategy.allCases {
            do {
                return try attempt(candidate, size: size, nic: nic, rejected: rejected)
            } catch {
                rejected.append(StrategyRejection(strategy: candidate, error: error))
            }
        }
        throw .noStrategy(rejected)
    }

    private func attempt(_ strategy: MemoryStrategy, size: UInt64, nic: NICCapabilities?, rejected: [StrategyRejection])
        throws(VulkanError) -> VulkanAllocation
    {
        switch strategy {
        case .rdmaAddress: return try allocateRDMAAddress(size: size, nic: nic, rejected: rejected)
        case .dmaBuf: return try allocateDMABuf(size: size, nic: nic, rejected: rejected)
        case .hostPointerImport: return try allocateHostImport(size: size, rejected: rejected)
        case .hostVisible:
            // The NIC pins this mapping with ibv_reg_mr: system memory, not a device-local BAR
            // mapping (which only a GPU peer-memory client can register), unless the device
            // has nothing else (a UMA device such as lavapipe).
            let buffer = try DeviceBuffer(device: self, plan: BufferPlan(
                size: size, required: hostCoherent, preferred: VK_MEMORY_PROPERTY_HOST_CACHED_BIT.rawValue,
                avoided: VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue, needs: "HOST_VISIBLE|HOST_COHERENT", map: true))
            return VulkanAllocation(strategy: .hostVisible, rejected: rejected, buffer: buffer, size: size,
                                    location: .hostPointer(buffer.hostAddress!, length: Int(size)))
        case .staged:
            let gpu = try DeviceBuffer(device: self, plan: BufferPlan(
                size: size, preferred: VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue, needs: "any properties"))
            let staging = try DeviceBuffer(device: self, plan: BufferPlan(
                size: size, required: hostCoherent, avoided: VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue,
                needs: "HOST_VISIBLE|HOST_COHERENT", map: true))
            return VulkanAllocation(strategy: .staged, rejected: rejected, buffer: gpu, staging: staging, size: size,
                                    location: .hostPointer(staging.hostAddress!, length: Int(size)))
        }
    }

    private var hostCoherent: VkMemoryPropertyFlags {
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue
    }

    /// The steps VK_NV_external_memory_rdma lays out, each failing with its own error.
    private func allocateRDMAAddress(size: UInt64, nic: NICCapabilities?, rejected: [StrategyRejection])
        throws(VulkanError) -> VulkanAllocation
    {
        let purpose = "RDMA-address export"
        try require(ExtensionName.externalMemoryRDMA, for: purpose)
        guard externalMemoryRDMAEnabled else { throw .featureMissing("externalMemoryRDMA", neededFor: purpose) }
        // The emulation layer's addresses are host memory: no peer-memory client is involved.
        if let nic, !nic.hasPeerMemoryClient, try physicalDevice.externalMemoryRDMASource() != .vkverbsLayer {
            throw .nicUnsupported("no GPU peer-memory client (none of \(NICCapabilities.peerMemoryVersionFiles.joined(separator: ", ")))")
        }
        let memory = try physicalDevice.memorySnapshot()
        let rdmaTypes = memory.types.filter(\.rdmaCapable)
        guard !rdmaTypes.isEmpty else {
            throw .noMemoryType(needs: "RDMA_CAPABLE_BIT_NV", memoryTypeBits: UInt32((1 << memory.types.count) - 1))
        }
        let rdmaHeaps = rdmaTypes.map { memory.heaps[$0.heapIndex] }
        if let roomiest = rdmaHeaps.max(by: { $0.available < $1.available }), roomiest.available < size {
            throw .overBudget(requested: size, available: roomiest.available, heap: roomiest.index)
        }
        let external = try physicalDevice.externalBufferSupport(.rdmaAddress)
        guard external.exportable else {
            throw .notExportable(handleType: "VK_EXTERNAL_MEMORY_HANDLE_TYPE_RDMA_ADDRESS_BIT_NV")
        }
        let buffer = try DeviceBuffer(device: self, plan: BufferPlan(
            size: size, handleType: .rdmaAddress, export: true, dedicated: external.dedicatedOnly,
            required: VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV.rawValue,
            preferred: VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue, needs: "RDMA_CAPABLE_BIT_NV"))
        let address = try buffer.remoteAddress()
        return VulkanAllocation(strategy: .rdmaAddress, rejected: rejected, buffer: buffer, size: size,
                                location: .remoteAddress(address, length: Int(size)))
    }

    private func allocateDMABuf(size: UInt64, nic: NICCapabilities?, rejected: [StrategyRejection])
        throws(VulkanError) -> VulkanAllocation
    {
        let purpose = "dma-buf export"
        try require(ExtensionName.externalMemoryFD, for: purpose)
        try require(ExtensionName.externalMemoryDMABuf, for: purpose)
        if let support = nic?.dmaBuf, !support.isSupported {
            throw .nicUnsupported("ibv_reg_dmabuf_mr: \(support)")
        }
        let external = try physicalDevice.externalBufferSupport(.dmaBuf)
        guard external.exportable else {
            throw .notExportable(handleType: "VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT")
        }
        let buffer = try DeviceBuffer(device: self, plan: BufferPlan(
            size: size, handleType: .dmaBuf, export: true, dedicated: external.dedicatedOnly,
            preferred: VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue, needs: "any properties"))
        let fd = try buffer.exportFD(.dmaBuf)
        return VulkanAllocation(strategy: .dmaBuf, rejected: rejected, buffer: buffer, size: size,
                                location: .dmaBuf(fd: fd, offset: 0, length: Int(size)))
    }

    private func allocateHostImport(size: UInt64, rejected: [StrategyRejection]) throws(VulkanError) -> VulkanAllocation {
        try require(ExtensionName.externalMemoryHost, for: "host-pointer import")
        guard try physicalDevice.externalBufferSupport(.hostAllocation).importable else {
            throw .notExportable(handleType: "VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT (import)")
        }
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let alignment = max(page, try physicalDevice.minImportedHostPointerAlignment() ?? page)
        let importSize = (size + alignment - 1) / alignment * alignment
        var pages: UnsafeMutableRawPointer?
        guard posix_memalign(&pages, Int(alignment), Int(importSize)) == 0, let pages else {
            throw .hostPointerImport(function: "posix_memalign", result: .errorOutOfHostMemory)
        }
        memset(pages, 0, Int(importSize))
        do throws(VulkanError) {
            let bits = try hostPointerTypeBits(pages)
            let buffer = try DeviceBuffer(device: self, plan: BufferPlan(
                size: size, handleType: .hostAllocation, hostPages: pages, importSize: importSize, typeBits: bits,
                preferred: VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue, needs: "a type the host pointer allows"))
            return VulkanAllocation(strategy: .hostPointerImport, rejected: rejected, buffer: buffer, size: size,
                                    location: .hostPointer(pages, length: Int(size)))
        } catch {
            free(pages)  // The buffer owns the pages only once it exists.
            throw error
        }
    }

    /// The memory types host pages can be imported as (`vkGetMemoryHostPointerPropertiesEXT`).
    private func hostPointerTypeBits(_ pointer: UnsafeMutableRawPointer) throws(VulkanError) -> UInt32 {
        let get = try deviceFunction("vkGetMemoryHostPointerPropertiesEXT", as: PFN_vkGetMemoryHostPointerPropertiesEXT.self)
        var props = VkMemoryHostPointerPropertiesEXT()
        props.sType = VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT
        try check(get(raw, VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, pointer, &props),
                  "vkGetMemoryHostPointerPropertiesEXT", VulkanError.hostPointerImport)
        return props.memoryTypeBits
    }
}
