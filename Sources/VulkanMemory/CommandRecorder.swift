import CVulkan

/// Records into the command buffer of one `GPUCommandRunner.run`. Only valid inside that call.
public struct CommandRecorder {
    let raw: VkCommandBuffer
    let device: VulkanDevice
    /// The queue the recording will be submitted to.
    let queue: DeviceQueue

    /// Fills `size` bytes (all from `offset` when nil) with the 32-bit `value` (`vkCmdFillBuffer`).
    /// Offset and size must be multiples of 4.
    public func fill(_ buffer: DeviceBuffer, value: UInt32, offset: UInt64 = 0, size: UInt64? = nil) throws(VulkanError) {
        let size = size ?? (buffer.size - min(offset, buffer.size))
        guard offset % 4 == 0, size % 4 == 0, size > 0, offset + size <= buffer.size else {
            throw .invalidArgument("fill offset \(offset) size \(size) must be 4-byte multiples inside the \(buffer.size)-byte buffer")
        }
        vkCmdFillBuffer(raw, buffer.raw, offset, size, value)
    }

    /// Copies `size` bytes (the smaller buffer when nil) from `source` to `destination` (`vkCmdCopyBuffer`),
    /// as `regions` consecutive regions of one command (the last takes the remainder).
    public func copy(from source: DeviceBuffer, to destination: DeviceBuffer, size: UInt64? = nil,
                     sourceOffset: UInt64 = 0, destinationOffset: UInt64 = 0, regions: Int = 1) throws(VulkanError) {
        let size = size ?? min(source.size - min(sourceOffset, source.size),
                               destination.size - min(destinationOffset, destination.size))
        guard size > 0, sourceOffset + size <= source.size, destinationOffset + size <= destination.size else {
            throw .invalidArgument("copy of \(size) bytes does not fit the buffers")
        }
        guard regions >= 1, UInt64(regions) <= size else { throw .invalidArgument("\(regions) regions for \(size) bytes") }
        if regions == 1 {
            var region = VkBufferCopy(srcOffset: sourceOffset, dstOffset: destinationOffset, size: size)
            vkCmdCopyBuffer(raw, source.raw, destination.raw, 1, &region)
            return
        }
        let piece = size / UInt64(regions)
        let list = (0..<UInt64(regions)).map { i in
            VkBufferCopy(srcOffset: sourceOffset + i * piece, dstOffset: destinationOffset + i * piece,
                         size: i == UInt64(regions) - 1 ? size - i * piece : piece)
        }
        vkCmdCopyBuffer(raw, source.raw, destination.raw, UInt32(regions), list)
    }

    /// Makes every earlier write of this command buffer visible to every later command and to the
    /// host (`vkCmdPipelineBarrier` with a global memory barrier). Put one between dependent steps.
    public func barrier() {
        barrier(.full)
    }

    /// The barrier `closing` names (`ClosingBarrier`); `.none` records nothing.
    public func barrier(_ closing: ClosingBarrier) {
        let src: (stage: VkPipelineStageFlagBits, access: VkAccessFlagBits)
        let dst: (stages: UInt32, access: UInt32)
        switch closing {
        case .none:
            return
        case .full:
            src = (VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_ACCESS_MEMORY_WRITE_BIT)
            dst = (VK_PIPELINE_STAGE_ALL_COMMANDS_BIT.rawValue | VK_PIPELINE_STAGE_HOST_BIT.rawValue,
                   VK_ACCESS_MEMORY_READ_BIT.rawValue | VK_ACCESS_MEMORY_WRITE_BIT.rawValue | VK_ACCESS_HOST_READ_BIT.rawValue)
        case .copyToHost:
            src = (VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT)
            dst = (VK_PIPELINE_STAGE_HOST_BIT.rawValue, VK_ACCESS_HOST_READ_BIT.rawValue)
        case .copyToDevice:
            src = (VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT)
            dst = (VK_PIPELINE_STAGE_ALL_COMMANDS_BIT.rawValue, VK_ACCESS_MEMORY_READ_BIT.rawValue | VK_ACCESS_MEMORY_WRITE_BIT.rawValue)
        }
        var memoryBarrier = VkMemoryBarrier()
        memoryBarrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        memoryBarrier.srcAccessMask = src.access.rawValue
        memoryBarrier.dstAccessMask = dst.access
        vkCmdPipelineBarrier(raw, src.stage.rawValue, dst.stages, 0, 1, &memoryBarrier, 0, nil, 0, nil)
    }

    /// Runs `kernel` over `buffer` in `groups` workgroups with `pushConstants`
    /// (`vkUpdateDescriptorSets`, `vkCmdBindPipeline`, `vkCmdBindDescriptorSets`, `vkCmdPushConstants`,
    /// `vkCmdDispatch`).
    public func dispatch(_ kernel: ComputeKernel, buffer: DeviceBuffer, groups: UInt32,
                         pushConstants: [UInt32] = []) throws(VulkanError) {
        try dispatch(kernel, buffers: [buffer], groups: groups, pushConstants: pushConstants)
    }

    /// Runs `kernel` over `buffers` (bindings 0 ..< n, as many as the kernel has) like `dispatch(_:buffer:)`.
    public func dispatch(_ kernel: ComputeKernel, buffers: [DeviceBuffer], groups: UInt32,
                         pushConstants: [UInt32] = []) throws(VulkanError) {
        guard kernel.device === device else { throw .invalidArgument("the kernel belongs to another device") }
        guard queue.canCompute else {
            throw .invalidArgument("queue family \(queue.family) runs no compute shaders (a copy queue): use a runner on the main queue")
        }
        guard buffers.count == kernel.storageBuffers else {
            throw .invalidArgument("\(buffers.count) buffers for a kernel of \(kernel.storageBuffers) bindings")
        }
        guard UInt32(pushConstants.count * 4) <= kernel.pushConstantSize else {
            throw .invalidArgument("\(pushConstants.count * 4) bytes of push constants, the kernel takes \(kernel.pushConstantSize)")
        }
        kernel.bind(buffers)
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
