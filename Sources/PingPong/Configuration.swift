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
    }
}

/// The connection handshake: the client's request (connect private data, 40 bytes) and the
/// server's answer (accept private data, 25 bytes); the IB CM pads both, hence fixed offsets.
enum Handshake {
    static let magic: [UInt8] = Array("VKPP".utf8)
    static let version: UInt8 = 1

    /// 56 bytes: exactly what the CM carries for a connect.
    static func request(_ c: PingPongConfiguration, buffer: RemoteBuffer, mailbox: RemoteBuffer) -> [UInt8] {
        var out = magic + [version, c.operation.code, c.measurement == .latency ? 0 : 1, c.memory.code]
        withUnsafeBytes(of: UInt64(c.bufferSize).bigEndian) { out += $0 }
        return out + buffer.encoded + mailbox.encoded
    }

    struct Request {
        var operation: RDMAOperation
        var measurement: MeasurementKind
        var bufferSize: Int
        var buffer: RemoteBuffer
        var mailbox: RemoteBuffer
    }

    /// Decodes a request; anything malformed is an error, never a partial value.
    static func decodeRequest(_ data: [UInt8]) throws(VerbsError) -> Request {
        guard data.count >= 56, Array(data[0..<4]) == magic else {
            throw .invalidArgument("not a vkverbs ping-pong client (bad magic or \(data.count) bytes)")
        }
        guard data[4] == version else { throw .invalidArgument("ping-pong protocol version \(data[4]), expected \(version)") }
        guard let op = RDMAOperation(code: data[5]), data[6] <= 1 else { throw .invalidArgument("unknown operation or measurement") }
        let size = data[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard size > 0, size <= 1 << 30 else { throw .invalidArgument("requested buffer of \(size) bytes is out of range") }
        return Request(operation: op, measurement: data[6] == 0 ? .latency : .bandwidth, bufferSize: Int(size),
                       buffer: try RemoteBuffer(decoding: data[16..<36]), mailbox: try RemoteBuffer(decoding: data[36..<56]))
    }

    static func answer(buffer: RemoteBuffer, mailbox: RemoteBuffer) -> [UInt8] { magic + [0] + buffer.encoded + mailbox.encoded }

    static func decodeAnswer(_ data: [UInt8]) throws(VerbsError) -> (buffer: RemoteBuffer, mailbox: RemoteBuffer) {
        guard data.count >= 45, Array(data[0..<4]) == magic else { throw .invalidArgument("the server's answer is not a vkverbs ping-pong server's") }
        return (try RemoteBuffer(decoding: data[5..<25]), try RemoteBuffer(decoding: data[25..<45]))
    }
}
