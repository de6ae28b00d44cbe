/// What the NIC registers for a Vulkan allocation, holding the allocation so the memory
/// outlives every use of this value (and of the memory region made from it). This module only
/// describes the memory; VulkanRegistration's `register(with:access:)` hands it to a protection domain.
public struct RegistrableMemory: Sendable {
    public enum Location: @unchecked Sendable, Equatable {  // every payload is a value; `hostPointer` is an address whose bytes the allocation's user synchronises
        /// A GPU address from `vkGetMemoryRemoteAddressNV`; a peer-memory client resolves it in `ibv_reg_mr`.
        case remoteAddress(UInt64, length: Int)
        /// A dma-buf fd from `vkGetMemoryFdKHR`, for `ibv_reg_dmabuf_mr`. The allocation owns the fd.
        case dmaBuf(fd: Int32, offset: UInt64, length: Int)
        /// Host memory (imported pages, a mapping, or a staging buffer), for `ibv_reg_mr`.
        case hostPointer(UnsafeMutableRawPointer, length: Int)
    }

    public let location: Location
    /// Whoever registers `location` must keep this alive as long as the registration (a memory
    /// region's owner), so the Vulkan memory is freed only after the NIC lets go of it.
    public let owner: VulkanAllocation

    public var length: Int {
        switch location {
        case let .remoteAddress(_, length), let .dmaBuf(_, _, length), let .hostPointer(_, length): return length
        }
    }
}
