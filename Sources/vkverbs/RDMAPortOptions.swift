import ArgumentParser
import Verbs

/// `--device NAME --address ADDR`: the local RDMA device and address of the commands that
/// connect to this host (selftest, loopback, transfer-bench). Neither reads the environment.
struct RDMAPortOptions: ParsableArguments {
    @Option(help: ArgumentHelp("RDMA device (default: the first with an active port).", valueName: "name"))
    var device: String?
    @Option(help: ArgumentHelp("Local address of the RDMA device (default: the IPv4 address of its RoCE v2 GID).",
                               valueName: "addr"))
    var address: String?

    /// The device and address these options name, or exit saying why there is none.
    func localPort() -> LocalPort {
        do {
            return try LocalPort.find(device: device, address: address)
        } catch {
            fail("no RDMA device: \(error)")
        }
    }
}
