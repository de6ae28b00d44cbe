import CVulkan
import Foundation
import RDMATestSupport
import SelfTest
import Transfer
import Verbs
import VulkanMemory
import VulkanRegistration
import XCTest

/// GPU memory end to end: the GPU writes a pattern, the engine moves it into a remote Vulkan
/// allocation, the remote GPU copies it out, and a checksum of the copy must match. Every
/// strategy lavapipe offers, sizes from 1 B to 4 MiB + 1 (the staged pipeline moves that as 17
/// chunks through a ring of three 256 KiB bounce buffers, the last of 1 byte), under the validation
/// layers. The same path at 64 MiB + 1 runs between two hosts in `make test`
/// (scripts/gpu-exchange-two-hosts); with it here, this test took 156 s under TCG.
final class GPUTransferTests: RDMATestCase {
    var log = ValidationLog()

    override func setUpWithError() throws {
        try super.setUpWithError()
        log = ValidationLog()
    }

    override func tearDown() {
        defer { super.tearDown() }
        XCTAssertTrue(log.messages.isEmpty, "validation reported:\n" + log.messages.map(\.description).joined(separator: "\n"))
    }

    private func device() throws -> VulkanDevice {
        let instance = try VulkanInstance(options: .init(applicationName: "TransferTests", validation: true, validationLog: log))
        return try VulkanDevice(instance: instance, deviceIndex: 0)
    }

    /// GPU-writes `Pattern(seed)` into `buffer`: the host fills an upload buffer, the GPU copies it.
    private func gpuWritePattern(_ buffer: DeviceBuffer, count: Int, seed: UInt64, runner: GPUCommandRunner) throws {
        let upload = try DeviceBuffer(device: buffer.device, size: UInt64(count), hostVisible: true)
        Pattern.fill(upload.bytes!, count: count, seed: seed)
        try runner.copy(from: upload, to: buffer, size: UInt64(count), timeout: .seconds(60))
    }

    /// GPU-copies `buffer` into a host-visible readback buffer and returns its checksum.
    private func gpuChecksum(_ buffer: DeviceBuffer, count: Int, runner: GPUCommandRunner) throws -> UInt64 {
        let readback = try DeviceBuffer(device: buffer.device, size: UInt64(count), hostVisible: true)
        try runner.copy(from: buffer, to: readback, size: UInt64(count), timeout: .seconds(60))
        return checksum(UnsafeRawBufferPointer(readback.bytes!), count: count)
    }

    private func expectedChecksum(count: Int, seed: UInt64) throws -> UInt64 {
        let b = try HostBuffer(count: count)
        Pattern.fill(b.bytes, count: count, seed: seed)
        return checksum(UnsafeRawBufferPointer(b.bytes), count: count)
    }

    func testGPUToRemoteGPUEveryStrategyAndSize() throws {
        let vk = try device()
        let runner = try GPUCommandRunner(device: vk)
        let pair = try ConnectedPair(address: env.address)
        let client = try TransferEngine(connection: pair.client, options: .init(timeout: .seconds(120)))
        let server = try TransferEngine(connection: pair.server, options: .init(timeout: .seconds(120)))
        let timeline = try TimelineSemaphore(device: vk)
        var step: UInt64 = 0

        for strategy in [MemoryStrategy.hostPointerImport, .hostVisible, .staged] {
            for size in [1, 4095, 1 << 20, (4 << 20) + 1] {
                step += 1
                let seed = step * 31
                let source = try vk.allocate(size: UInt64(size), strategy: strategy)
                let target = try vk.allocate(size: UInt64(size), strategy: strategy)
                XCTAssertEqual(source.strategy, strategy)
                let sourceMR = try source.registrable.register(with: pair.client.pd, access: .local)
                let targetMR = try target.registrable.register(with: pair.server.pd, access: .remote)

                try gpuWritePattern(source.buffer, count: size, seed: seed, runner: runner)
                _ = try server.postReceive(nil)
                let pipeline = try strategy == .staged ? StagedPipeline(engine: client, device: vk, chunkSize: 256 << 10, slotCount: 3) : nil
                if let pipeline {
                    // Device-local source: through bounce buffers smaller than the transfer.
                    try pipeline.write(from: source.buffer, length: size, to: targetMR.remoteBuffer, immediate: UInt32(truncatingIfNeeded: step))
                } else {
                    try client.write(try sourceMR.segment(), to: targetMR.remoteBuffer, immediate: UInt32(truncatingIfNeeded: step))
                }
                let arrival = try server.nextArrival(signaling: timeline, value: step)
                XCTAssertEqual(arrival.immediate, UInt32(truncatingIfNeeded: step), "\(strategy) \(size): notified once")
                XCTAssertEqual(try timeline.value(), step, "arrival signalled the timeline")
                try target.copyFromStaging(using: runner, timeout: .seconds(60))
                XCTAssertEqual(try gpuChecksum(target.buffer, count: size, runner: runner),
                               try expectedChecksum(count: size, seed: seed), "\(strategy) \(size) B")

                // RDMA read back into a third allocation of the same strategy.
                let back = try vk.allocate(size: UInt64(size), strategy: strategy)
                if let pipeline {
                    // Staged the other way: RDMA reads into the bounce buffers, copied on into device-local memory.
                    try pipeline.read(into: back.buffer, length: size, from: targetMR.remoteBuffer)
                    XCTAssertEqual(try gpuChecksum(back.buffer, count: size, runner: runner),
                                   try expectedChecksum(count: size, seed: seed), "staged read back \(size) B")
                }
                let backMR = try back.registrable.register(with: pair.client.pd, access: .local)
                try client.read(into: try backMR.segment(), from: targetMR.remoteBuffer)
                try back.copyFromStaging(using: runner, timeout: .seconds(60))
                XCTAssertEqual(try gpuChecksum(back.buffer, count: size, runner: runner),
                               try expectedChecksum(count: size, seed: seed), "read back \(strategy) \(size) B")
            }
        }
    }

    func testWriteWaitsForTheGPUFence() throws {
        let vk = try device()
        let pair = try ConnectedPair(address: env.address)
        let client = try TransferEngine(connection: pair.client, options: .init(timeout: .seconds(60)))
        let timeline = try TimelineSemaphore(device: vk, initialValue: 0)
        let source = try vk.allocate(size: 4096, strategy: .hostVisible)
        let target = try pair.server.pd.register(HostBuffer(count: 4096), access: .remote)
        let sourceMR = try source.registrable.register(with: pair.client.pd, access: .local)
        Pattern.fill(source.hostBytes!, count: 4096, seed: 5)
        // Nothing signals value 1: the write must not be posted, and must say why.
        let start = ContinuousClock.now
        var short = client.options
        short.timeout = .milliseconds(300)
        let impatient = try TransferEngine(connection: pair.client, options: short)
        XCTAssertThrowsError(try impatient.postWrite(try sourceMR.segment(), to: target.remoteBuffer, after: .timeline(timeline, value: 1))) {
            guard case TransferError.timedOut = $0 else { return XCTFail("got \($0)") }
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
        XCTAssertEqual(target.bytes!.prefix(8).allSatisfy { $0 == 0 }, true, "nothing was written")
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(200)) { try? timeline.signal(1) }
        try client.write(try sourceMR.segment(), to: target.remoteBuffer, after: .timeline(timeline, value: 1))
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(target.bytes!), count: 4096, seed: 5))
    }
}

/// FNV-1a over 8-byte words, then the tail bytes: cheap, and position-sensitive, so a changed,
/// shifted or missing byte changes it.
func checksum(_ bytes: UnsafeRawBufferPointer, count: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(count)
    let words = count / 8
    for i in 0..<words { h = (h ^ bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x100_0000_01b3 }
    for i in (words * 8)..<count { h = (h ^ UInt64(bytes[i])) &* 0x100_0000_01b3 }
    return h
}
