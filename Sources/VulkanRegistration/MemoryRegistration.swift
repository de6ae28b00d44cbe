import Verbs
import VulkanMemory

extension RegistrableMemory {
    /// Registers the memory with `pd` (`ibv_reg_mr`, or `ibv_reg_dmabuf_mr` for a dma-buf at
    /// iova 0). The region's `owner` is the allocation, so the Vulkan memory lives as long as the
    /// region: the region cannot outlive what it registers, and dropping the last reference to it
    /// deregisters before the allocation can go.
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
