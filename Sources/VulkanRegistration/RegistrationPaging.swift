/// How the pages of a Vulkan allocation are held while the NIC may touch them.
public enum RegistrationPaging: Sendable, Equatable, CustomStringConvertible {
    /// Pinned for the region's whole life (`ibv_reg_mr`'s default): the pages count against
    /// the locked-memory limit (`VmPin`) from registration on.
    case pinned
    /// Registered for on-demand paging (`IBV_ACCESS_ON_DEMAND`): nothing is pinned, the kernel
    /// faults pages in when the device touches them. Only memory the process maps itself (the
    /// host-visible, host-pointer-import and staged strategies) can be; a device that does not
    /// report on-demand paging for the operations the access grants refuses with `.unsupported`.
    case onDemand

    public var description: String {
        switch self {
        case .pinned: return "pinned"
        case .onDemand: return "on-demand"
        }
    }
}
