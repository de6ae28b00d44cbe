import Transfer
import Verbs
import VulkanMemory
import VulkanRegistration

/// One direction of one size with one strategy, as `vkverbs loopback` reports it.
public struct LoopbackCheck: Sendable, CustomStringConvertible {
    public var strategy: MemoryStrategy
    public var direction: String
    public var size: Int
    /// nil: ran and verified; "unsupported: ..." or "FAIL: ..." otherwise.
    public var problem: String?
    public var unsupported: Bool

    public var passed: Bool { problem == nil }
    public var description: String {
        let status = passed ? "ok  " : (unsupported ? "n/a " : "FAIL")
        return "\(status) \(strategy.rawValue.padded(18)) \(direction.padded(16)) \(formatSize(size))\(problem.map { "  (\($0))" } ?? "")"
    }
}

extension String {
    public func padded(_ n: Int) -> String { self + String(repeating: " ", count: max(0, n - count)) }
}

/// Moves Vulkan memory both ways over one rdmacm connection to this host, with every strategy:
/// the GPU writes a pattern, the engine RDMA-writes it (with immediate) into the peer's Vulkan
/// allocation, the peer's GPU copies it out and every byte is compared; then the other way.
public enum VulkanLoopback {
    public static func run(address: String, device: VulkanDevice, sizes: [Int] = [1, 4095, 1 << 20],
                           strategies: [MemoryStrategy] = MemoryStrategy.allCases,
                           timeout: Duration = .seconds(60)) throws(TransferError) -> [LoopbackCheck] {
        let pair = try TransferError.bridge { () throws(VerbsError) in try ConnectedPair(address: address, timeout: timeout) }
        let options = TransferOptions(timeout: timeout)
        let client = try TransferEngine(connection: pair.client, options: options)
        let server = try TransferEngine(connection: pair.server, options: options)
        let runner: GPUCommandRunner
        do { runner = try GPUCommandRunner(device: device) } catch { throw .vulkan(error) }
        var checks: [LoopbackCheck] = []
        var seed: UInt64 = 1
        let clientNIC = NICCapabilities.probe(pd: pair.client.pd), serverNIC = NICCapabilities.probe(pd: pair.server.pd)
        for strategy in strategies {
            for size in sizes {
                let a: VulkanAllocation, b: VulkanAllocation
                do {
                    a = try device.allocate(size: UInt64(size), strategy: strategy, nic: clientNIC)
                    b = try device.allocate(size: UInt64(size), strategy: strategy, nic: serverNIC)
                } catch {
                    checks.append(LoopbackCheck(strategy: strategy, direction: "both ways", size: size,
                                                problem: "unsupported: \(error)", unsupported: true))
                    break  // The strategy is out for every size.
                }
                for (from, to, fromEngine, toEngine, fromPD, toPD, name) in [
                    (a, b, client, server, pair.client.pd, pair.server.pd, "client -> server"),
                    (b, a, server, client, pair.server.pd, pair.client.pd, "server -> client"),
                ] {
                    seed += 1
                    let problem = oneWay(from: from, to: to, sender: fromEngine, receiver: toEngine, senderPD: fromPD,
                                         receiverPD: toPD, size: size, seed: seed, runner: runner)
                    checks.append(LoopbackCheck(strategy: strategy, direction: name, size: size, problem: problem, unsupported: false))
                    if problem != nil { return checks }  // The engines are failed after an error.
                }
            }
        }
        return checks
    }

    /// Returns nil when every byte arrived, else what went wrong.
    private static func oneWay(from: VulkanAllocation, to: VulkanAllocation, sender: TransferEngine, receiver: TransferEngine,
                               senderPD: ProtectionDomain, receiverPD: ProtectionDomain, size: Int, seed: UInt64,
                               runner: GPUCommandRunner) -> String? {
        do {
            let device = from.device
            // The GPU writes the pattern: the host fills an upload buffer, the GPU copies it in.
            let upload = try DeviceBuffer(device: device, size: UInt64(size), hostVisible: true)
            Pattern.fill(upload.bytes!, count: size, seed: seed)
            try runner.copy(from: upload, to: from.buffer, size: UInt64(size), timeout: .seconds(60))
            try from.copyToStaging(using: runner, timeout: .seconds(60))
            let source = try from.registrable.register(with: senderPD, access: .local)
            let target = try to.registrable.register(with: receiverPD, access: .remote)
            _ = try receiver.postReceive(nil)
            try sender.write(try source.segment(), to: target.remoteBuffer, immediate: UInt32(truncatingIfNeeded: seed))
            let arrival = try receiver.nextArrival()
            guard arrival.immediate == UInt32(truncatingIfNeeded: seed) else { return "FAIL: wrong immediate \(String(describing: arrival.immediate))" }
            try to.copyFromStaging(using: runner, timeout: .seconds(60))
            let readback = try DeviceBuffer(device: device, size: UInt64(size), hostVisible: true)
            try runner.copy(from: to.buffer, to: readback, size: UInt64(size), timeout: .seconds(60))
            if let at = Pattern.firstMismatch(UnsafeRawBufferPointer(readback.bytes!), count: size, seed: seed) {
                return "FAIL: first wrong byte at offset \(at)"
            }
            return nil
        } catch {
            return "FAIL: \(error)"
        }
    }
}
