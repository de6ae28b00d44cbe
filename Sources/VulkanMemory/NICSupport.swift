#if canImport(Glibc)
import Glibc
#endif
import Verbs

/// A GPU peer-memory client the kernel has loaded, found by its sysfs version file.
/// With one, `ibv_reg_mr` accepts GPU virtual addresses (the VK_NV_external_memory_rdma path).
public struct PeerMemoryClient: Codable, Sendable, Hashable {
    public var path: String
    public var version: String

    public init(path: String, version: String) {
        self.path = path
        self.version = version
    }
}

/// What the NIC side can take.
public struct NICSupport: Codable, Sendable, Equatable {
    /// Loaded peer-memory clients (MLNX_OFED's nv_mem, or the upstream nvidia_peermem module).
    public var peerMemoryClients: [PeerMemoryClient]
    /// `ProtectionDomain.dmaBufSupport()`; nil when no protection domain was given to probe with.
    public var dmaBuf: DMABufSupport?

    public var hasPeerMemoryClient: Bool { !peerMemoryClients.isEmpty }

    /// The sysfs files that announce a GPU peer-memory client.
    public static let peerMemoryVersionFiles = [
        "/sys/kernel/mm/memory_peers/nv_mem/version",
        "/sys/module/nvidia_peermem/version",
    ]

    /// Reads the peer-memory files and, when `pd` is given, probes it for dma-buf regions.
    public static func probe(pd: ProtectionDomain?, versionFiles: [String] = peerMemoryVersionFiles) -> NICSupport {
        let clients = versionFiles.compactMap { path in
            readSmallFile(path).map { PeerMemoryClient(path: path, version: $0) }
        }
        return NICSupport(peerMemoryClients: clients, dmaBuf: pd?.dmaBufSupport())
    }
}

/// The first line of a small text file, or nil when it cannot be read.
func readSmallFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 256)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return "" }
    let line = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return String(line.prefix { $0 != "\n" })
}
