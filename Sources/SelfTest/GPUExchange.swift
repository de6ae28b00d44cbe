#if canImport(Glibc)
import Glibc
#endif
import Transfer
import Verbs
import VulkanMemory
import VulkanRegistration

/// GPU memory between two hosts through the transfer engine: for every (strategy, size) both
/// sides list alike, the server exposes a Vulkan allocation, the client's GPU writes a pattern that
/// the engine RDMA-writes (with immediate) into it, the server's GPU copies it out and compares
/// every byte, and the client reads it back over RDMA into a third allocation and compares again.
public enum GPUExchange {
    /// The immediate a client sends instead of data when either side lacks the strategy.
    static let skip: UInt32 = 0xFFFF_FFFF
    static let controlSize = 1 + RemoteBuffer.encodedSize

    public struct Item: Sendable { public var strategy: MemoryStrategy; public var size: Int }

    public static func items(strategies: [MemoryStrategy], sizes: [Int]) -> [Item] {
        strategies.flatMap { s in sizes.map { Item(strategy: s, size: $0) } }
    }

    final class Side {
        let engine: TransferEngine
        let device: VulkanDevice
        let runner: GPUCommandRunner
        let controlOut: MemoryRegion
        let controlIn: MemoryRegion

        init(connection: Connection, device: VulkanDevice, timeout: Duration) throws {
            engine = try TransferEngine(connection: connection, options: .init(timeout: timeout))
            self.device = device
            runner = try GPUCommandRunner(device: device)
            controlOut = try connection.pd.register(HostBuffer(count: controlSize), access: .local)
            controlIn = try connection.pd.register(HostBuffer(count: controlSize), access: .local)
        }

        var pd: ProtectionDomain { engine.pd }

        func send(status: UInt8, _ buffer: RemoteBuffer = RemoteBuffer(address: 0, length: 0, rkey: 0)) throws {
            controlOut.bytes![0] = status
            for (i, b) in buffer.encoded.enumerated() { controlOut.bytes![1 + i] = b }
            try engine.send(try controlOut.segment())
        }

        func receiveControl() throws -> (status: UInt8, buffer: RemoteBuffer) {
            _ = try engine.nextArrival()
            return (controlIn.bytes![0], try RemoteBuffer(decoding: UnsafeRawBufferPointer(controlIn.bytes!)[1...]))
        }

        /// Copies `allocation`'s GPU buffer out (through its staging buffer when staged) and finds the first wrong byte.
        func verify(_ allocation: VulkanAllocation, size: Int, seed: UInt64) throws -> Int? {
            try allocation.copyFromStaging(using: runner, timeout: .seconds(120))
            let readback = try DeviceBuffer(device: device, size: UInt64(size), hostVisible: true)
            try runner.copy(from: allocation.buffer, to: readback, size: UInt64(size), timeout: .seconds(120))
            return Pattern.firstMismatch(UnsafeRawBufferPointer(readback.bytes!), count: size, seed: seed)
        }
    }

    static func seed(_ index: Int) -> UInt64 { UInt64(index + 1) * 0x9E37 }

    /// The server's half: one connection, every item. Returns one line per item.
    public static func serve(listener: Listener, device: VulkanDevice, items: [Item],
                             timeout: Duration = .seconds(120)) throws -> [LoopbackCheck] {
        let request = try listener.accept(timeout: timeout)
        let (pd, send, receive) = try ConnectedPair.resources(request.context)
        let connection = try request.prepare(pd: pd, sendCQ: send, receiveCQ: receive).accept(timeout: timeout)
        defer { try? connection.disconnect(timeout: .seconds(2)) }
        let side = try Side(connection: connection, device: device, timeout: timeout)
        var checks: [LoopbackCheck] = []
        let nic = NICCapabilities.probe(pd: pd)
        for (index, item) in items.enumerated() {
            let target = try? device.allocate(size: UInt64(item.size), strategy: item.strategy, nic: nic)
            let targetMR = try target.map { try $0.registrable.register(with: pd, access: .remote) }
            _ = try side.engine.postReceive(nil)
            try side.send(status: targetMR == nil ? 0 : 1, targetMR?.remoteBuffer ?? RemoteBuffer(address: 0, length: 0, rkey: 0))
            let arrival = try side.engine.nextArrival()
            if arrival.immediate == skip || target == nil {
                checks.append(LoopbackCheck(strategy: item.strategy, direction: "client -> server", size: item.size,
                                            problem: "unsupported on one of the hosts", unsupported: true))
                continue
            }
            var problem: String?
            if arrival.immediate != UInt32(truncatingIfNeeded: seed(index)) {
                problem = "FAIL: immediate \(String(describing: arrival.immediate))"
            } else if let at = try side.verify(target!, size: item.size, seed: seed(index)) {
                problem = "FAIL: first wrong byte at offset \(at)"
            }
            checks.append(LoopbackCheck(strategy: item.strategy, direction: "client -> server", size: item.size,
                                        problem: problem, unsupported: false))
            try side.send(status: problem == nil ? 1 : 0)
            // The client reads the target back now; its "done" says when the target may go.
            _ = try side.engine.postReceive(try side.controlIn.segment())
            _ = try side.receiveControl()
        }
        return checks
    }

    /// The client's half.
    public static func connect(host: String, port: UInt16, device: VulkanDevice, items: [Item],
                               timeout: Duration = .seconds(120), retryFor: Duration = .seconds(60)) throws -> [LoopbackCheck] {
        let connection = try connectRetrying(host: host, port: port, timeout: timeout, retryFor: retryFor)
        defer { try? connection.disconnect(timeout: .seconds(2)) }
        let side = try Side(connection: connection, device: device, timeout: timeout)
        let pd = connection.pd
        let nic = NICCapabilities.probe(pd: pd)
        var checks: [LoopbackCheck] = []
        for (index, item) in items.enumerated() {
            _ = try side.engine.postReceive(try side.controlIn.segment())
            let (status, remote) = try side.receiveControl()
            guard status == 1, let source = try? device.allocate(size: UInt64(item.size), strategy: item.strategy, nic: nic) else {
                try side.engine.send(nil, immediate: skip)
                checks.append(LoopbackCheck(strategy: item.strategy, direction: "client -> server", size: item.size,
                                            problem: "unsupported on one of the hosts", unsupported: true))
                continue
            }
            _ = try side.engine.postReceive(try side.controlIn.segment())
            // The GPU writes the pattern: the host fills an upload buffer, the GPU copies it in.
            let upload = try DeviceBuffer(device: device, size: UInt64(item.size), hostVisible: true)
            Pattern.fill(upload.bytes!, count: item.size, seed: seed(index))
            try side.runner.copy(from: upload, to: source.buffer, size: UInt64(item.size), timeout: .seconds(120))
            let immediate = UInt32(truncatingIfNeeded: seed(index))
            if item.strategy == .staged {
                let pipeline = try StagedPipeline(engine: side.engine, device: device, chunkSize: 1 << 20, slotCount: 3)
                try pipeline.write(from: source.buffer, length: item.size, to: remote, immediate: immediate)
            } else {
                let sourceMR = try source.registrable.register(with: pd, access: .local)
                try side.engine.write(try sourceMR.segment(), to: remote, immediate: immediate)
            }
            let (verdict, _) = try side.receiveControl()
            // Read it back into a third allocation and compare here too.
            let back = try device.allocate(size: UInt64(item.size), strategy: item.strategy, nic: nic)
            let backMR = try back.registrable.register(with: pd, access: .local)
            try side.engine.read(into: try backMR.segment(), from: remote)
            let wrong = try side.verify(back, size: item.size, seed: seed(index))
            try side.send(status: 1)
            let problem = verdict != 1 ? "FAIL: the server saw wrong bytes"
                : wrong.map { "FAIL: read back, first wrong byte at offset \($0)" }
            checks.append(LoopbackCheck(strategy: item.strategy, direction: "client -> server, read back", size: item.size,
                                        problem: problem, unsupported: false))
        }
        return checks
    }

    private static func connectRetrying(host: String, port: UInt16, timeout: Duration, retryFor: Duration) throws -> Connection {
        let deadline = ContinuousClock.now + retryFor
        while true {
            do {
                return try connectOnce(host: host, port: port, timeout: timeout)
            } catch {
                guard case let .connection(f) = error, f.isNoListener, ContinuousClock.now < deadline else { throw error }
                usleep(300_000)
            }
        }
    }

    // Kept apart from the retry loop: the noncopyable route inside a do/catch in a loop crashes
    // the 6.3 compiler ("Found ownership error").
    private static func connectOnce(host: String, port: UInt16, timeout: Duration) throws(VerbsError) -> Connection {
        let route = try ResolvedRoute.resolve(host: host, port: port, timeout: timeout)
        let (pd, send, receive) = try ConnectedPair.resources(route.context)
        return try route.prepare(pd: pd, sendCQ: send, receiveCQ: receive).connect(timeout: timeout)
    }
}
