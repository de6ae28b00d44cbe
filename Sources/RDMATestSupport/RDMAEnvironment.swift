#if canImport(Glibc)
import Glibc
#endif
import Verbs

/// The one place the tests find an RDMA device with an active port, or say why there is none.
/// Tests skip with that reason outside the fabric and fail with it inside (VKVERBS_REQUIRE_RDMA=1).
public struct RDMAEnvironment: Sendable {
    public let context: Context
    public let port: PortInfo
    public let gid: GIDEntry
    /// The IPv4 address rdmacm should use for this device.
    public let address: String

    public static var isRequired: Bool { environment("VKVERBS_REQUIRE_RDMA") == "1" }

    /// The device named by VKVERBS_RDMA_DEVICE and the address in VKVERBS_FABRIC_ADDR (the fabric
    /// sets both), else the first device with an active port and its RoCE v2 address.
    public static func detect() -> Result<RDMAEnvironment, RDMAUnavailable> {
        do throws(VerbsError) {
            let local = try LocalPort.find(device: environment("VKVERBS_RDMA_DEVICE"), address: environment("VKVERBS_FABRIC_ADDR"))
            return .success(RDMAEnvironment(context: local.context, port: local.port, gid: local.gid, address: local.address))
        } catch {
            return .failure(RDMAUnavailable(reason: error.description))
        }
    }
}

public struct RDMAUnavailable: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "no RDMA device: \(reason)" }
}

func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let s = String(cString: value)
    return s.isEmpty ? nil : s
}
