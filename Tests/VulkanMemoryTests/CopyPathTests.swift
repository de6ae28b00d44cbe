import CVulkan
import VulkanMemory
import XCTest

/// The other ways `gpu-bench` copies and closes a recording, on lavapipe under validation: a copy
/// split into regions, the copy shader, and each closing barrier give the host the same bytes.
final class CopyPathTests: ValidatedVulkanTestCase {
    /// A pattern no fill can fake, copied device-local -> host by `copy(regions:)` and by the
    /// shader, each recording closed by each barrier the host may read after.
    func testSplitCopiesAndTheCopyShaderDeliverEveryWord() throws {
        let device = try makeLavapipeDevice()
        let runner = try GPUCommandRunner(device: device)
        let kernel = try ComputeKernel(device: device, spirv: PatternShader.spirv, pushConstantSize: 8)
        let copyKernel = try ComputeKernel(device: device, spirv: CopyShader.spirv, pushConstantSize: CopyShader.pushConstantSize,
                                           storageBuffers: 2)
        let words = 3 * 4096 + 4  // 16-byte multiple, not a multiple of the regions or the workgroup
        let local = try DeviceBuffer(device: device, size: UInt64(words * 4), hostVisible: false)
        let host = try DeviceBuffer(device: device, size: UInt64(words * 4), hostVisible: true)
        try writePattern(local, seed: 0xC0FFEE, kernel: kernel, engine: runner)
        let want = expectedPattern(words: words, seed: 0xC0FFEE)
        for closing in [ClosingBarrier.full, .copyToHost] {
            for regions in [1, 3, 7] {
                host.bytes!.bindMemory(to: UInt32.self).update(repeating: 0)
                try runner.run(closing: closing) { (r) throws(VulkanError) in try r.copy(from: local, to: host, regions: regions) }
                XCTAssertEqual(host.words, want, "\(regions) regions, \(closing)")
            }
            for groups: UInt32 in [1, 5, 64] {
                host.bytes!.bindMemory(to: UInt32.self).update(repeating: 0)
                try runner.run(closing: closing) { (r) throws(VulkanError) in
                    try r.dispatch(copyKernel, buffers: [local, host], groups: groups, pushConstants: [UInt32(words / 4)])
                }
                XCTAssertEqual(host.words, want, "shader, \(groups) groups, \(closing)")
            }
        }
        assertThrows(.invalidArgument("0 regions for \(words * 4) bytes")) { () throws(VulkanError) in
            try runner.run { (r) throws(VulkanError) in try r.copy(from: local, to: host, regions: 0) }
        }
        assertThrows(.invalidArgument("1 buffers for a kernel of 2 bindings")) { () throws(VulkanError) in
            try runner.run { (r) throws(VulkanError) in try r.dispatch(copyKernel, buffer: host, groups: 1) }
        }
    }

    /// A host -> device copy closed by no barrier is what a copy of another runner reads back
    /// when it waits on the first one's semaphore (`lastSubmission`); a fence runner has none.
    func testNoBarrierCopyIsReadByWhatWaitsOnItsSemaphore() throws {
        let device = try makeLavapipeDevice()
        let writer = try GPUCommandRunner(device: device, completion: .timeline)
        let reader = try GPUCommandRunner(device: device)
        XCTAssertNil(writer.lastSubmission, "nothing submitted yet")
        XCTAssertNil(try GPUCommandRunner(device: device, completion: .fence).lastSubmission)
        let words = 4096 + 4
        let local = try DeviceBuffer(device: device, size: UInt64(words * 4), hostVisible: false)
        let source = try DeviceBuffer(device: device, size: local.size, hostVisible: true)
        let back = try DeviceBuffer(device: device, size: local.size, hostVisible: true)
        for round in 1...2 {
            let want = (0..<words).map { UInt32($0) &* 2_654_435_761 &+ UInt32(round) }
            source.bytes!.bindMemory(to: UInt32.self).update(fromContentsOf: want)
            back.bytes!.bindMemory(to: UInt32.self).update(repeating: 0)
            try writer.run(closing: .none) { (r) throws(VulkanError) in try r.copy(from: source, to: local) }
            let last = try XCTUnwrap(writer.lastSubmission)
            XCTAssertEqual(last.value, UInt64(round))
            try reader.submit(closing: .copyToHost, waitingFor: last) { (r) throws(VulkanError) in try r.copy(from: local, to: back) }
            try reader.waitForCompletion()
            XCTAssertEqual(back.words, want, "round \(round)")
        }
    }

    /// A host -> device copy closed by `.copyToDevice` (or `.full`) is what a later copy on the
    /// same queue reads back.
    func testCopyToDeviceBarrierOrdersTheNextCopy() throws {
        let device = try makeLavapipeDevice()
        let runner = try GPUCommandRunner(device: device)
        let words = 4096 + 4
        let local = try DeviceBuffer(device: device, size: UInt64(words * 4), hostVisible: false)
        let source = try DeviceBuffer(device: device, size: local.size, hostVisible: true)
        let back = try DeviceBuffer(device: device, size: local.size, hostVisible: true)
        for (round, closing) in [ClosingBarrier.copyToDevice, .full].enumerated() {
            let want = (0..<words).map { UInt32($0) &* 2_654_435_761 &+ UInt32(round) }
            source.bytes!.bindMemory(to: UInt32.self).update(fromContentsOf: want)
            back.bytes!.bindMemory(to: UInt32.self).update(repeating: 0)
            try runner.run(closing: closing) { (r) throws(VulkanError) in try r.copy(from: source, to: local) }
            try runner.run(closing: .copyToHost) { (r) throws(VulkanError) in try r.copy(from: local, to: back) }
            XCTAssertEqual(back.words, want, "\(closing)")
        }
    }
}
