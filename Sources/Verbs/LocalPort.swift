/// A local RDMA device with an active port, and the address rdmacm should use on it: where a
/// command that connects to this host over RDMA starts. Nothing here reads the environment;
/// callers pass what they were told (command-line options, a test fabric's settings).
public struct LocalPort: Sendable {
    public let context: Context
    public let port: PortInfo
    /// The port's RoCE v2 GID, else its first.
    public let gid: GIDEntry
    /// The IPv4 address rdmacm should bind and connect to on this device.
    public let address: String

    /// The device called `device` (nil: the first device with an active port), its first active
    /// port, and `address` (nil: the IPv4 address in that port's RoCE v2 GID, else the GID itself).
    public static func find(device: String? = nil, address: String? = nil) throws(VerbsError) -> LocalPort {
        let context = try Context.open(name: device)
        let port = try context.activePort()
        guard let gid = port.roceV2GID ?? port.gids.first else {
            throw VerbsError.notFound("a GID on \(context.name) port \(port.number)")
        }
        return LocalPort(context: context, port: port, gid: gid, address: address ?? gid.gid.ipv4 ?? gid.address)
    }
}
