import CVerbs

/// `enum ibv_access_flags`: what the local HCA and remote peers may do with a memory region.
public struct AccessFlags: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let localWrite = AccessFlags(rawValue: Int32(IBV_ACCESS_LOCAL_WRITE.rawValue))
    public static let remoteWrite = AccessFlags(rawValue: Int32(IBV_ACCESS_REMOTE_WRITE.rawValue))
    public static let remoteRead = AccessFlags(rawValue: Int32(IBV_ACCESS_REMOTE_READ.rawValue))
    public static let remoteAtomic = AccessFlags(rawValue: Int32(IBV_ACCESS_REMOTE_ATOMIC.rawValue))
    public static let memoryWindowBind = AccessFlags(rawValue: Int32(IBV_ACCESS_MW_BIND.rawValue))
    public static let zeroBased = AccessFlags(rawValue: Int32(IBV_ACCESS_ZERO_BASED.rawValue))
    public static let onDemand = AccessFlags(rawValue: Int32(IBV_ACCESS_ON_DEMAND.rawValue))
    public static let relaxedOrdering = AccessFlags(rawValue: Int32(IBV_ACCESS_RELAXED_ORDERING.rawValue))

    /// Local use only: the HCA may write (receives, RDMA read targets); no peer rights.
    public static let local: AccessFlags = [.localWrite]
    /// Exposed to peers for RDMA write and read.
    public static let remote: AccessFlags = [.localWrite, .remoteWrite, .remoteRead]

    /// The verbs spec requires local write whenever remote write or atomics are granted.
    var isConsistent: Bool {
        if !intersection([.remoteWrite, .remoteAtomic]).isEmpty { return contains(.localWrite) }
        return true
    }
}
