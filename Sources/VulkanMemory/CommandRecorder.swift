import CVulkan

/// Records into the command buffer of one `GPUCommandRunner.run`. Only valid inside that call.
public struct CommandRecorder {
    let raw: VkCommandBuffer
    let device: VulkanDevice

    /// Fills `size` bytes (all from `offset` when nil) with the 32-bit `value` (`vkCmdFillBuffer`).
    /// Offset and size must be multiples of 4.
    public func fill(_ buffer: DeviceBuffer, value: UInt32, offset: UInt64 = 0, size: UInt64? = nil) throws(VulkanError) {
        let size = size ?? (buffer.size - min(offset, buffer.size))
        guard offset % 4 == 0, size % 4 == 0, size > 0, offset + size <= buffer.size else {
            throw .invalidArgument("fill offset \(offset) size \(size) must be 4-byte multiples inside the \(buffer.size)-byte buffer")
        }
        vkCmdFillBuffer(raw, buffer.raw, offset, size, value)
    }

    /// Copies `size` bytes (the smaller buffer when nil) from `source` to `destination` (`vkCmdCopyBuffer`).
    public func copy(from source: DeviceBuffer, to destination: DeviceBuffer, size: UInt64? = nil,
                     sourceOffset: UInt64 = 0, destinationOffset: UInt64 = 0) throws(VulkanError) {
        let size = size ?? min(source.size - min(sourceOffset, source.size),
                               destination.size - min(destinationOffset, destination.size))
        guard size > 0, sourceOffset + size <= source.size, destinationOffset + size <= destination.size else {
            throw .invalidArgument("copy of \(size) bytes does not fit the buffers")
        }
        var region = VkBufferCopy(srcOffset: sourceOffset, dstOffset: destinationOffset, size: size)
        vkCmdCopyBuffer(raw, source.raw, destination.raw, 1, &region)
    }

    /// Makes every earlier write of this command buffer visible to every later command and to the
    /// host (`vkCmdPipelineBarrier` with a global memory barrier). Put one between dependent steps.
    public func barrier() {
        var memoryBarrier = VkMemoryBarrier()
        memoryBarrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        memoryBarrier.srcAccessMask = VK_ACCESS_MEMORY_WRITE_BIT.rawValue
        memoryBarrier.dstAccessMask = VK_ACCESS_MEMORY_READ_BIT.rawValue | VK_ACCESS_MEMORY_WRITE_BIT.rawValue
            | VK_ACCESS_HOST_READ_BIT.rawValue
        vkCmdPipelineBarrier(raw, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT.rawValue,
                             VK_PIPELINE_STAGE_ALL_COMMANDS_BIT.rawValue | VK_PIPELINE_STAGE_HOST_BIT.rawValue,
                             0, 1, &memoryBarrier, 0, nil, 0, nil)
    }

    /// Runs `kernel` over `buffer` in `groups` workgroups with `pushConstants`
    /// (`vkUpdateDescriptorSets`, `vkCmdBindPipeline`, `vkCmdBindDescriptorSets`, `vkCmdPushConstants`,
    /// `vkCmdDispatch`).
    public func dispatch(_ kernel: ComputeKernel, buffer: DeviceBuffer, groups: UInt32,
                         pushConstants: [UInt32] = []) throws(VulkanError) {
        guard kernel.device === device else { throw .invalidArgument("the kernel belongs to another device") }
        guard UInt32(pushConstants.count * 4) <= kernel.pushConstantSize else {
            throw .invalidArgument("\(pushConstants.count * 4) bytes of push constants, the kernel takes \(kernel.pushConstantSize)")
        }
        kernel.bind(buffer)
        vkCmdBindPipeline(raw, VK_PIPELINE_BIND_POINT_COMPUTE, kernel.pipeline)
        var set: VkDescriptorSet? = kernel.descriptorSet
        vkCmdBindDescriptorSets(raw, VK_PIPELINE_BIND_POINT_COMPUTE, kernel.layout, 0, 1, &set, 0, nil)
        if !pushConstants.isEmpty {
            var constants = pushConstants
            vkCmdPushConstants(raw, kernel.layout, VK_SHADER_STAGE_COMPUTE_BIT.rawValue, 0,
                               UInt32(constants.count * 4), &constants)
        }
        vkCmdDispatch(raw, groups, 1, 1)
    }
}
