#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// `enum ibv_port_state`.
public enum PortState: String, Codable, Sendable {
    case nop, down, initialized, armed, active, activeDefer, unknown

    init(_ raw: ibv_port_state) {
        switch raw {
        case IBV_PORT_NOP: self = .nop
        case IBV_PORT_DOWN: self = .down
        case IBV_PORT_INIT: self = .initialized
        case IBV_PORT_ARMED: self = .armed
        case IBV_PORT_ACTIVE: self = .active
        case IBV_PORT_ACTIVE_DEFER: self = .activeDefer
        default: self = .unknown
        }
    }
}

/// `enum ibv_mtu`: the path MTU values of the IB transport.
public enum MTU: Int, Codable, Sendable, Comparable {
    case mtu256 = 256, mtu512 = 512, mtu1024 = 1024, mtu2048 = 2048, mtu4096 = 4096

    init?(_ raw: ibv_mtu) {
        switch raw {
        case IBV_MTU_256: self = .mtu256
        case IBV_MTU_512: self = .mtu512
        case IBV_MTU_1024: self = .mtu1024
        case IBV_MTU_2048: self = .mtu2048
        case IBV_MTU_4096: self = .mtu4096
        default: return nil
        }
    }

    var raw: ibv_mtu {
        switch self {
        case .mtu256: return IBV_MTU_256
        case .mtu512: return IBV_MTU_512
        case .mtu1024: return IBV_MTU_1024
        case .mtu2048: return IBV_MTU_2048
        case .mtu4096: return IBV_MTU_4096
        }
    }

    public var bytes: Int { rawValue }
    public static func < (a: MTU, b: MTU) -> Bool { a.rawValue < b.rawValue }
}

/// `IBV_LINK_LAYER_*`.
public enum LinkLayer: String, Codable, Sendable {
    case unspecified, infiniband, ethernet

    init(_ raw: UInt8) {
        switch Int32(raw) {
        case Int32(IBV_LINK_LAYER_INFINIBAND): self = .infiniband
        case Int32(IBV_LINK_LAYER_ETHERNET): self = .ethernet
        default: self = .unspecified
        }
    }
}

/// `enum ibv_gid_type`.
public enum GIDType: String, Codable, Sendable {
    case ib, roceV1 = "RoCE v1", roceV2 = "RoCE v2"
}

/// A 16-byte GID (`union ibv_gid`).
public struct GID: Hashable, Codable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "a GID has 16 bytes")
        self.bytes = bytes
    }

    init(_ raw: ibv_gid) {
        var copy = raw
        bytes = withUnsafeBytes(of: &copy) { Array($0) }
    }

    var raw: ibv_gid {
        var gid = ibv_gid()
        withUnsafeMutableBytes(of: &gid) { $0.copyBytes(from: bytes) }
        return gid
    }

    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    /// The IPv4 address of an IPv4-mapped GID (::ffff:a.b.c.d), as RoCE v2 uses for IPv4.
    public var ipv4: String? {
        guard bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else { return nil }
        return bytes[12...].map(String.init).joined(separator: ".")
    }

    /// The GID as an IPv6 address; IPv4-mapped ones print as their IPv4 address.
    public var description: String {
        if let v4 = ipv4 { return v4 }
        var raw = self.raw
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// One valid entry of a port's GID table (`struct ibv_gid_entry`).
public struct GIDEntry: Codable, Sendable, Equatable {
    public var index: Int
    public var gid: GID
    public var type: GIDType
    /// The network interface the GID belongs to (RoCE), 0 for none.
    public var interfaceIndex: UInt32
    /// The IP address a RoCE GID stands for.
    public var address: String { gid.description }
}

/// A port's attributes (`struct ibv_port_attr`) and its GID table.
public struct PortInfo: Codable, Sendable, Equatable {
    public var number: UInt8
    public var state: PortState
    public var activeMTU: MTU?
    public var maxMTU: MTU?
    public var linkLayer: LinkLayer
    public var maxMessageSize: UInt32
    public var lid: UInt16
    public var gidTableLength: Int32
    public var gids: [GIDEntry]

    public var isActive: Bool { state == .active }

    /// The first RoCE v2 GID, preferring an IPv4-mapped one: what RoCE v2 traffic over IPv4 uses.
    public var roceV2GID: GIDEntry? {
        let v2 = gids.filter { $0.type == .roceV2 }
        return v2.first { $0.gid.ipv4 != nil } ?? v2.first
    }
}

/// The device-wide limits from `ibv_query_device` that callers size things by.
public struct DeviceAttributes: Codable, Sendable, Equatable {
    public var firmwareVersion: String
    public var nodeGUID: UInt64
    public var maxMRSize: UInt64
    public var pageSizeCapabilities: UInt64
    public var maxQP: Int32
    public var maxQPWorkRequests: Int32
    public var maxSGE: Int32
    public var maxCQ: Int32
    public var maxCQE: Int32
    public var maxMR: Int32
    public var maxPD: Int32
    public var maxQPReadAtomic: Int32
    public var maxQPInitiatorReadAtomic: Int32
    public var physicalPortCount: UInt8
}

/// A device with its attributes and ports, as `vkverbs devices` reports it.
public struct DeviceInfo: Codable, Sendable, Equatable {
    public var name: String
    public var attributes: DeviceAttributes
    public var ports: [PortInfo]
    /// Whether `ibv_reg_dmabuf_mr` is accepted (see `ProtectionDomain.dmaBufSupport()`).
    public var dmaBuf: DMABufSupport
}
