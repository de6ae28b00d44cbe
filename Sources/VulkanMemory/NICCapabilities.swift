#if canImport(Glibc)
import Glibc
#endif

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

/// What the NIC side can take, as far as the choice of a memory strategy depends on it. A plain
/// value: this module asks no NIC itself; the layer that has one (VulkanRegistration's
/// `NICCapabilities.probe(pd:)`) fills it in from its device queries.
public struct NICCapabilities: Codable, Sendable, Equatable {
    /// The answer to "does the NIC take dma-buf memory regions (`ibv_reg_dmabuf_mr`)?".
    public enum DMABuf: Codable, Sendable, Equatable, CustomStringConvertible {
        case supported
        /// The driver refused (EOPNOTSUPP / EPROTONOSUPPORT): register host memory instead.
        case unsupported(errno: Int32)
        /// The probe got an answer that says neither (an old kernel, a permission problem).
        case unknown(errno: Int32)

        public var isSupported: Bool { self == .supported }

        public var description: String {
            switch self {
            case .supported: return "supported"
            case let .unsupported(code): return "not supported (\(errnoText(code)))"
            case let .unknown(code): return "unknown (\(errnoText(code)))"
            }
        }
    }

    /// Loaded peer-memory clients (MLNX_OFED's nv_mem, or the upstream nvidia_peermem module).
    public var peerMemoryClients: [PeerMemoryClient]
    /// Whether dma-buf regions are accepted; nil when nobody asked a device.
    public var dmaBuf: DMABuf?

    public init(peerMemoryClients: [PeerMemoryClient] = [], dmaBuf: DMABuf? = nil) {
        self.peerMemoryClients = peerMemoryClients
        self.dmaBuf = dmaBuf
    }

    public var hasPeerMemoryClient: Bool { !peerMemoryClients.isEmpty }

    /// The sysfs files that announce a GPU peer-memory client.
    public static let peerMemoryVersionFiles = [
        "/sys/kernel/mm/memory_peers/nv_mem/version",
        "/sys/module/nvidia_peermem/version",
    ]
}

/// `strerror`'s text for `code`.
private func errnoText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}
