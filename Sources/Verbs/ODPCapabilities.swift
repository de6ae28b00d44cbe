import CVerbs

/// What a device can do with on-demand paging (`ibv_query_device_ex`'s `odp_caps`): memory
/// registered without pinning, its pages faulted in as the NIC touches them.
public struct ODPCapabilities: Codable, Sendable, Equatable {
    /// `IBV_ODP_SUPPORT`: the device takes `IBV_ACCESS_ON_DEMAND` registrations.
    public var supported: Bool
    /// `IBV_ODP_SUPPORT_IMPLICIT`: the whole address space can be registered at once.
    public var implicit: Bool
    /// What RC queue pairs may do on such memory: "send", "recv", "write", "read", "atomic", "srq-recv".
    public var rcOperations: [String]

    public init(supported: Bool, implicit: Bool, rcOperations: [String]) {
        self.supported = supported
        self.implicit = implicit
        self.rcOperations = rcOperations
    }
}

extension Context {
    /// The device's on-demand-paging capabilities (`ibv_query_device_ex`).
    public func odpCapabilities() throws(VerbsError) -> ODPCapabilities {
        var attr = ibv_device_attr_ex()
        try checkReturnedErrno("ibv_query_device_ex", ibv_query_device_ex(try raw("ibv_query_device_ex"), nil, &attr))
        let caps = attr.odp_caps
        let rc = caps.per_transport_caps.rc_odp_caps
        let names: [(ibv_odp_transport_cap_bits, String)] = [
            (IBV_ODP_SUPPORT_SEND, "send"), (IBV_ODP_SUPPORT_RECV, "recv"), (IBV_ODP_SUPPORT_WRITE, "write"),
            (IBV_ODP_SUPPORT_READ, "read"), (IBV_ODP_SUPPORT_ATOMIC, "atomic"), (IBV_ODP_SUPPORT_SRQ_RECV, "srq-recv"),
        ]
        return ODPCapabilities(
            supported: caps.general_caps & UInt64(IBV_ODP_SUPPORT.rawValue) != 0,
            implicit: caps.general_caps & UInt64(IBV_ODP_SUPPORT_IMPLICIT.rawValue) != 0,
            rcOperations: names.filter { rc & $0.0.rawValue != 0 }.map(\.1))
    }
}
