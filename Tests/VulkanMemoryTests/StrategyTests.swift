import VulkanMemory
import XCTest

final class StrategyTests: ValidatedVulkanTestCase {
    /// Lavapipe has neither VK_NV_external_memory_rdma nor VK_EXT_external_memory_dma_buf, so the
    /// automatic choice lands on host-pointer import and says why the two better ones were not used.
    func testAutomaticChoiceFallsBackToHostImport() throws {
        let device = try makeLavapipeDevice()
        let allocation = try device.allocate(size: 64 * 1024)
        XCTAssertEqual(allocation.strategy, .hostPointerImport)
        XCTAssertEqual(allocation.rejected.map(\.strategy), [.rdmaAddress, .dmaBuf])
        XCTAssertEqual(allocation.rejected.first?.error, .extensionMissing("VK_NV_external_memory_rdma", neededFor: "RDMA-address export"))
        XCTAssertEqual(allocation.rejected.last?.error,
                       .extensionMissing("VK_EXT_external_memory_dma_buf", neededFor: "dma-buf export"))
        XCTAssertTrue(allocation.rejected.last!.reason.contains("VK_EXT_external_memory_dma_buf"))
    }

    func testNamedNVStrategyNamesTheMissingExtension() throws {
        let device = try makeLavapipeDevice()
        do {
            _ = try device.allocate(size: 4096, strategy: .rdmaAddress)
            XCTFail("lavapipe has no VK_NV_external_memory_rdma")
        } catch {
            XCTAssertEqual(error, .extensionMissing("VK_NV_external_memory_rdma", neededFor: "RDMA-address export"))
            XCTAssertTrue(error.description.contains("VK_NV_external_memory_rdma"))
        }
    }

    func testNamedDMABufStrategyIsRefusedOnLavapipe() throws {
        let device = try makeLavapipeDevice()
        XCTAssertFalse(device.enabledExtensions.contains("VK_EXT_external_memory_dma_buf"))
        assertThrows(.extensionMissing("VK_EXT_external_memory_dma_buf", neededFor: "dma-buf export")) {
            () throws(VulkanError) in try device.allocate(size: 4096, strategy: .dmaBuf)
        }
    }

    /// Each strategy lavapipe can do allocates; the GPU fills the buffer (vkCmdFillBuffer), then a
    /// compute shader writes a pattern, and both read back right through the memory the NIC would register.
    func testGPUWritesReadBackThroughEachStrategy() throws {
        let device = try makeLavapipeDevice()
        let engine = try GPUCommandRunner(device: device)
        let kernel = try ComputeKernel(device: device, spirv: PatternShader.spirv, pushConstantSize: 8)
        let size: UInt64 = 3 * 4096 + 256  // Not a page multiple: the import path rounds up.
        for (n, strategy) in [MemoryStrategy.hostPointerImport, .hostVisible, .staged].enumerated() {
            let allocation = try device.allocate(size: size, strategy: strategy)
            XCTAssertEqual(allocation.strategy, strategy)
            XCTAssertEqual(allocation.rejected, [])
            let host = try XCTUnwrap(allocation.hostBytes, "\(strategy)")
            let registrable = allocation.registrable
            XCTAssertEqual(registrable.location, .hostPointer(host.baseAddress!, length: Int(size)), "\(strategy)")
            XCTAssertTrue(registrable.owner === allocation)
            XCTAssertEqual(allocation.staging != nil, strategy == .staged)

            try engine.fill(allocation.buffer, value: 0xA5A5_A5A5)
            try allocation.copyToStaging(using: engine)
            XCTAssertTrue(host.allSatisfy { $0 == 0xA5 }, "\(strategy): fill")

            let seed = 0x1234_5678 &+ UInt32(n)
            try writePattern(allocation.buffer, seed: seed, kernel: kernel, engine: engine)
            try allocation.copyToStaging(using: engine)
            XCTAssertEqual(Array(host.bindMemory(to: UInt32.self)), expectedPattern(words: Int(size / 4), seed: seed),
                           "\(strategy): compute")
        }
    }

    /// The staged path both ways: host bytes in the staging buffer reach the GPU buffer.
    func testStagingCopiesBothWays() throws {
        let device = try makeLavapipeDevice()
        let engine = try GPUCommandRunner(device: device)
        let allocation = try device.allocate(size: 4096, strategy: .staged)
        let staging = try XCTUnwrap(allocation.staging?.bytes)
        for i in staging.indices { staging[i] = UInt8(truncatingIfNeeded: i * 7) }
        try allocation.copyFromStaging(using: engine)
        let check = try DeviceBuffer(device: device, size: 4096, hostVisible: true)
        try engine.copy(from: allocation.buffer, to: check)
        XCTAssertEqual(Array(check.bytes!), Array(staging))
    }

    func testBadInputGivesTypedErrors() throws {
        let instance = try makeInstance()
        let physical = try lavapipe(instance)
        let device = try VulkanDevice(physicalDevice: physical)
        assertThrows(.invalidArgument("allocation size must be > 0")) { () throws(VulkanError) in
            try device.allocate(size: 0)
        }
        let heap = try device.physicalDevice.memorySnapshot().heaps.max { $0.available < $1.available }!
        assertThrows(.overBudget(requested: heap.available + 1, available: heap.available, heap: heap.index)) {
            () throws(VulkanError) in try device.allocate(size: heap.available + 1)
        }
        let count = try instance.physicalDevices().count
        assertThrows(.noSuchDevice(index: count + 5, count: count)) { () throws(VulkanError) in
            try VulkanDevice(instance: instance, deviceIndex: count + 5)
        }
        assertThrows(.extensionMissing("VK_EXT_no_such_extension",
                                       neededFor: "creating the device (the device does not support it)")) {
            () throws(VulkanError) in
            try VulkanDevice(physicalDevice: physical, options: .init(extensions: ["VK_EXT_no_such_extension"]))
        }
        assertThrows(.invalidArgument("not SPIR-V (bad magic number)")) { () throws(VulkanError) in
            try ComputeKernel(device: device, spirv: [1, 2, 3])
        }
        let engine = try GPUCommandRunner(device: device)
        let buffer = try DeviceBuffer(device: device, size: 64, hostVisible: true)
        XCTAssertThrowsError(try engine.run { (recorder) throws(VulkanError) in
            try recorder.fill(buffer, value: 0, offset: 2)
        })
        // The engine stays usable after a refused recording.
        try engine.fill(buffer, value: 7)
        XCTAssertEqual(buffer.words, Array(repeating: 7, count: 16))
    }
}
