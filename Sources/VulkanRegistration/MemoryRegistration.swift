#if canImport(Glibc)
import Glibc
#endif
import Verbs
import VulkanMemory

extension RegistrableMemory {
    /// Registers the memory with `pd` (`ibv_reg_mr`, or `ibv_reg_dmabuf_mr` for a dma-buf at
    /// iova 0). The region's `owner` is the allocation, so the Vulkan memory lives as long as the
    /// region: the region cannot outlive what it registers, and dropping the last reference to it
    /// deregisters before the allocation can go.
    ///
    /// `paging: .onDemand` registers host memory for on-demand paging
    /// (`ProtectionDomain.registerOnDemand`: the device must report it for what `access` grants
    /// peers, else `.unsupported` before anything is registered). A dma-buf or a GPU address is
    /// not memory the kernel can fault in for this process: `.unsupported` as well.
    public func register(with pd: ProtectionDomain, access: AccessFlags, paging: RegistrationPaging = .pinned)
        throws(VerbsError) -> MemoryRegion
    {
        switch (location, paging) {
        case let (.remoteAddress(address, length), .pinned):
            return try pd.register(address: UnsafeMutableRawPointer(bitPattern: UInt(address)), length: length,
                                   access: access, owner: owner)
        case let (.dmaBuf(fd, offset, length), .pinned):
            return try pd.registerDMABuf(fd: fd, offset: offset, length: length, iova: 0, access: access, owner: owner)
        case let (.hostPointer(pointer, length), .pinned):
            return try pd.register(address: pointer, length: length, access: access, owner: owner)
        case let (.hostPointer(pointer, length), .onDemand):
            return try pd.registerOnDemand(address: pointer, length: length, access: access, owner: owner)
        case (.remoteAddress, .onDemand), (.dmaBuf, .onDemand):
            throw VerbsError.unsupported(
                verb: "on-demand paging of \(owner.strategy) memory (\(locationName)): only memory mapped into this process "
                    + "(hostVisible, hostPointerImport, staged) can be faulted in",
                errno: EOPNOTSUPP)
        }
    }

    private var locationName: String {
        switch location {
        case .remoteAddress: return "a GPU address"
        case .dmaBuf: return "a dma-buf"
        case .hostPointer: return "host memory"
        }
    }
}
