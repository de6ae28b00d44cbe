import CVulkan

/// A command pool, one reusable command buffer and its completion signal (a timeline semaphore,
/// or a fence) on one of the device's queues (the main one, or the copy queue for work that only
/// copies, fills and writes timestamps): records a batch, submits it and waits for it with a timeout.
/// A recording can be submitted again and again without recording it anew (`record`, then
/// `submitRecorded`): on NVIDIA that, with a polling wait, is what brings a small copy near
/// CUDA's cost. Not for concurrent use.
public final class GPUCommandRunner {
    /// What a submission signals and the host waits on.
    public enum Completion: String, Sendable, Codable, CaseIterable {
        /// A `VkFence`, reset before each submission (`vkGetFenceStatus`, `vkWaitForFences`).
        case fence
        /// A timeline semaphore, one value higher each submission (`vkGetSemaphoreCounterValue`,
        /// `vkWaitSemaphores`); needs the timelineSemaphore feature.
        case timeline

        /// The timeline where the device has it, else the fence. Both cost the same per
        /// submission on an H200 and on lavapipe (docs/nvidia-results.md); the timeline needs no
        /// reset call and is what the staged pipeline orders its chunks with.
        public static func `default`(for device: VulkanDevice) -> Completion {
            device.timelineSemaphoreEnabled ? .timeline : .fence
        }
    }

    public let device: VulkanDevice
    /// The queue it submits to.
    public let queue: DeviceQueue
    public let completion: Completion
    /// How `run`, `waitForCompletion` and a resubmission wait; `HostWait.default(for:)` unless set.
    public var hostWait: HostWait
    private let pool: VkCommandPool
    private let commandBuffer: VkCommandBuffer
    private let fence: VkFence?
    private let timeline: TimelineSemaphore?
    /// The timeline value the last submission signals.
    private var submitted: UInt64 = 0
    /// A submission whose wait timed out may still run: it must finish before the command
    /// buffer is reused or destroyed.
    private var pending = false
    /// The command buffer holds a complete recording that may be submitted (again).
    private var recorded = false

    /// `vkCreateCommandPool` (on the family of the queue `queue` names), `vkAllocateCommandBuffers`,
    /// and `vkCreateFence` or a timeline semaphore (`completion`: `Completion.default(for:)` when
    /// nil). A `.copy` runner may record copies, fills, timestamps and barriers, not dispatches:
    /// its queue may have no compute.
    public convenience init(device: VulkanDevice, queue: DeviceQueue.Role = .main, completion: Completion? = nil,
                            hostWait: HostWait? = nil) throws(VulkanError) {
        try self.init(device: device, on: device.queue(queue), completion: completion, hostWait: hostWait)
    }

    /// A runner on `queue`, one of `device`'s.
    init(device: VulkanDevice, on queue: DeviceQueue, completion: Completion? = nil, hostWait: HostWait? = nil) throws(VulkanError) {
        let completion = completion ?? .default(for: device)
        let pool = try device.makeResettableCommandPool(family: queue.family)
        do throws(VulkanError) {
            let commandBuffer = try device.allocatePrimaryCommandBuffer(from: pool)
            switch completion {
            case .fence:
                var fenceInfo = VkFenceCreateInfo()
                fenceInfo.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
                var fence: VkFence?
                try check(vkCreateFence(device.raw, &fenceInfo, nil, &fence), "vkCreateFence", VulkanError.commandSetup)
                guard let fence else { throw .commandSetup(function: "vkCreateFence", result: .errorInitializationFailed) }
                self.fence = fence
                timeline = nil
            case .timeline:
                timeline = try TimelineSemaphore(device: device, initialValue: 0)
                fence = nil
            }
            self.commandBuffer = commandBuffer
        } catch {
            vkDestroyCommandPool(device.raw, pool, nil)  // Frees the command buffer with it.
            throw error
        }
        self.pool = pool
        self.device = device
        self.queue = queue
        self.completion = completion
        self.hostWait = hostWait ?? .default(for: device)
    }

    deinit {
        if pending {
            if let fence { _ = vkWaitForFences(device.raw, 1, [fence], VkBool32(VK_TRUE), UInt64.max) }
            if let timeline { try? timeline.wait(for: submitted, timeout: .seconds(Int64.max / 2_000_000_000)) }
        }
        if let fence { vkDestroyFence(device.raw, fence, nil) }
        vkDestroyCommandPool(device.raw, pool, nil)
    }

    /// Records with `body` (`vkBeginCommandBuffer` ... `vkEndCommandBuffer`), ends with the `closing`
    /// barrier (by default every write visible to later commands and the host), submits
    /// (`vkQueueSubmit`) and waits up to `timeout`.
    public func run(timeout: Duration = .seconds(10), closing: ClosingBarrier = .full,
                    _ body: (CommandRecorder) throws(VulkanError) -> Void) throws(VulkanError) {
        try submit(timeout: timeout, closing: closing, body)
        try wait(timeout: timeout)
    }

    /// Records and submits like `run` but returns at once; `waitForCompletion` waits.
    /// Lets the caller overlap GPU copies with other work.
    /// With `waitingFor`, the commands start only once that timeline semaphore reaches that value
    /// (a submission wait, at every stage): e.g. a frame's arrival, signalled by the host.
    public func submit(timeout: Duration = .seconds(10), closing: ClosingBarrier = .full,
                       waitingFor wait: (semaphore: TimelineSemaphore, value: UInt64)? = nil,
                       _ body: (CommandRecorder) throws(VulkanError) -> Void) throws(VulkanError) {
        try record(timeout: timeout, closing: closing, body)
        try submitRecorded(timeout: timeout, waitingFor: wait)
    }

    /// Records with `body` (and the `closing` barrier) without submitting; `submitRecorded` submits
    /// the recording, as often as wanted, until the next `record`. Waits first for a submission
    /// still pending (up to `timeout`).
    public func record(timeout: Duration = .seconds(10), closing: ClosingBarrier = .full,
                       _ body: (CommandRecorder) throws(VulkanError) -> Void) throws(VulkanError) {
        if pending {
            // The last submission may still run; its command buffer cannot be recorded over before.
            try wait(timeout: timeout)
        }
        recorded = false
        var begin = VkCommandBufferBeginInfo()
        begin.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        begin.flags = 0  // Not ONE_TIME_SUBMIT: the recording may be submitted again.
        try check(vkBeginCommandBuffer(commandBuffer, &begin), "vkBeginCommandBuffer", VulkanError.commandRecording)
        let recorder = CommandRecorder(raw: commandBuffer, device: device, queue: queue)
        do throws(VulkanError) {
            try body(recorder)
        } catch {
            // Leaves the recording state, so the next vkBeginCommandBuffer may reset it.
            _ = vkEndCommandBuffer(commandBuffer)
            throw error
        }
        recorder.barrier(closing)
        try check(vkEndCommandBuffer(commandBuffer), "vkEndCommandBuffer", VulkanError.commandRecording)
        recorded = true
    }

    /// Submits the last recording (`vkQueueSubmit`) and returns; waits first for the previous
    /// submission of it (up to `timeout`), since one command buffer runs once at a time. With
    /// `waitingFor`, the commands wait on the device for the semaphore to reach the value.
    public func submitRecorded(timeout: Duration = .seconds(10),
                               waitingFor wait: (semaphore: TimelineSemaphore, value: UInt64)? = nil) throws(VulkanError) {
        guard recorded else { throw .invalidArgument("nothing recorded to submit") }
        if let wait, wait.semaphore.device !== device { throw .invalidArgument("the semaphore to wait for belongs to another device") }
        if pending { try self.wait(timeout: timeout) }
        if let fence { try check(vkResetFences(device.raw, 1, [fence]), "vkResetFences", VulkanError.submission) }
        var commandBuffer: VkCommandBuffer? = self.commandBuffer
        var semaphore: VkSemaphore? = timeline?.raw
        var value = submitted + 1
        var waitSemaphore: VkSemaphore? = wait?.semaphore.raw
        var waitValue = wait?.value ?? 0
        var waitStage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT.rawValue
        try withUnsafePointer(to: &commandBuffer) { (buffers) throws(VulkanError) in
            try withUnsafePointer(to: &semaphore) { (semaphores) throws(VulkanError) in
                try withUnsafePointer(to: &value) { (values) throws(VulkanError) in
                    try withUnsafePointer(to: &waitSemaphore) { (waitSemaphores) throws(VulkanError) in
                        try withUnsafePointer(to: &waitValue) { (waitValues) throws(VulkanError) in
                            try withUnsafePointer(to: &waitStage) { (waitStages) throws(VulkanError) in
                                var timelineInfo = VkTimelineSemaphoreSubmitInfo()
                                timelineInfo.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO
                                if timeline != nil {
                                    timelineInfo.signalSemaphoreValueCount = 1
                                    timelineInfo.pSignalSemaphoreValues = values
                                }
                                if wait != nil {
                                    timelineInfo.waitSemaphoreValueCount = 1
                                    timelineInfo.pWaitSemaphoreValues = waitValues
                                }
                                try withUnsafePointer(to: &timelineInfo) { (timelinePointer) throws(VulkanError) in
                                    var submit = VkSubmitInfo()
                                    submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
                                    submit.commandBufferCount = 1
                                    submit.pCommandBuffers = buffers
                                    if timeline != nil || wait != nil { submit.pNext = UnsafeRawPointer(timelinePointer) }
                                    if timeline != nil {
                                        submit.signalSemaphoreCount = 1
                                        submit.pSignalSemaphores = semaphores
                                    }
                                    if wait != nil {
                                        submit.waitSemaphoreCount = 1
                                        submit.pWaitSemaphores = waitSemaphores
                                        submit.pWaitDstStageMask = waitStages
                                    }
                                    try queue.lock.withLock { _ throws(VulkanError) in
                                        try check(vkQueueSubmit(queue.raw, 1, &submit, fence), "vkQueueSubmit", VulkanError.submission)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        submitted = value
        pending = true
    }

    /// The timeline semaphore and value the last submission signals (nil before any, and with a
    /// fence). Work that waits for it on the GPU (`submit(waitingFor:)` of another runner, on any
    /// queue) sees every write of that submission without a closing barrier: the semaphore's
    /// signal and wait carry the memory dependency.
    public var lastSubmission: (semaphore: TimelineSemaphore, value: UInt64)? {
        guard let timeline, submitted > 0 else { return nil }
        return (timeline, submitted)
    }

    /// Submits the last recording again and waits for it (`submitRecorded`, then the wait).
    public func runRecorded(timeout: Duration = .seconds(10)) throws(VulkanError) {
        try submitRecorded(timeout: timeout)
        try wait(timeout: timeout)
    }

    /// Waits for the last submission; returns at once when none is pending.
    public func waitForCompletion(timeout: Duration = .seconds(10)) throws(VulkanError) {
        if pending { try wait(timeout: timeout) }
    }

    /// Whether the last submission has finished (one status query, no wait).
    public var isIdle: Bool {
        get throws(VulkanError) {
            guard pending else { return true }
            return try isDone()
        }
    }

    private func isDone() throws(VulkanError) -> Bool {
        if let timeline { return try timeline.value() >= submitted }
        let status = vkGetFenceStatus(device.raw, fence!)
        if status == VK_NOT_READY { return false }
        try check(status, "vkGetFenceStatus", VulkanError.submission)
        return true
    }

    private func wait(timeout: Duration) throws(VulkanError) {
        if let timeline {
            try timeline.wait(for: submitted, timeout: timeout, policy: hostWait)
        } else {
            let fence = self.fence!
            try hostWait.wait(timeout: timeout, operation: "waiting for the submitted commands", function: "vkWaitForFences",
                              done: { () throws(VulkanError) -> Bool in try self.isDone() },
                              block: { vkWaitForFences(self.device.raw, 1, [fence], VkBool32(VK_TRUE), $0) })
        }
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

/// Recording, the completion signal and `pending` are this runner's alone: one thread at a time.
@available(*, unavailable)
extension GPUCommandRunner: Sendable {}
