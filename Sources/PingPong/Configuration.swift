import Verbs
import VulkanMemory

/// The operations perftest measures.
public enum RDMAOperation: String, CaseIterable, Codable, Sendable {
    case write, writeImm = "write-imm", send, read

    /// perftest's write and send latency is half the round trip; read's is the whole read.
    public var halvesRoundTrip: Bool { self != .read }

    /// The handshake's code for the operation: fixed per case, so adding or reordering cases
    /// never changes the protocol. A new case takes a new code.
    var code: UInt8 {
        switch self {
        case .write: return 0
        case .writeImm: return 1
        case .send: return 2
        case .read: return 3
        }
    }

    /// The operation with handshake code `code`; nil for a code no operation has.
    init?(code: UInt8) {
        switch code {
        case 0: self = .write
        case 1: self = .writeImm
        case 2: self = .send
        case 3: self = .read
        default: return nil
        }
    }
}

public enum MeasurementKind: String, CaseIterable, Codable, Sendable {
    case latency, bandwidth
}

/// Where the buffers live: plain host memory or one of the Vulkan strategies.
public enum MemoryKind: String, CaseIterable, Codable, Sendable {
    case host, auto, rdmaAddress = "rdma-address", dmaBuf = "dma-buf", hostPointerImport = "host-import",
         hostVisible = "host-visible", staged

    /// The Vulkan strategy the kind names: nil for `.auto` (the automatic choice) and for `.host`
    /// (no Vulkan memory at all; see `isVulkan`).
    public var strategy: MemoryStrategy? {
        switch self {
        case .host, .auto: return nil
        case .rdmaAddress: return .rdmaAddress
        case .dmaBuf: return .dmaBuf
        case .hostPointerImport: return .hostPointerImport
        case .hostVisible: return .hostVisible
        case .staged: return .staged
        }
    }

    /// Whether the memory is a Vulkan allocation (every kind but `.host`).
    public var isVulkan: Bool { self != .host }

    /// The handshake's code for the memory kind: fixed per case, as `RDMAOperation.code`.
    var code: UInt8 {
        switch self {
        case .host: return 0
        case .auto: return 1
        case .rdmaAddress: return 2
        case .dmaBuf: return 3
        case .hostPointerImport: return 4
        case .hostVisible: return 5
        case .staged: return 6
        }
    }

    /// The memory kind with handshake code `code`; nil for a code no kind has.
    init?(code: UInt8) {
        switch code {
        case 0: self = .host
        case 1: self = .auto
        case 2: self = .rdmaAddress
        case 3: self = .dmaBuf
        case 4: self = .hostPointerImport
        case 5: self = .hostVisible
        case 6: self = .staged
        default: return nil
        }
    }
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
    /// Event mode (perftest's `-e`): receive waits sleep on the receive queue's completion
    /// channel (`ibv_req_notify_cq`, then a bounded wait for `ibv_get_cq_event`) instead of
    /// busy-polling. Latency of send and write-imm only: those are the steps whose answer is a
    /// completion.
    public var events = false
    /// How often the client reports a long step's progress (the `progress` callback); nil:
    /// never, so nothing in a step's loop depends on how long it runs (counted runs,
    /// `vkverbs pingpong --no-progress`). Heartbeats to the server go on where it needs them
    /// (read latency and bandwidth, whose server hears nothing else for the whole step).
    public var progressInterval: Duration? = .seconds(2)

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
        // A server refuses a step of more (StepRequest); checked apart so the sum cannot overflow.
        guard iterations <= StepRequest.maxTotal, warmup <= StepRequest.maxTotal - iterations else {
            throw .invalidArgument("iterations plus warm-up must be at most \(StepRequest.maxTotal)")
        }
        guard window > 0 else { throw .invalidArgument("window must be at least 1") }
        if let inline, inline < 0 || inline > 1 << 16 {
            throw .invalidArgument("inline size must be in 0...65536 bytes, got \(inline)")
        }
        if events {
            guard measurement == .latency else {
                throw .invalidArgument("event mode (-e) measures latency; bandwidth keeps the send queue full and polls")
            }
            guard operation == .send || operation == .writeImm else {
                throw .invalidArgument("event mode (-e) needs --op send or --op write-imm: a \(operation.rawValue) "
                    + (operation == .write ? "is answered by a byte in memory, which raises no completion event" : "completes on the send queue only"))
            }
        }
    }
}
