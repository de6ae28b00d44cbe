import Sharing
import Verbs
import VulkanMemory
import VulkanRegistration

/// A receiver's ring in Vulkan memory: `memory` (for `FrameReceiver.Options.ringMemory`)
/// allocates the ring on `device` once the connection's protection domain exists, with the named
/// strategy or the automatic choice told what that NIC takes (`NICCapabilities.probe`), and
/// registers it there; `allocation` is then what the receiver's slots are, e.g. for
/// `GPUFrameChecksum`.
public final class VulkanFrameRing: Sendable {
    public let device: VulkanDevice
    /// nil: the automatic choice (`MemoryStrategy.allCases` order, checked against the NIC).
    public let strategy: MemoryStrategy?
    private let made = Locked<VulkanAllocation?>(nil)

    public init(device: VulkanDevice, strategy: MemoryStrategy? = nil) {
        self.device = device
        self.strategy = strategy
    }

    /// The ring's allocation once the receiver asked for it (nil before).
    public var allocation: VulkanAllocation? { made.withLock { $0 } }

    /// Allocates and registers the ring (remote write and read, local write); a Vulkan or
    /// registration failure is `.vulkan` / `.transport`. Asked twice, it refuses.
    public var memory: FrameReceiver.RingMemory {
        { [self] (pd, bytes) throws(FrameStream.FrameError) -> MemoryRegion in
            guard allocation == nil else { throw .invalidOptions("a VulkanFrameRing holds one ring; make another for another receiver") }
            let allocation: VulkanAllocation
            let nic = NICCapabilities.probe(pd: pd)
            do throws(VulkanError) { allocation = try device.allocate(size: UInt64(bytes), strategy: strategy, nic: nic) } catch { throw .vulkan(error) }
            let region = try FrameStream.FrameError.bridge { () throws(VerbsError) in
                try allocation.registrable.register(with: pd, access: .remote)
            }
            made.withLock { $0 = allocation }
            return region
        }
    }
}
