import CVulkan

/// The command pool and primary command buffers the GPU runners record into: a pool on one of the
/// device's queue families whose buffers can be reset one by one (re-recorded for reuse).
extension VulkanDevice {
    /// `vkCreateCommandPool` with `RESET_COMMAND_BUFFER` on `family` (the main queue's when nil);
    /// the caller destroys it.
    func makeResettableCommandPool(family: UInt32? = nil) throws(VulkanError) -> VkCommandPool {
        var info = VkCommandPoolCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO
        info.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT.rawValue
        info.queueFamilyIndex = family ?? queueFamilyIndex
        var pool: VkCommandPool?
        try check(vkCreateCommandPool(raw, &info, nil, &pool), "vkCreateCommandPool", VulkanError.commandSetup)
        guard let pool else { throw .commandSetup(function: "vkCreateCommandPool", result: .errorInitializationFailed) }
        return pool
    }

    /// One primary command buffer from `pool` (freed with the pool).
    func allocatePrimaryCommandBuffer(from pool: VkCommandPool) throws(VulkanError) -> VkCommandBuffer {
        var info = VkCommandBufferAllocateInfo()
        info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
        info.commandPool = pool
        info.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY
        info.commandBufferCount = 1
        var commandBuffer: VkCommandBuffer?
        try check(vkAllocateCommandBuffers(raw, &info, &commandBuffer), "vkAllocateCommandBuffers", VulkanError.commandSetup)
        guard let commandBuffer else { throw .commandSetup(function: "vkAllocateCommandBuffers", result: .errorInitializationFailed) }
        return commandBuffer
    }
}
