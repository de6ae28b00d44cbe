#if canImport(Glibc)
import Glibc
#endif
import Verbs
import VulkanMemory

extension NICCapabilities {
    /// Reads the peer-memory files and, when `pd` is given, asks its device whether it takes
    /// dma-buf regions (`ProtectionDomain.dmaBufSupport()`); without `pd`, `dmaBuf` stays nil.
    public static func probe(pd: ProtectionDomain?, versionFiles: [String] = peerMemoryVersionFiles) -> NICCapabilities {
        let clients = versionFiles.compactMap { path in
            readSmallFile(path).map { PeerMemoryClient(path: path, version: $0) }
        }
        return NICCapabilities(peerMemoryClients: clients, dmaBuf: pd.map { DMABuf($0.dmaBufSupport()) })
    }
}

extension NICCapabilities.DMABuf {
    /// The verbs layer's answer, as VulkanMemory's value.
    public init(_ support: DMABufSupport) {
        switch support {
        case .supported: self = .supported
        case let .unsupported(code): self = .unsupported(errno: code)
        case let .unknown(code): self = .unknown(errno: code)
        }
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
