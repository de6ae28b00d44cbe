#if canImport(Glibc)
import Glibc
#endif
import Verbs

/// The one place that finds an RDMA device with an active port, or says why there is none.
/// Tests skip with that reason outside the fabric and fail with it inside (VKVERBS_REQUIRE_RDMA=1).
public struct RDMAEnvironment: Sendable {
    public let context: Context
    public let port: PortInfo
    public let gid: GIDEntry
    /// The IPv4 address rdmacm should use for this device.
    public let address: String

    public static var isRequired: Bool { environment("VKVERBS_REQUIRE_RDMA") == "1" }

    /// The device named by VKVERBS_RDMA_DEVICE (the fabric sets it), else the first with an active port.
    public static func detect() -> Result<RDMAEnvironment, RDMAUnavailable> {
        do throws(VerbsError) {
            let context = try Context.open(name: environment("VKVERBS_RDMA_DEVICE"))
            let port = try context.activePort()
            guard let gid = port.roceV2GID ?? port.gids.first else {
                return .failure(RDMAUnavailable(reason: "\(context.name) port \(port.number) has no GID"))
            }
            let address = environment("VKVERBS_FABRIC_ADDR") ?? gid.gid.ipv4 ?? gid.address
            return .success(RDMAEnvironment(context: context, port: port, gid: gid, address: address))
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
