import Verbs
import VulkanMemory
import VulkanRegistration

/// The buffer a side measures with: host memory, or a Vulkan allocation of the asked strategy.
final class PingPongMemory {
    let region: MemoryRegion
    /// Where the host can see the bytes (nil for memory only the GPU and NIC reach).
    let hostBytes: UnsafeMutableRawPointer?
    let description: String

    /// Whether sends may be inline: the provider's CPU copies the payload from the gather list's
    /// address, so that must be where the host sees the bytes (a dma-buf region's address is
    /// an offset into the buffer, not a pointer).
    var canInline: Bool {
        guard let hostBytes else { return false }
        return UInt64(UInt(bitPattern: hostBytes)) == region.address
    }

    /// `size` bytes of host memory registered in `pd`: what `kind: .host` gives, without Vulkan.
    init(hostMemoryOf size: Int, pd: ProtectionDomain, access: AccessFlags) throws(PingPongError) {
        do {
            let buffer = try HostBuffer(count: size)
            region = try pd.register(buffer, access: access)
            hostBytes = buffer.pointer
            description = "host memory"
        } catch {
            throw .verbs(error)
        }
    }

    init(kind: MemoryKind, size: Int, pd: ProtectionDomain, access: AccessFlags, vulkan: () throws(VulkanError) -> VulkanDevice) throws(PingPongError) {
        do {
            if kind == .host {
                let buffer = try HostBuffer(count: size)
                region = try pd.register(buffer, access: access)
                hostBytes = buffer.pointer
                description = "host memory"
                return
            }
            let allocation = try vulkan().allocate(size: UInt64(size), strategy: kind.strategy, nic: .probe(pd: pd))
            region = try allocation.registrable.register(with: pd, access: access)
            hostBytes = allocation.hostBytes?.baseAddress
            description = "Vulkan \(allocation.strategy) on \(allocation.device.physicalDevice.name)"
                + (allocation.strategy == .staged ? " (the NIC works on the registered staging buffer)" : "")
        } catch let error as VerbsError {
            throw .verbs(error)
        } catch let error as VulkanError {
            throw .vulkan(error)
        } catch {
            throw .protocolError("\(error)")
        }
    }
}
