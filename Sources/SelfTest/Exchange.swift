#if canImport(Glibc)
import Glibc
#endif
import Verbs

/// One verified step of the exchange.
public struct ExchangeCheck: Sendable, CustomStringConvertible {
    public var operation: String
    public var size: Int
    public var passed: Bool
    public var detail: String

    public var description: String {
        "\(passed ? "ok  " : "FAIL") \(operation + String(repeating: " ", count: max(0, 10 - operation.count))) \(formatSize(size))\(detail.isEmpty ? "" : "  (\(detail))")"
    }
}

public struct ExchangeReport: Sendable {
    public var role: String
    public var device: String
    public var peer: String
    public var checks: [ExchangeCheck] = []
    public var passed: Bool { !checks.isEmpty && checks.allSatisfy(\.passed) }
    public var failures: Int { checks.filter { !$0.passed }.count }
}

public struct ExchangeOptions: Sendable {
    public var sizes: [Int]
    /// Bound on every single wait (connection setup, each completion).
    public var stepTimeout: Duration

    public init(sizes: [Int] = [1, 4096, 8 << 20], stepTimeout: Duration = .seconds(60)) {
        self.sizes = sizes
        self.stepTimeout = stepTimeout
    }
}

/// Control messages: 16 bytes [kind, step, value] in little-endian, sent with send/recv.
enum Control: UInt32 {
    case ready = 1, result, wrote, readable

    static let size = 16
}

/// Recognises our peer in the connection private data; the IB CM pads it, so a magic
/// word and the descriptor sit at fixed offsets.
private let magic: [UInt8] = Array("VKV1".utf8)

/// The resources of one side: a data source, a data target the peer may write and read,
/// and small control buffers. Everything is released with the object.
final class ExchangeSide {
    let pd: ProtectionDomain
    let sendCQ: CompletionQueue
    let receiveCQ: CompletionQueue
    let source: MemoryRegion
    let target: MemoryRegion
    let controlOut: MemoryRegion
    let controlIn: MemoryRegion
    let timeout: Duration
    var connection: Connection?
    var peerTarget = RemoteBuffer(address: 0, length: 0, rkey: 0)
    private var nextID: UInt64 = 1

    init(context: Context, capacity: Int, timeout: Duration) throws(VerbsError) {
        pd = try ProtectionDomain(context: context)
        let channel = try CompletionChannel(context: context)
        sendCQ = try CompletionQueue(context: context, capacity: 16, channel: channel)
        receiveCQ = try CompletionQueue(context: context, capacity: 16, channel: channel)
        source = try pd.register(try HostBuffer(count: capacity), access: .local)
        target = try pd.register(try HostBuffer(count: capacity), access: .remote)
        controlOut = try pd.register(try HostBuffer(count: Control.size), access: .local)
        controlIn = try pd.register(try HostBuffer(count: Control.size), access: .local)
        self.timeout = timeout
    }

    var qp: QueuePair { connection!.queuePair }

    var privateData: [UInt8] { magic + target.remoteBuffer.encoded }

    static func peerDescriptor(_ data: [UInt8]) throws(VerbsError) -> RemoteBuffer {
        guard data.count >= magic.count + RemoteBuffer.encodedSize, Array(data.prefix(magic.count)) == magic else {
            throw VerbsError.invalidArgument("the peer's private data is not a VkVerbs exchange descriptor")
        }
        return try RemoteBuffer(decoding: data.dropFirst(magic.count))
    }

    private func id() -> UInt64 { defer { nextID += 1 }; return nextID }

    func postControlReceive(on qp: QueuePair) throws(VerbsError) {
        try qp.postReceive(id: id(), segment: try controlIn.segment())
    }

    func postDataReceive() throws(VerbsError) {
        try qp.postReceive(id: id(), segment: try target.segment())
    }

    func send(_ kind: Control, step: Int, value: UInt64) throws(VerbsError) {
        let out = controlOut.bytes!
        out.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: UInt32(step).littleEndian, toByteOffset: 4, as: UInt32.self)
        out.storeBytes(of: value.littleEndian, toByteOffset: 8, as: UInt64.self)
        try post(.send, segment: try controlOut.segment())
    }

    /// Posts one signaled request and waits for its completion.
    func post(_ operation: SendOperation, segment: LocalSegment?) throws(VerbsError) {
        try qp.postSend(SendRequest(id: id(), operation: operation, segment: segment))
        _ = try sendCQ.collect(1, timeout: timeout)
    }

    func receive() throws(VerbsError) -> WorkCompletion {
        try receiveCQ.collect(1, timeout: timeout)[0]
    }

    func expect(_ kind: Control, step: Int) throws(VerbsError) -> UInt64 {
        let wc = try receive()
        let inb = controlIn.bytes!
        let got = UInt32(littleEndian: inb.load(fromByteOffset: 0, as: UInt32.self))
        let gotStep = Int(UInt32(littleEndian: inb.load(fromByteOffset: 4, as: UInt32.self)))
        guard wc.byteCount == UInt32(Control.size), got == kind.rawValue, gotStep == step else {
            throw VerbsError.invalidArgument("protocol: expected control \(kind) for step \(step), got kind \(got) step \(gotStep)")
        }
        return UInt64(littleEndian: inb.load(fromByteOffset: 8, as: UInt64.self))
    }

    func verify(_ region: MemoryRegion, count: Int, seed: UInt64) -> (Bool, String) {
        if let at = Pattern.firstMismatch(UnsafeRawBufferPointer(region.bytes!), count: count, seed: seed) {
            return (false, "first wrong byte at offset \(at)")
        }
        return (true, "")
    }
}

private func seed(_ step: Int, _ op: UInt64) -> UInt64 { UInt64(step) << 8 | op }

/// The end-to-end check both the self-test and the RDMA tests run: over one rdmacm RC
/// connection, send/recv, RDMA write and RDMA read of each size, every byte compared
/// on the side that receives it. The server is the passive side.
public enum Exchange {
    /// Accepts one connection on `listener` and runs the server's half.
    public static func serve(listener: Listener, options: ExchangeOptions = .init()) throws(VerbsError) -> ExchangeReport {
        let request = try listener.accept(timeout: options.stepTimeout)
        let side = try ExchangeSide(context: request.context, capacity: options.sizes.max() ?? 1, timeout: options.stepTimeout)
        side.peerTarget = try ExchangeSide.peerDescriptor(request.privateData)
        let prepared = try request.prepare(pd: side.pd, sendCQ: side.sendCQ, receiveCQ: side.receiveCQ)
        side.connection = try prepared.accept(privateData: side.privateData, timeout: options.stepTimeout)
        var report = ExchangeReport(role: "server", device: side.pd.context.name, peer: "client")
        defer { try? side.connection?.disconnect(timeout: .seconds(2)) }

        for (step, size) in options.sizes.enumerated() {
            // send/recv: the client's bytes land in our target through a posted receive.
            try side.postDataReceive()
            try side.send(.ready, step: step, value: UInt64(size))
            let wc = try side.receive()
            var (ok, detail) = side.verify(side.target, count: size, seed: seed(step, 1))
            if wc.byteCount != UInt32(size) { ok = false; detail = "received \(wc.byteCount) bytes" }
            report.checks.append(ExchangeCheck(operation: "send/recv", size: size, passed: ok, detail: detail))
            try side.postControlReceive(on: side.qp)
            try side.send(.result, step: step, value: ok ? 1 : 0)

            // RDMA write: the client writes our target, then says so; RC ordering makes the
            // data visible before the message.
            _ = try side.expect(.wrote, step: step)
            (ok, detail) = side.verify(side.target, count: size, seed: seed(step, 2))
            report.checks.append(ExchangeCheck(operation: "RDMA write", size: size, passed: ok, detail: detail))

            // RDMA read: we fill our target, the client reads and checks it.
            Pattern.fill(side.target.bytes!, count: size, seed: seed(step, 3))
            try side.postControlReceive(on: side.qp)
            try side.send(.readable, step: step, value: ok ? 1 : 0)
            let peerOK = try side.expect(.result, step: step) == 1
            report.checks.append(ExchangeCheck(operation: "RDMA read", size: size, passed: peerOK,
                                               detail: peerOK ? "verified by client" : "client saw wrong bytes"))
        }
        return report
    }

    /// Connects to `host`:`port` and runs the client's half. While nothing listens yet the
    /// connect is retried until `retryFor` passes (the server may still be starting).
    public static func connect(host: String, port: UInt16, options: ExchangeOptions = .init(),
                               retryFor: Duration = .zero) throws(VerbsError) -> ExchangeReport {
        let deadline = ContinuousClock.now.advanced(by: retryFor)
        while true {
            do {
                return try connectOnce(host: host, port: port, options: options)
            } catch let error {
                guard case let .connection(failure) = error, failure.reason == .rejected || failure.reason == .unreachable,
                      ContinuousClock.now < deadline else { throw error }
                usleep(200_000)
            }
        }
    }

    private static func connectOnce(host: String, port: UInt16, options: ExchangeOptions) throws(VerbsError) -> ExchangeReport {
        let route = try ResolvedRoute.resolve(host: host, port: port, timeout: options.stepTimeout)
        let side = try ExchangeSide(context: route.context, capacity: options.sizes.max() ?? 1, timeout: options.stepTimeout)
        let prepared = try route.prepare(pd: side.pd, sendCQ: side.sendCQ, receiveCQ: side.receiveCQ)
        // The server's first message may come as soon as it accepts.
        try side.postControlReceive(on: prepared.queuePair)
        side.connection = try prepared.connect(privateData: side.privateData, timeout: options.stepTimeout)
        side.peerTarget = try ExchangeSide.peerDescriptor(side.connection!.peerPrivateData)
        var report = ExchangeReport(role: "client", device: side.pd.context.name, peer: host)
        defer { try? side.connection?.disconnect(timeout: .seconds(2)) }

        for (step, size) in options.sizes.enumerated() {
            _ = try side.expect(.ready, step: step)
            try side.postControlReceive(on: side.qp)
            Pattern.fill(side.source.bytes!, count: size, seed: seed(step, 1))
            try side.post(.send, segment: try side.source.segment(offset: 0, length: size))
            let sendOK = try side.expect(.result, step: step) == 1
            report.checks.append(ExchangeCheck(operation: "send/recv", size: size, passed: sendOK,
                                               detail: sendOK ? "verified by server" : "server saw wrong bytes"))

            try side.postControlReceive(on: side.qp)
            Pattern.fill(side.source.bytes!, count: size, seed: seed(step, 2))
            try side.post(.write(side.peerTarget, offset: 0), segment: try side.source.segment(offset: 0, length: size))
            try side.send(.wrote, step: step, value: UInt64(size))
            let writeOK = try side.expect(.readable, step: step) == 1
            report.checks.append(ExchangeCheck(operation: "RDMA write", size: size, passed: writeOK,
                                               detail: writeOK ? "verified by server" : "server saw wrong bytes"))

            memset(side.target.bytes!.baseAddress!, 0, size)
            try side.post(.read(side.peerTarget, offset: 0), segment: try side.target.segment(offset: 0, length: size))
            let (readOK, detail) = side.verify(side.target, count: size, seed: seed(step, 3))
            report.checks.append(ExchangeCheck(operation: "RDMA read", size: size, passed: readOK, detail: detail))
            if step + 1 < options.sizes.count { try side.postControlReceive(on: side.qp) }
            try side.send(.result, step: step, value: readOK ? 1 : 0)
        }
        return report
    }
}

public func formatSize(_ n: Int) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
    return "\(n) B"
}
