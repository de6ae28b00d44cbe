import CVulkan

/// Who wrote a buffer's bytes outside Vulkan (a NIC, the host), and so what a command buffer must
/// record before its commands read them. A semaphore wait orders the commands after the write's
/// signal; it does not make the bytes visible to the device, or give the queue family ownership of
/// memory it shares with an external agent: that is this barrier's job.
public enum ExternalWriter: String, Sendable, CaseIterable, Codable {
    /// Memory Vulkan shares as external memory with exclusive sharing (exported as a dma-buf, or
    /// a VK_NV_external_memory_rdma address), written by a NIC: the queue family must acquire it
    /// from `VK_QUEUE_FAMILY_EXTERNAL` (a buffer memory barrier with that source family).
    case externalMemory
    /// Host-visible, host-coherent memory written by the host or by a NIC writing host pages
    /// (host-visible, host-import and staged strategies): a barrier from the host stage's writes,
    /// needed when the commands were submitted before the writes (a submission makes only the host
    /// writes made before it visible).
    case host

    /// The writer a NIC is for memory of `strategy`, as the device sees it.
    public static func nic(writing strategy: MemoryStrategy) -> ExternalWriter {
        switch strategy {
        case .rdmaAddress, .dmaBuf: return .externalMemory
        case .hostPointerImport, .hostVisible, .staged: return .host
        }
    }
}

/// What the commands after an acquire do with the bytes.
public enum AcquireUse: String, Sendable, CaseIterable, Codable {
    /// Storage-buffer reads in compute shaders.
    case shaderRead
    /// A copy's source (`vkCmdCopyBuffer`).
    case transferRead

    var stage: VkPipelineStageFlagBits {
        switch self {
        case .shaderRead: return VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
        case .transferRead: return VK_PIPELINE_STAGE_TRANSFER_BIT
        }
    }

    var access: VkAccessFlagBits {
        switch self {
        case .shaderRead: return VK_ACCESS_SHADER_READ_BIT
        case .transferRead: return VK_ACCESS_TRANSFER_READ_BIT
        }
    }
}

/// `VK_QUEUE_FAMILY_EXTERNAL` (`~1U` in vulkan_core.h, a macro Swift does not import).
let queueFamilyExternal: UInt32 = ~1
/// `VK_QUEUE_FAMILY_IGNORED` (`~0U`).
let queueFamilyIgnored: UInt32 = ~0

extension CommandRecorder {
    /// Records what makes `size` bytes at `offset` of `buffer` (the rest of it when nil), written by
    /// `writer` outside Vulkan, usable by the later commands for `use` (`vkCmdPipelineBarrier` with
    /// one `VkBufferMemoryBarrier`): for `.externalMemory` a queue family ownership acquire from
    /// `VK_QUEUE_FAMILY_EXTERNAL` to the device's queue family, for `.host` a barrier from the host
    /// stage's writes.
    public func acquire(_ buffer: DeviceBuffer, offset: UInt64 = 0, size: UInt64? = nil,
                        writtenBy writer: ExternalWriter, for use: AcquireUse) throws(VulkanError) {
        let size = size ?? (buffer.size - min(offset, buffer.size))
        guard buffer.device === device else { throw .invalidArgument("the buffer belongs to another device") }
        guard size > 0, offset <= buffer.size, size <= buffer.size - offset else {
            throw .invalidArgument("acquire of \(size) bytes at \(offset) does not fit the \(buffer.size)-byte buffer")
        }
        var barrier = VkBufferMemoryBarrier()
        barrier.sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER
        barrier.buffer = buffer.raw
        barrier.offset = offset
        barrier.size = size
        barrier.dstAccessMask = use.access.rawValue
        let sourceStage: VkPipelineStageFlagBits
        switch writer {
        case .externalMemory:
            // An acquire: the source access is ignored; the first scope is the semaphore wait's.
            // A buffer shared between the device's families (CONCURRENT) names no family of its
            // own: the other index must then be VK_QUEUE_FAMILY_IGNORED (Vulkan spec,
            // VkBufferMemoryBarrier).
            barrier.srcQueueFamilyIndex = queueFamilyExternal
            barrier.dstQueueFamilyIndex = device.sharingFamilies.count > 1 ? queueFamilyIgnored : queue.family
            barrier.srcAccessMask = 0
            sourceStage = VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT
        case .host:
            barrier.srcQueueFamilyIndex = queueFamilyIgnored
            barrier.dstQueueFamilyIndex = queueFamilyIgnored
            barrier.srcAccessMask = VK_ACCESS_HOST_WRITE_BIT.rawValue
            sourceStage = VK_PIPELINE_STAGE_HOST_BIT
        }
        vkCmdPipelineBarrier(raw, sourceStage.rawValue, use.stage.rawValue, 0, 0, nil, 1, &barrier, 0, nil)
    }
}
