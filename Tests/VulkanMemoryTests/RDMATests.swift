import Foundation
import Verbs
import VulkanMemory
import XCTest

/// Needs an RDMA device (the rxe fabric): skipped without one unless VKVERBS_REQUIRE_RDMA=1.
/// The peer is a second rdmacm connection in this process: this thread listens on
/// VKVERBS_FABRIC_ADDR, registers each strategy's memory and sends the regions in its accept
/// private data; a client thread RDMA-writes a pattern into each; then the GPU copies each
/// region into a second buffer, which must hold the pattern.
final class RDMATests: ValidatedVulkanTestCase {
    private func requireFabric() throws -> String {
        let required = ProcessInfo.processInfo.environment["VKVERBS_REQUIRE_RDMA"] == "1"
        do {
            _ = try Context.open()
        } catch .notFound(let what) {
            if required {
                XCTFail("VKVERBS_REQUIRE_RDMA=1 but there is no RDMA device")
                throw VerbsError.notFound(what)
            }
            throw XCTSkip("skipped: no RDMA device")
        }
        guard let address = ProcessInfo.processInfo.environment["VKVERBS_FABRIC_ADDR"] else {
            if required {
                XCTFail("VKVERBS_REQUIRE_RDMA=1 but VKVERBS_FABRIC_ADDR is not set")
                throw VerbsError.invalidArgument("VKVERBS_FABRIC_ADDR is not set")
            }
            throw XCTSkip("skipped: VKVERBS_FABRIC_ADDR is not set")
        }
        return address
    }

    func testPeerWritesIntoEachStrategyAndGPUCopiesIt() throws {
        let address = try requireFabric()
        let device = try makeLavapipeDevice()
        let engine = try GPUCommandRunner(device: device)
        let size = 8192
        let strategies: [MemoryStrategy?] = [.hostPointerImport, .hostVisible, .staged, nil]

        let listener = try Listener(address: address, port: 0)
        let client = WriterThread(host: address, port: listener.port, size: size, count: strategies.count)
        client.start()
        let request = try listener.accept(timeout: .seconds(30))
        let pd = try ProtectionDomain(context: request.context)
        var allocations: [VulkanAllocation] = []
        var regions: [MemoryRegion] = []
        for strategy in strategies {
            // nil: the automatic choice, told about the NIC, must not pick dma-buf (rxe refuses it).
            let allocation = try device.allocate(size: UInt64(size), strategy: strategy, nic: pd)
            if strategy == nil { XCTAssertTrue(allocation.rejected.contains { $0.strategy == .dmaBuf }) }
            let region = try allocation.registrable.register(with: pd, access: .remote)
            XCTAssertTrue(region.owner === allocation)
            allocations.append(allocation)
            regions.append(region)
        }
        let cq = try CompletionQueue(context: request.context, capacity: 16)
        let prepared = try request.prepare(pd: pd, sendCQ: cq, receiveCQ: cq)
        let connection = try prepared.accept(privateData: regions.flatMap(\.remoteBuffer.encoded), timeout: .seconds(30))
        try client.wait(timeout: 60)

        for (n, allocation) in allocations.enumerated() {
            try allocation.copyFromStaging(using: engine)
            let check = try DeviceBuffer(device: device, size: UInt64(size), hostVisible: true)
            try engine.copy(from: allocation.buffer, to: check)
            XCTAssertEqual(Array(check.bytes!), WriterThread.pattern(size: size, index: n), "\(allocation.strategy)")
        }
        try? connection.disconnect(timeout: .seconds(2))  // Best effort, as the verbs layer's self-test does.
        client.finish(timeout: 10)
    }

    /// A memory region keeps its Vulkan allocation alive; dropping the region frees it.
    func testMemoryRegionOwnsTheAllocation() throws {
        _ = try requireFabric()
        let device = try makeLavapipeDevice()
        let pd = try ProtectionDomain(context: try Context.open())
        var allocation: VulkanAllocation? = try device.allocate(size: 4096, strategy: .hostVisible)
        weak let watched = allocation
        var region: MemoryRegion? = try allocation!.registrable.register(with: pd, access: .local)
        allocation = nil
        XCTAssertNotNil(watched)
        XCTAssertEqual(region?.length, 4096)
        region = nil
        XCTAssertNil(watched)
    }
}

/// The active side: connects, reads the regions from the accept's private data and RDMA-writes
/// `pattern(index:)` into region `index`, waiting for every completion.
private final class WriterThread: @unchecked Sendable {
    let host: String, port: UInt16, size: Int, count: Int
    private let written = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private var failure: Error?

    init(host: String, port: UInt16, size: Int, count: Int) {
        (self.host, self.port, self.size, self.count) = (host, port, size, count)
    }

    static func pattern(size: Int, index: Int) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 101 &+ 7) }
    }

    func start() {
        Thread.detachNewThread { [self] in
            var connection: Connection?
            do { connection = try run() } catch { failure = error }
            written.signal()
            // Stay connected until the listener side has checked the memory and hangs up.
            _ = try? connection?.waitForPeerDisconnect(timeout: .seconds(60))
            try? connection?.disconnect(timeout: .seconds(2))
            finished.signal()
        }
    }

    /// Waits until the writes completed (or failed).
    func wait(timeout seconds: Int) throws {
        guard written.wait(timeout: .now() + .seconds(seconds)) == .success else {
            throw VerbsError.timedOut(operation: "the writer thread", after: .seconds(seconds))
        }
        if let failure { throw failure }
    }

    func finish(timeout seconds: Int) { _ = finished.wait(timeout: .now() + .seconds(seconds)) }

    private func run() throws -> Connection {
        let route = try ResolvedRoute.resolve(host: host, port: port, timeout: .seconds(30))
        let pd = try ProtectionDomain(context: route.context)
        let cq = try CompletionQueue(context: route.context, capacity: 16)
        let connection = try route.prepare(pd: pd, sendCQ: cq, receiveCQ: cq).connect(timeout: .seconds(30))
        let source = try HostBuffer(count: size * count)
        for index in 0..<count {
            let bytes = Self.pattern(size: size, index: index)
            for i in 0..<size { source.bytes[index * size + i] = bytes[i] }
        }
        let region = try pd.register(source, access: .local)
        let data = connection.peerPrivateData
        for index in 0..<count {
            let remote = try RemoteBuffer(decoding: data.dropFirst(index * RemoteBuffer.encodedSize))
            try connection.queuePair.postSend(SendRequest(
                id: UInt64(index), operation: .write(remote, offset: 0),
                segment: try region.segment(offset: index * size, length: size)))
        }
        _ = try cq.collect(count, timeout: .seconds(30), mode: .busyPoll)
        return connection
    }
}
