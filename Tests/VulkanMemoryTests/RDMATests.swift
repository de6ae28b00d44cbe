import Foundation
import Verbs
import VulkanMemory
import VulkanRegistration
import XCTest

/// Needs an RDMA device (the rxe fabric): skipped without one unless VKVERBS_REQUIRE_RDMA=1.
/// The peer is a second rdmacm connection in this process: this thread listens on
/// VKVERBS_FABRIC_ADDR, registers each strategy's memory and sends the regions in its accept
/// private data; a client thread RDMA-writes a pattern into each; then the GPU copies each
/// region into a second buffer, which must hold the pattern.
final class RDMATests: ValidatedVulkanTestCase {
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
        let nic = NICCapabilities.probe(pd: pd)
        XCTAssertEqual(nic.dmaBuf.map(\.isSupported), false, "rxe takes no dma-buf regions")
        for strategy in strategies {
            // nil: the automatic choice, told about the NIC, must not pick dma-buf (rxe refuses it).
            let allocation = try device.allocate(size: UInt64(size), strategy: strategy, nic: nic)
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
