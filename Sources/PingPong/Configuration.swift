import Verbs

/// The operations perftest measures.
public enum RDMAOperation: String, CaseIterable, Codable, Sendable {
    case write, writeImm = "write-imm", send, read

    /// perftest's write and send latency is half the round trip; read's is the whole read.
    public var halvesRoundTrip: Bool { self != .read }
    var code: UInt8 { UInt8(RDMAOperation.allCases.firstIndex(of: self)!) }
    init?(code: UInt8) {
        guard Int(code) < RDMAOperation.allCases.count else { return nil }
        self = RDMAOperation.allCases[Int(code)]
    }
}

public enum MeasurementKind: String, CaseIterable, Codable, Sendable {
    case latency, bandwidth
}

/// Where the buffers live: plain host memory or one of the Vulkan strategies.
public enum MemoryKind: String, CaseIterable, Codable, Sendable {
    case host, auto, rdmaAddress = "rdma-address", dmaBuf = "dma-buf", hostPointerImport = "host-import",
         hostVisible = "host-visible", staged
    var code: UInt8 { UInt8(MemoryKind.allCases.firstIndex(of: self)!) }
}

/// One run's settings, as the client asks and the server agrees.
public struct PingPongConfiguration: Sendable, Codable {
    public var operation: RDMAOperation = .write
    public var measurement: MeasurementKind = .latency
    public var sizes: [Int] = [2]
    public var iterations: Int = 1000
    /// When set, each size runs this long instead of `iterations` (iterations is then a cap).
    public var duration: Duration?
    public var warmup: Int = 100
    public var memory: MemoryKind = .host
    /// Bound on every wait for the peer (connection, control messages, each sample).
    public var timeout: Duration = .seconds(30)
    /// Bandwidth: work requests in flight.
    public var window: Int = 128
    /// The RDMA device the run must go through (nil: whichever the route picks).
    public var device: String?
    /// Messages up to this many bytes are posted inline (`IBV_SEND_INLINE`, perftest's `-I`);
    /// nil: `defaultLatencyInline` for latency, none for bandwidth. The QPs cap it at what the
    /// device grants.
    public var inline: Int?

    /// perftest's default inline size for write latency on devices it knows (DEF_INLINE_WRITE).
    public static let defaultLatencyInline = 220

    public var inlineLimit: Int { inline ?? (measurement == .latency ? Self.defaultLatencyInline : 0) }

    public init() {}

    /// perftest's `-a` sweep: powers of two from 2 B to 8 MiB.
    public static let sweep: [Int] = (1...23).map { 1 << $0 }

    public var bufferSize: Int { sizes.max() ?? 1 }

    /// Rejects what cannot run, with a message fit for the command line.
    public func validate(maxBuffer: Int = 1 << 30) throws(VerbsError) {
        guard !sizes.isEmpty else { throw .invalidArgument("no message size given") }
        for size in sizes where size <= 0 { throw .invalidArgument("message size must be at least 1 byte, got \(size)") }
        guard bufferSize <= maxBuffer else {
            throw .invalidArgument("message size \(bufferSize) is above the \(maxBuffer)-byte limit of one buffer")
        }
        guard iterations > 0 else { throw .invalidArgument("iterations must be at least 1") }
        guard warmup >= 0 else { throw .invalidArgument("warm-up must not be negative") }
        guard window > 0 else { throw .invalidArgument("window must be at least 1") }
        if let inline, inline < 0 || inline > 1 << 16 {
            throw .invalidArgument("inline size must be in 0...65536 bytes, got \(inline)")
        }
    }
}
