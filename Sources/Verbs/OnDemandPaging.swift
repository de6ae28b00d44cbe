#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// What a device can do with memory registered for on-demand paging (`IBV_ACCESS_ON_DEMAND`):
/// the `odp_caps` of `ibv_query_device_ex`. Such a region is not pinned: the kernel faults its
/// pages in when the device touches them, so a large buffer costs no locked memory up front.
public struct OnDemandPaging: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The operations whose targets may be on-demand memory (`enum ibv_odp_transport_cap_bits`).
    public struct Operations: OptionSet, Codable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        public static let send = Operations(rawValue: IBV_ODP_SUPPORT_SEND.rawValue)
        public static let receive = Operations(rawValue: IBV_ODP_SUPPORT_RECV.rawValue)
        public static let write = Operations(rawValue: IBV_ODP_SUPPORT_WRITE.rawValue)
        public static let read = Operations(rawValue: IBV_ODP_SUPPORT_READ.rawValue)
        public static let atomic = Operations(rawValue: IBV_ODP_SUPPORT_ATOMIC.rawValue)
        public static let sharedReceive = Operations(rawValue: IBV_ODP_SUPPORT_SRQ_RECV.rawValue)

        /// What peers may do to a region registered with `access`: remote write needs `.write`,
        /// remote read `.read`, remote atomics `.atomic`.
        public init(peerRightsOf access: AccessFlags) {
            self = []
            if access.contains(.remoteWrite) { insert(.write) }
            if access.contains(.remoteRead) { insert(.read) }
            if access.contains(.remoteAtomic) { insert(.atomic) }
        }

        public var description: String {
            let names: [(Operations, String)] = [(.send, "send"), (.receive, "receive"), (.write, "write"), (.read, "read"),
                                                 (.atomic, "atomic"), (.sharedReceive, "srq-receive")]
            let named = names.filter { contains($0.0) }.map(\.1)
            return named.isEmpty ? "none" : named.joined(separator: ",")
        }
    }

    /// `IBV_ODP_SUPPORT` in the general capabilities: the device takes on-demand regions at all.
    public var isSupported: Bool
    /// `IBV_ODP_SUPPORT_IMPLICIT`: a region may cover the whole address space.
    public var implicit: Bool
    /// What reliable-connected queue pairs may target in on-demand memory.
    public var reliableConnected: Operations

    public init(isSupported: Bool, implicit: Bool, reliableConnected: Operations) {
        self.isSupported = isSupported
        self.implicit = implicit
        self.reliableConnected = reliableConnected
    }

    /// Whether an RC queue pair may use on-demand memory for every operation in `operations`.
    public func allows(_ operations: Operations) -> Bool { isSupported && reliableConnected.isSuperset(of: operations) }

    public var description: String {
        isSupported ? "supported (RC: \(reliableConnected)\(implicit ? ", implicit" : ""))" : "not supported"
    }
}

extension Context {
    /// The device's on-demand paging capabilities (`ibv_query_device_ex`). A device or driver
    /// without the extended query reports none.
    public func onDemandPaging() throws(VerbsError) -> OnDemandPaging {
        var attr = ibv_device_attr_ex()
        let code = ibv_query_device_ex(try raw("ibv_query_device_ex"), nil, &attr)
        switch code {
        case 0: break
        case EOPNOTSUPP, ENOTSUP, ENOSYS: return OnDemandPaging(isSupported: false, implicit: false, reliableConnected: [])
        default: throw VerbsError.fromErrno("ibv_query_device_ex", code)
        }
        let general = UInt64(attr.odp_caps.general_caps)
        return OnDemandPaging(
            isSupported: general & UInt64(IBV_ODP_SUPPORT.rawValue) != 0,
            implicit: general & UInt64(IBV_ODP_SUPPORT_IMPLICIT.rawValue) != 0,
            reliableConnected: OnDemandPaging.Operations(rawValue: attr.odp_caps.per_transport_caps.rc_odp_caps))
    }
}

extension ProtectionDomain {
    /// Registers `length` bytes at `address` for on-demand paging (`ibv_reg_mr` with
    /// `IBV_ACCESS_ON_DEMAND`): nothing is pinned; pages are faulted in as the device uses them.
    /// `operations` are what RC queue pairs will target in the region (default: what `access`
    /// grants peers). A device that does not report on-demand paging for all of them throws
    /// `.unsupported` before anything is registered.
    public func registerOnDemand(
        address: UnsafeMutableRawPointer?, length: Int, access: AccessFlags,
        operations: OnDemandPaging.Operations? = nil, owner: (any AnyObject & Sendable)? = nil
    ) throws(VerbsError) -> MemoryRegion {
        guard let address else { throw VerbsError.invalidArgument("memory region address is null") }
        guard length > 0 else { throw VerbsError.invalidArgument("memory region length must be > 0, got \(length)") }
        let access = access.union(.onDemand)
        guard access.isConsistent else {
            throw VerbsError.invalidArgument("remote write or atomic access needs local write too (access 0x\(String(access.rawValue, radix: 16)))")
        }
        let wanted = operations ?? OnDemandPaging.Operations(peerRightsOf: access)
        let caps = try context.onDemandPaging()
        guard caps.allows(wanted) else {
            throw VerbsError.unsupported(
                verb: "ibv_reg_mr with IBV_ACCESS_ON_DEMAND (\(context.name): on-demand paging \(caps); asked for RC \(wanted))",
                errno: EOPNOTSUPP)
        }
        let mr: UnsafeMutablePointer<ibv_mr>
        do {
            mr = try checkPointer("ibv_reg_mr", ibv_reg_mr(try raw("ibv_reg_mr"), address, length, access.rawValue))
        } catch {
            throw registrationError("ibv_reg_mr", length: length, error)
        }
        return MemoryRegion(raw: mr, pd: self, access: access, hostAddress: address, owner: owner)
    }

    /// Registers a host buffer for on-demand paging; the region keeps the buffer alive.
    public func registerOnDemand(
        _ buffer: HostBuffer, access: AccessFlags, operations: OnDemandPaging.Operations? = nil
    ) throws(VerbsError) -> MemoryRegion {
        try registerOnDemand(address: buffer.pointer, length: buffer.count, access: access, operations: operations, owner: buffer)
    }
}
