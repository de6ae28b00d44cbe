import CVulkan

/// A timeline semaphore (`VkSemaphoreTypeCreateInfo` with `VK_SEMAPHORE_TYPE_TIMELINE`): the host
/// and the GPU order work on its 64-bit counter. The transfer engine waits on it before an RDMA
/// write (GPU produced the bytes) and signals it when bytes arrive (GPU may consume them).
public final class TimelineSemaphore: Sendable {
    public let device: VulkanDevice
    private let handle: VulkanHandle
    private let ownsHandle: Bool
    private let waitSemaphores: PFN_vkWaitSemaphores
    private let signalSemaphore: PFN_vkSignalSemaphore
    private let counterValue: PFN_vkGetSemaphoreCounterValue

    /// `vkCreateSemaphore` of the timeline type, starting at `initialValue`.
    public convenience init(device: VulkanDevice, initialValue: UInt64 = 0) throws(VulkanError) {
        guard device.timelineSemaphoreEnabled else {
            throw .featureMissing("timelineSemaphore", neededFor: "a timeline semaphore")
        }
        var typeInfo = VkSemaphoreTypeCreateInfo()
        typeInfo.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO
        typeInfo.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE
        typeInfo.initialValue = initialValue
        let semaphore = try withUnsafePointer(to: &typeInfo) { (typePointer) throws(VulkanError) -> VkSemaphore in
            var info = VkSemaphoreCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO
            info.pNext = UnsafeRawPointer(typePointer)
            var semaphore: VkSemaphore?
            try check(vkCreateSemaphore(device.raw, &info, nil, &semaphore), "vkCreateSemaphore", VulkanError.commandSetup)
            guard let semaphore else { throw VulkanError.commandSetup(function: "vkCreateSemaphore", result: .errorInitializationFailed) }
            return semaphore
        }
        do {
            try self.init(borrowing: semaphore, device: device, owns: true)
        } catch {
            vkDestroySemaphore(device.raw, semaphore, nil)
            throw error
        }
    }

    /// Wraps the application's timeline semaphore; it is not destroyed here.
    public convenience init(borrowing raw: VkSemaphore, device: VulkanDevice) throws(VulkanError) {
        try self.init(borrowing: raw, device: device, owns: false)
    }

    private init(borrowing raw: VkSemaphore, device: VulkanDevice, owns: Bool) throws(VulkanError) {
        // Core names on a 1.2 device, the KHR ones through the extension otherwise.
        func function<T>(_ core: String, _ type: T.Type) throws(VulkanError) -> T {
            if let f = vkGetDeviceProcAddr(device.raw, core) ?? vkGetDeviceProcAddr(device.raw, core + "KHR") {
                return unsafeBitCast(f, to: T.self)
            }
            throw .functionMissing(core)
        }
        waitSemaphores = try function("vkWaitSemaphores", PFN_vkWaitSemaphores.self)
        signalSemaphore = try function("vkSignalSemaphore", PFN_vkSignalSemaphore.self)
        counterValue = try function("vkGetSemaphoreCounterValue", PFN_vkGetSemaphoreCounterValue.self)
        handle = VulkanHandle(raw)
        self.device = device
        ownsHandle = owns
    }

    deinit { if ownsHandle { vkDestroySemaphore(device.raw, raw, nil) } }

    public var raw: VkSemaphore { handle.raw }

    /// The counter now (`vkGetSemaphoreCounterValue`).
    public func value() throws(VulkanError) -> UInt64 {
        var value: UInt64 = 0
        try check(counterValue(device.raw, raw, &value), "vkGetSemaphoreCounterValue", VulkanError.submission)
        return value
    }

    /// Sets the counter from the host (`vkSignalSemaphore`); GPU work waiting for `value` starts.
    public func signal(_ value: UInt64) throws(VulkanError) {
        var info = VkSemaphoreSignalInfo()
        info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO
        info.semaphore = raw
        info.value = value
        try check(signalSemaphore(device.raw, &info), "vkSignalSemaphore", VulkanError.submission)
    }

    /// Waits on the host until the counter reaches `value`: polls it
    /// (`vkGetSemaphoreCounterValue`) for at most the policy's spin, then blocks
    /// (`vkWaitSemaphores`) for the rest of `timeout`.
    public func wait(for value: UInt64, timeout: Duration, policy: HostWait) throws(VulkanError) {
        try policy.wait(timeout: timeout, operation: "waiting for timeline value \(value)", function: "vkWaitSemaphores",
                        done: { () throws(VulkanError) -> Bool in try self.value() >= value },
                        block: { self.block(until: value, nanoseconds: $0) })
    }

    /// Waits on the host until the counter reaches `value` (`vkWaitSemaphores`).
    public func wait(for value: UInt64, timeout: Duration) throws(VulkanError) {
        let result = block(until: value, nanoseconds: timeout.vulkanNanoseconds)
        if result == VK_TIMEOUT { throw .timedOut(operation: "waiting for timeline value \(value)", after: timeout) }
        try check(result, "vkWaitSemaphores", VulkanError.submission)
    }

    private func block(until value: UInt64, nanoseconds: UInt64) -> VkResult {
        var semaphore: VkSemaphore? = raw
        var target = value
        let result = withUnsafePointer(to: &semaphore) { semaphores in
            withUnsafePointer(to: &target) { values in
                var info = VkSemaphoreWaitInfo()
                info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO
                info.semaphoreCount = 1
                info.pSemaphores = semaphores
                info.pValues = values
                return waitSemaphores(device.raw, &info, nanoseconds)
            }
        }
        return result
    }
}

/// Waits on the host for the application's fence (`vkWaitForFences`), e.g. the fence of the
/// submission that produced the bytes about to be sent.
public func waitForFence(_ fence: VkFence, on device: VulkanDevice, timeout: Duration) throws(VulkanError) {
    var f: VkFence? = fence
    let result = vkWaitForFences(device.raw, 1, &f, VkBool32(VK_TRUE), timeout.vulkanNanoseconds)
    if result == VK_TIMEOUT { throw .timedOut(operation: "waiting for a fence", after: timeout) }
    try check(result, "vkWaitForFences", VulkanError.submission)
}

extension Duration {
    var vulkanNanoseconds: UInt64 {
        let c = components
        guard c.seconds >= 0, c.attoseconds >= 0 else { return 0 }
        let (s, o) = UInt64(c.seconds).multipliedReportingOverflow(by: 1_000_000_000)
        return o ? UInt64.max : s &+ UInt64(c.attoseconds / 1_000_000_000)
    }
}
