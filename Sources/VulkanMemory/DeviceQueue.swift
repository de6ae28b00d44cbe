import CVulkan
import Sharing

/// One `VkQueue` of a `VulkanDevice`, its family, and the lock every submission to it holds
/// (`vkQueueSubmit` needs the queue externally synchronized).
public final class DeviceQueue: Sendable {
    /// Which of a device's queues a runner submits to.
    public enum Role: String, Sendable, Codable {
        /// The main queue (graphics or compute family): any work, compute shaders included.
        case main
        /// The queue of the device's family for copies below `CopyQueueChoice.largeCopyBytes`
        /// (`VulkanDevice.copyQueue`): copies, fills, timestamps and barriers only. The main
        /// queue where the device has no other.
        case copy
        /// The queue for larger copies (`VulkanDevice.largeCopyQueue`), with the same limits.
        case largeCopy
    }

    public let family: UInt32
    /// The family's `VkQueueFlags` as raw bits.
    public let flags: UInt32
    private let handle: VulkanHandle
    let lock = Locked<Void>(())

    init(family: UInt32, flags: UInt32, raw: VkQueue) {
        self.family = family
        self.flags = flags
        handle = VulkanHandle(raw)
    }

    /// Compute shaders can run on it.
    public var canCompute: Bool { flags & VK_QUEUE_COMPUTE_BIT.rawValue != 0 }

    /// Submit to it only under `lock`.
    public var raw: VkQueue { handle.raw }
}
