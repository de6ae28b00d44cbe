import CVulkan

/// A `VkQueryPool` of timestamp queries on a device's queue, for timing GPU work
/// (`vkCmdWriteTimestamp`). Reset the queries in the command buffer that writes them
/// (`CommandRecorder.resetQueries`), then read them once the submission is done.
public final class TimestampQueryPool: Sendable {
    public let device: VulkanDevice
    private let handle: VulkanHandle
    public let count: UInt32
    /// Nanoseconds per timestamp tick (`VkPhysicalDeviceLimits::timestampPeriod`).
    public let period: Double
    /// Meaningful bits of a timestamp on the device's queue family (`timestampValidBits`).
    public let validBits: UInt32

    /// `vkCreateQueryPool` with `count` timestamp queries, to be written on the queue `queue`
    /// names (the copy queue's family may differ from the main one's). Throws `.featureMissing`
    /// when that queue's family has no timestamps (`timestampValidBits` 0) or the device cannot
    /// time compute and transfer work (`timestampComputeAndGraphics` false and a non-graphics queue).
    public init(device: VulkanDevice, count: UInt32, queue role: DeviceQueue.Role = .main) throws(VulkanError) {
        guard count > 0 else { throw .invalidArgument("a query pool needs at least one query") }
        let physical = device.physicalDevice
        let queueFamily = device.queue(role).family
        guard let family = physical.queueFamilies().first(where: { $0.index == queueFamily }) else {
            throw .featureMissing("queue family \(queueFamily)", neededFor: "GPU timestamps")
        }
        guard family.timestampValidBits > 0 else {
            throw .featureMissing("timestampValidBits > 0", neededFor: "GPU timestamps on queue family \(queueFamily)")
        }
        let limits = physical.properties.limits
        let graphics = family.flags & VK_QUEUE_GRAPHICS_BIT.rawValue != 0
        guard graphics || limits.timestampComputeAndGraphics == VkBool32(VK_TRUE) else {
            throw .featureMissing("timestampComputeAndGraphics", neededFor: "GPU timestamps on a compute-only queue")
        }
        var info = VkQueryPoolCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO
        info.queryType = VK_QUERY_TYPE_TIMESTAMP
        info.queryCount = count
        var pool: VkQueryPool?
        try check(vkCreateQueryPool(device.raw, &info, nil, &pool), "vkCreateQueryPool", VulkanError.commandSetup)
        guard let pool else { throw .commandSetup(function: "vkCreateQueryPool", result: .errorInitializationFailed) }
        self.device = device
        handle = VulkanHandle(pool)
        self.count = count
        period = Double(limits.timestampPeriod)
        validBits = family.timestampValidBits
    }

    deinit { vkDestroyQueryPool(device.raw, raw, nil) }

    public var raw: VkQueryPool { handle.raw }

    /// The raw tick values of queries `first..<first+count` (`vkGetQueryPoolResults` with
    /// 64-bit results and WAIT: call it after the submission that wrote them has completed).
    public func ticks(first: UInt32 = 0, count: UInt32? = nil) throws(VulkanError) -> [UInt64] {
        let n = count ?? (self.count - min(first, self.count))
        guard n > 0, first + n <= self.count else { throw .invalidArgument("queries \(first)..<\(first + n) of \(self.count)") }
        var values = [UInt64](repeating: 0, count: Int(n))
        let flags = VK_QUERY_RESULT_64_BIT.rawValue | VK_QUERY_RESULT_WAIT_BIT.rawValue
        let result = values.withUnsafeMutableBytes { bytes in
            vkGetQueryPoolResults(device.raw, raw, first, n, bytes.count, bytes.baseAddress, 8, flags)
        }
        try check(result, "vkGetQueryPoolResults", VulkanError.submission)
        let mask: UInt64 = validBits >= 64 ? .max : (UInt64(1) << validBits) - 1
        return values.map { $0 & mask }
    }

    /// Nanoseconds between query `start` and query `end` (wrapping within `validBits`).
    public func nanoseconds(from start: UInt32, to end: UInt32) throws(VulkanError) -> Double {
        let lo = min(start, end), hi = max(start, end)
        let values = try ticks(first: lo, count: hi - lo + 1)
        let mask: UInt64 = validBits >= 64 ? .max : (UInt64(1) << validBits) - 1
        let a = values[Int(start - lo)], b = values[Int(end - lo)]
        return Double((b &- a) & mask) * period
    }
}

/// Where in the pipeline a timestamp is taken.
public enum TimestampStage: Sendable {
    /// Before any later command starts (`VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT`).
    case top
    /// After every earlier command has finished (`VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT`).
    case bottom

    var bit: VkPipelineStageFlagBits {
        switch self {
        case .top: return VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT
        case .bottom: return VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT
        }
    }
}

extension CommandRecorder {
    /// Resets queries `first..<first+count` of `pool` (`vkCmdResetQueryPool`); all when `count` is nil.
    public func resetQueries(_ pool: TimestampQueryPool, first: UInt32 = 0, count: UInt32? = nil) throws(VulkanError) {
        let n = count ?? (pool.count - min(first, pool.count))
        guard pool.device === device, n > 0, first + n <= pool.count else {
            throw .invalidArgument("reset of queries \(first)..<\(first + n) of a \(pool.count)-query pool of this device")
        }
        vkCmdResetQueryPool(raw, pool.raw, first, n)
    }

    /// Writes a timestamp into query `index` of `pool` (`vkCmdWriteTimestamp`).
    public func writeTimestamp(_ pool: TimestampQueryPool, index: UInt32, stage: TimestampStage) throws(VulkanError) {
        guard pool.device === device, index < pool.count else {
            throw .invalidArgument("timestamp query \(index) of a \(pool.count)-query pool of this device")
        }
        vkCmdWriteTimestamp(raw, stage.bit, pool.raw, index)
    }
}
