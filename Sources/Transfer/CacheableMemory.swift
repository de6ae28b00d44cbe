import Verbs
import VulkanMemory

/// Memory the engine can register through its `RegistrationCache` by address: host bytes with
/// an owner whose lifetime keys the cache's entry (an entry is never reused once its owner is
/// gone, since the pages may come back at the same address for someone else).
public protocol CacheableMemory {
    /// The first byte, the length, and the object that owns the bytes.
    func cacheableBytes() throws(TransferError) -> (base: UnsafeMutableRawPointer, count: Int, owner: AnyObject)
}

extension HostBuffer: CacheableMemory {
    public func cacheableBytes() throws(TransferError) -> (base: UnsafeMutableRawPointer, count: Int, owner: AnyObject) {
        (pointer, count, self)
    }
}

/// A Vulkan allocation whose memory the NIC registers by host address (imported host pages, a
/// mapping, a staging buffer), owned by the allocation. A dma-buf or a GPU remote address is
/// registered by VulkanRegistration instead: those are refused here.
extension RegistrableMemory: CacheableMemory {
    public func cacheableBytes() throws(TransferError) -> (base: UnsafeMutableRawPointer, count: Int, owner: AnyObject) {
        guard case let .hostPointer(pointer, length) = location else {
            throw TransferError.invalidArgument("this Vulkan allocation is not host-addressable (a dma-buf or GPU address): register it with VulkanRegistration")
        }
        return (pointer, length, owner)
    }
}
