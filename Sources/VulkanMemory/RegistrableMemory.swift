import Verbs

/// What the NIC registers for a Vulkan allocation, holding the allocation so the memory
/// outlives every use of this value (and of the memory region made from it).
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
    public let owner: VulkanAllocation

    public var length: Int {
        switch location {
        case let .remoteAddress(_, length), let .dmaBuf(_, _, length), let .hostPointer(_, length): return length
        }
    }

    /// Registers the memory with `pd` (`ibv_reg_mr`, or `ibv_reg_dmabuf_mr` for a dma-buf at
    /// iova 0). The region's `owner` is the allocation, so the Vulkan memory lives as long as the region.
    public func register(with pd: ProtectionDomain, access: AccessFlags) throws(VerbsError) -> MemoryRegion {
        switch location {
        case let .remoteAddress(address, length):
            return try pd.register(address: UnsafeMutableRawPointer(bitPattern: UInt(address)), length: length,
                                   access: access, owner: owner)
        case let .dmaBuf(fd, offset, length):
            return try pd.registerDMABuf(fd: fd, offset: offset, length: length, iova: 0, access: access, owner: owner)
        case let .hostPointer(pointer, length):
            return try pd.register(address: pointer, length: length, access: access, owner: owner)
        }
    }
}
