#if canImport(Glibc)
import Glibc
#endif
import CVulkan
import Sharing

/// How `DeviceBuffer` makes its buffer and memory; one value per strategy step.
struct BufferPlan {
    var size: UInt64
    /// Put in `VkExternalMemoryBufferCreateInfo` (and in the export or import info of the allocation).
    var handleType: ExternalHandleType?
    /// Allocate with `VkExportMemoryAllocateInfo`.
    var export = false
    /// Chain `VkMemoryDedicatedAllocateInfo`, for handle types the driver exports only dedicated.
    var dedicated = false
    /// Import these pages with `VkImportMemoryHostPointerInfoEXT`; `importSize` bytes, aligned.
    var hostPages: UnsafeMutableRawPointer?
    var importSize: UInt64 = 0
    /// Further restricts the buffer's `memoryTypeBits` (the host pointer's own bits).
    var typeBits: UInt32 = ~0
    var required: VkMemoryPropertyFlags = 0
    var preferred: VkMemoryPropertyFlags = 0
    /// Types with any of these flags come last (e.g. DEVICE_LOCAL for memory the NIC pins).
    var avoided: VkMemoryPropertyFlags = 0
    /// Words for `.noMemoryType`, e.g. "RDMA_CAPABLE_BIT_NV".
    var needs: String
    /// `vkMapMemory` the whole allocation.
    var map = false
}

/// One `VkBuffer` bound to its own `VkDeviceMemory`. Keeps its device alive; destroys the
/// buffer, frees the memory, closes an exported fd and frees imported host pages when released.
public final class DeviceBuffer: Sendable {
    public let device: VulkanDevice
    private let handle: VulkanHandle
    private let memoryHandle: VulkanHandle
    /// Bytes the buffer covers.
    public let size: UInt64
    public let memoryType: MemoryTypeInfo
    private let host: MemoryAddress?
    private let mappedByVulkan: Bool
    /// Pages imported through VK_EXT_external_memory_host; freed after the memory.
    private let ownedHostPages: MemoryAddress?
    /// An fd from `vkGetMemoryFdKHR`, exported at most once; closed here.
    private let exported = Locked<Int32?>(nil)

    /// A plain buffer for the caller's own use (e.g. a copy target): `vkCreateBuffer`,
    /// `vkAllocateMemory`, `vkBindBufferMemory`, and `vkMapMemory` when `hostVisible`.
    public convenience init(device: VulkanDevice, size: UInt64, hostVisible: Bool) throws(VulkanError) {
        guard size > 0 else { throw .invalidArgument("buffer size must be > 0") }
        let flags = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue
        try self.init(device: device, plan: BufferPlan(
            size: size, required: hostVisible ? flags : 0,
            preferred: hostVisible ? 0 : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue,
            needs: hostVisible ? "HOST_VISIBLE|HOST_COHERENT" : "any properties", map: hostVisible))
    }

    /// Runs `plan`; on any failure everything made so far is destroyed (host pages stay the caller's).
    init(device: VulkanDevice, plan: BufferPlan) throws(VulkanError) {
        let buffer = try Self.createBuffer(device, plan)
        var memory: VkDeviceMemory?
        var mapped: UnsafeMutableRawPointer?
        let type: MemoryTypeInfo
        do throws(VulkanError) {
            var requirements = VkMemoryRequirements()
            vkGetBufferMemoryRequirements(device.raw, buffer, &requirements)
            let snapshot = try device.physicalDevice.memorySnapshot()
            let allocationSize = plan.hostPages != nil ? plan.importSize : requirements.size
            if plan.hostPages != nil && requirements.size > plan.importSize {
                throw VulkanError.invalidArgument(
                    "the buffer needs \(requirements.size) bytes but \(plan.importSize) host bytes are imported")
            }
            let picked = snapshot.pick(bits: requirements.memoryTypeBits & plan.typeBits, required: plan.required,
                                       preferred: plan.preferred, avoided: plan.avoided, size: allocationSize)
            guard let chosen = picked.type else {
                if let heap = picked.overBudgetHeap {
                    throw VulkanError.overBudget(requested: allocationSize, available: heap.available, heap: heap.index)
                }
                throw VulkanError.noMemoryType(needs: plan.needs, memoryTypeBits: requirements.memoryTypeBits & plan.typeBits)
            }
            type = chosen
            memory = try Self.allocate(device, plan, buffer: buffer, size: allocationSize, typeIndex: UInt32(chosen.index))
            try check(vkBindBufferMemory(device.raw, buffer, memory, 0), "vkBindBufferMemory", VulkanError.memoryBinding)
            if plan.map {
                try check(vkMapMemory(device.raw, memory, 0, VkDeviceSize(VK_WHOLE_SIZE), 0, &mapped), "vkMapMemory",
                          VulkanError.memoryMapping)
            }
        } catch {
            vkDestroyBuffer(device.raw, buffer, nil)
            if let memory { vkFreeMemory(device.raw, memory, nil) }
            throw error
        }
        self.device = device
        handle = VulkanHandle(buffer)
        memoryHandle = VulkanHandle(memory!)
        size = plan.size
        memoryType = type
        mappedByVulkan = mapped != nil
        host = (mapped ?? plan.hostPages).map(MemoryAddress.init)
        ownedHostPages = plan.hostPages.map(MemoryAddress.init)
    }

    deinit {
        if mappedByVulkan { vkUnmapMemory(device.raw, memory) }
        vkDestroyBuffer(device.raw, raw, nil)
        vkFreeMemory(device.raw, memory, nil)
        if let exportedFD { close(exportedFD) }
        if let ownedHostPages { free(ownedHostPages.pointer) }
    }

    public var raw: VkBuffer { handle.raw }
    var memory: VkDeviceMemory { memoryHandle.raw }
    /// Host address of the bytes: the mapping, or the imported host pages; nil otherwise.
    public var hostAddress: UnsafeMutableRawPointer? { host?.pointer }
    /// An fd from `vkGetMemoryFdKHR`; the application owns it, so it is closed here.
    public var exportedFD: Int32? { exported.withLock { $0 } }

    /// The bytes as the host sees them, when it can.
    public var bytes: UnsafeMutableRawBufferPointer? {
        hostAddress.map { UnsafeMutableRawBufferPointer(start: $0, count: Int(size)) }
    }

    /// Exports the memory as an fd (`vkGetMemoryFdKHR`, fetched with `vkGetDeviceProcAddr`).
    /// The fd stays owned by this buffer.
    func exportFD(_ type: ExternalHandleType) throws(VulkanError) -> Int32 {
        try exported.withLock { (exportedFD) throws(VulkanError) -> Int32 in
            if let exportedFD { return exportedFD }
            let getFD = try device.deviceFunction("vkGetMemoryFdKHR", as: PFN_vkGetMemoryFdKHR.self)
            var info = VkMemoryGetFdInfoKHR()
            info.sType = VK_STRUCTURE_TYPE_MEMORY_GET_FD_INFO_KHR
            info.memory = memory
            info.handleType = type.bit
            var fd: Int32 = -1
            try check(getFD(device.raw, &info, &fd), "vkGetMemoryFdKHR", VulkanError.fdExport)
            exportedFD = fd
            return fd
        }
    }

    /// The address remote devices use for the memory (`vkGetMemoryRemoteAddressNV`, fetched
    /// with `vkGetDeviceProcAddr`). The memory must have been exported for the RDMA-address type.
    func remoteAddress() throws(VulkanError) -> UInt64 {
        let get = try device.deviceFunction("vkGetMemoryRemoteAddressNV", as: PFN_vkGetMemoryRemoteAddressNV.self)
        var info = VkMemoryGetRemoteAddressInfoNV()
        info.sType = VK_STRUCTURE_TYPE_MEMORY_GET_REMOTE_ADDRESS_INFO_NV
        info.memory = memory
        info.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_RDMA_ADDRESS_BIT_NV
        var address: VkRemoteAddressNV?
        try check(get(device.raw, &info, &address), "vkGetMemoryRemoteAddressNV", VulkanError.remoteAddressExport)
        guard let address else {
            throw .remoteAddressExport(function: "vkGetMemoryRemoteAddressNV", result: .errorInvalidExternalHandle)
        }
        return UInt64(UInt(bitPattern: address))
    }

    private static func createBuffer(_ device: VulkanDevice, _ plan: BufferPlan) throws(VulkanError) -> VkBuffer {
        var external = VkExternalMemoryBufferCreateInfo()
        external.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO
        external.handleTypes = plan.handleType?.bit.rawValue ?? 0
        return try withUnsafePointer(to: &external) { (externalInfo) throws(VulkanError) -> VkBuffer in
            var info = VkBufferCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
            info.pNext = plan.handleType != nil ? UnsafeRawPointer(externalInfo) : nil
            info.size = plan.size
            info.usage = bufferUsage
            // A device with a copy queue of another family shares every buffer between its
            // families, so either queue may use it without an ownership transfer.
            var families = device.sharingFamilies
            return try families.withUnsafeMutableBufferPointer { (indices) throws(VulkanError) -> VkBuffer in
                if indices.count > 1 {
                    info.sharingMode = VK_SHARING_MODE_CONCURRENT
                    info.queueFamilyIndexCount = UInt32(indices.count)
                    info.pQueueFamilyIndices = UnsafePointer(indices.baseAddress)
                } else {
                    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE
                }
                var buffer: VkBuffer?
                try check(vkCreateBuffer(device.raw, &info, nil, &buffer), "vkCreateBuffer", VulkanError.bufferCreation)
                guard let buffer else {
                    throw VulkanError.bufferCreation(function: "vkCreateBuffer", result: .errorInitializationFailed)
                }
                return buffer
            }
        }
    }

    private static func allocate(_ device: VulkanDevice, _ plan: BufferPlan, buffer: VkBuffer, size: UInt64,
                                 typeIndex: UInt32) throws(VulkanError) -> VkDeviceMemory {
        var dedicated = VkMemoryDedicatedAllocateInfo()
        dedicated.sType = VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO
        dedicated.buffer = buffer
        var export = VkExportMemoryAllocateInfo()
        export.sType = VK_STRUCTURE_TYPE_EXPORT_MEMORY_ALLOCATE_INFO
        export.handleTypes = plan.handleType?.bit.rawValue ?? 0
        var hostImport = VkImportMemoryHostPointerInfoEXT()
        hostImport.sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT
        hostImport.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
        hostImport.pHostPointer = plan.hostPages
        return try withUnsafePointer(to: &dedicated) { (dedicatedInfo) throws(VulkanError) -> VkDeviceMemory in
            export.pNext = plan.dedicated ? UnsafeRawPointer(dedicatedInfo) : nil
            return try withUnsafePointer(to: &export) { (exportInfo) throws(VulkanError) -> VkDeviceMemory in
                try withUnsafePointer(to: &hostImport) { (importInfo) throws(VulkanError) -> VkDeviceMemory in
                    var info = VkMemoryAllocateInfo()
                    info.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
                    info.allocationSize = size
                    info.memoryTypeIndex = typeIndex
                    if plan.export {
                        info.pNext = UnsafeRawPointer(exportInfo)
                    } else if plan.hostPages != nil {
                        info.pNext = UnsafeRawPointer(importInfo)
                    }
                    var memory: VkDeviceMemory?
                    try check(vkAllocateMemory(device.raw, &info, nil, &memory), "vkAllocateMemory",
                              VulkanError.memoryAllocation)
                    guard let memory else {
                        throw VulkanError.memoryAllocation(function: "vkAllocateMemory", result: .errorOutOfDeviceMemory)
                    }
                    return memory
                }
            }
        }
    }
}

extension DeviceBuffer {
    /// A buffer in memory type `memoryTypeIndex` (of `PhysicalDevice.memorySnapshot()`), mapped
    /// when `map` (the type must be HOST_VISIBLE then). For measuring or comparing memory types;
    /// throws `.noMemoryType` when the buffer cannot live in that type.
    public convenience init(device: VulkanDevice, size: UInt64, memoryTypeIndex: Int, map: Bool) throws(VulkanError) {
        guard size > 0 else { throw .invalidArgument("buffer size must be > 0") }
        guard (0..<32).contains(memoryTypeIndex) else { throw .invalidArgument("memory type index \(memoryTypeIndex)") }
        try self.init(device: device, plan: BufferPlan(
            size: size, typeBits: UInt32(1) << UInt32(memoryTypeIndex),
            required: map ? VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue : 0,
            needs: "memory type \(memoryTypeIndex)\(map ? " (HOST_VISIBLE, to map it)" : "")", map: map))
    }
}
