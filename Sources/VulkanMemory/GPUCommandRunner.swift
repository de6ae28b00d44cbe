import CVulkan

/// A command pool, one reusable command buffer and a fence on the device's queue: records a
/// batch, submits it and waits for it with a timeout. Not for concurrent use.
public final class GPUCommandRunner {
    public let device: VulkanDevice
    private let pool: VkCommandPool
    private let commandBuffer: VkCommandBuffer
    private let fence: VkFence
    /// A submission whose fence wait timed out may still run: it must finish before the
    /// command buffer is reused or destroyed.
    private var pending = false

    /// `vkCreateCommandPool`, `vkAllocateCommandBuffers`, `vkCreateFence`.
    public init(device: VulkanDevice) throws(VulkanError) {
        var poolInfo = VkCommandPoolCreateInfo()
        poolInfo.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO
        poolInfo.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT.rawValue
        poolInfo.queueFamilyIndex = device.queueFamilyIndex
        var pool: VkCommandPool?
        try check(vkCreateCommandPool(device.raw, &poolInfo, nil, &pool), "vkCreateCommandPool", VulkanError.commandSetup)
        guard let pool else { throw .commandSetup(function: "vkCreateCommandPool", result: .errorInitializationFailed) }
        do throws(VulkanError) {
            var allocInfo = VkCommandBufferAllocateInfo()
            allocInfo.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
            allocInfo.commandPool = pool
            allocInfo.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY
            allocInfo.commandBufferCount = 1
            var commandBuffer: VkCommandBuffer?
            try check(vkAllocateCommandBuffers(device.raw, &allocInfo, &commandBuffer), "vkAllocateCommandBuffers",
                      VulkanError.commandSetup)
            var fenceInfo = VkFenceCreateInfo()
            fenceInfo.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
            var fence: VkFence?
            try check(vkCreateFence(device.raw, &fenceInfo, nil, &fence), "vkCreateFence", VulkanError.commandSetup)
            guard let commandBuffer, let fence else {
                throw .commandSetup(function: "vkCreateFence", result: .errorInitializationFailed)
            }
            self.commandBuffer = commandBuffer
            self.fence = fence
        } catch {
            vkDestroyCommandPool(device.raw, pool, nil)  // Frees the command buffer with it.
            throw error
        }
        self.pool = pool
        self.device = device
    }

    deinit {
        if pending { _ = vkWaitForFences(device.raw, 1, [fence], VkBool32(VK_TRUE), UInt64.max) }
        vkDestroyFence(device.raw, fence, nil)
        vkDestroyCommandPool(device.raw, pool, nil)
    }

    /// Records with `body` (`vkBeginCommandBuffer` ... `vkEndCommandBuffer`), ends with a barrier
    /// that makes the writes visible to the host, submits (`vkQueueSubmit`) and waits for the
    /// fence (`vkWaitForFences`) up to `timeout`.
    public func run(timeout: Duration = .seconds(10),
                    _ body: (CommandRecorder) throws(VulkanError) -> Void) throws(VulkanError) {
        try submit(timeout: timeout, body)
        try wait(timeout: timeout)
    }

    /// Records and submits like `run` but returns at once; `waitForCompletion` waits for the
    /// fence. Lets the caller overlap GPU copies with other work (the staged pipeline).
    public func submit(timeout: Duration = .seconds(10),
                       _ body: (CommandRecorder) throws(VulkanError) -> Void) throws(VulkanError) {
        if pending {
            // The last run timed out; it has to be done before its command buffer is touched again.
            try wait(timeout: timeout)
        }
        var begin = VkCommandBufferBeginInfo()
        begin.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT.rawValue
        try check(vkBeginCommandBuffer(commandBuffer, &begin), "vkBeginCommandBuffer", VulkanError.commandRecording)
        let recorder = CommandRecorder(raw: commandBuffer, device: device)
        do throws(VulkanError) {
            try body(recorder)
        } catch {
            // Leaves the recording state, so the next vkBeginCommandBuffer may reset it.
            _ = vkEndCommandBuffer(commandBuffer)
            throw error
        }
        recorder.barrier()
        try check(vkEndCommandBuffer(commandBuffer), "vkEndCommandBuffer", VulkanError.commandRecording)
        try check(vkResetFences(device.raw, 1, [fence]), "vkResetFences", VulkanError.submission)
        var commandBuffer: VkCommandBuffer? = self.commandBuffer
        try withUnsafePointer(to: &commandBuffer) { (buffers) throws(VulkanError) in
            var submit = VkSubmitInfo()
            submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            submit.commandBufferCount = 1
            submit.pCommandBuffers = buffers
            try device.queueLock.withLock { _ throws(VulkanError) in
                try check(vkQueueSubmit(device.queue, 1, &submit, fence), "vkQueueSubmit", VulkanError.submission)
            }
        }
        pending = true
    }

    /// Waits (`vkWaitForFences`) for the last submission; returns at once when none is pending.
    public func waitForCompletion(timeout: Duration = .seconds(10)) throws(VulkanError) {
        if pending { try wait(timeout: timeout) }
    }

    private func wait(timeout: Duration) throws(VulkanError) {
        let parts = timeout.components
        let nanoseconds = UInt64(max(0, parts.seconds)) * 1_000_000_000 + UInt64(max(0, parts.attoseconds) / 1_000_000_000)
        let result = vkWaitForFences(device.raw, 1, [fence], VkBool32(VK_TRUE), nanoseconds)
        if result == VK_TIMEOUT { throw .timedOut(operation: "waiting for the submitted commands", after: timeout) }
        try check(result, "vkWaitForFences", VulkanError.submission)
        pending = false
    }

    /// Copies `source` into `destination` (`vkCmdCopyBuffer`) and waits.
    public func copy(from source: DeviceBuffer, to destination: DeviceBuffer, size: UInt64? = nil,
                     timeout: Duration = .seconds(10)) throws(VulkanError) {
        try run(timeout: timeout) { (recorder) throws(VulkanError) in
            try recorder.copy(from: source, to: destination, size: size)
        }
    }

    /// Fills `buffer` with the 32-bit `value` (`vkCmdFillBuffer`) and waits.
    public func fill(_ buffer: DeviceBuffer, value: UInt32, timeout: Duration = .seconds(10)) throws(VulkanError) {
        try run(timeout: timeout) { (recorder) throws(VulkanError) in
            try recorder.fill(buffer, value: value)
        }
    }
}

/// Recording, the fence and `pending` are this runner's alone: one thread at a time.
@available(*, unavailable)
extension GPUCommandRunner: Sendable {}
