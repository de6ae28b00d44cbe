import VulkanMemory
import XCTest

/// A submission that waits on a timeline value, and the acquire of bytes written outside Vulkan
/// (lavapipe, under validation).
final class ExternalAcquireTests: ValidatedVulkanTestCase {
    /// Host bytes written after the copy was submitted (it waits on the timeline), then the value
    /// signalled: the copy, behind a `.host` acquire, carries the new bytes, not the old ones.
    func testASubmissionWaitingOnTheTimelineSeesHostWritesMadeBeforeTheSignal() throws {
        let device = try makeLavapipeDevice()
        let source = try device.allocate(size: 4096, strategy: .hostVisible)
        let target = try DeviceBuffer(device: device, size: 4096, hostVisible: true)
        let timeline = try TimelineSemaphore(device: device)
        let runner = try GPUCommandRunner(device: device)
        source.hostBytes!.initializeMemory(as: UInt8.self, repeating: 1)
        try runner.submit(waitingFor: (timeline, 5)) { (recorder) throws(VulkanError) in
            try recorder.acquire(source.buffer, writtenBy: ExternalWriter.nic(writing: source.strategy), for: .transferRead)
            try recorder.copy(from: source.buffer, to: target)
        }
        usleep(50_000)
        XCTAssertFalse(try runner.isIdle, "the copy waits for value 5")
        source.hostBytes!.initializeMemory(as: UInt8.self, repeating: 7)
        try timeline.signal(5)
        try runner.waitForCompletion(timeout: .seconds(600))  // minutes in the fabric's TCG guest
        XCTAssertEqual(Array(target.bytes!), [UInt8](repeating: 7, count: 4096))
    }

    /// An acquire outside the buffer, of nothing, or of another device's buffer, and a wait on
    /// another device's semaphore, are refused before anything is recorded or submitted.
    func testAcquiresAndWaitsThatCannotBeAreRefused() throws {
        let device = try makeLavapipeDevice()
        let other = try makeLavapipeDevice()
        let buffer = try DeviceBuffer(device: device, size: 256, hostVisible: true)
        let foreign = try DeviceBuffer(device: other, size: 256, hostVisible: true)
        let runner = try GPUCommandRunner(device: device)
        for (offset, size) in [(UInt64(0), UInt64(257)), (200, 57), (256, 1), (0, 0), (300, nil as UInt64?)] {
            XCTAssertThrowsError(try runner.run { (recorder) throws(VulkanError) in
                try recorder.acquire(buffer, offset: offset, size: size, writtenBy: .host, for: .shaderRead)
            }, "offset \(offset) size \(String(describing: size))") { error in
                guard case .invalidArgument? = error as? VulkanError else { return XCTFail("\(error)") }
            }
        }
        XCTAssertThrowsError(try runner.run { (recorder) throws(VulkanError) in
            try recorder.acquire(foreign, writtenBy: .externalMemory, for: .shaderRead)
        })
        try runner.run { (recorder) throws(VulkanError) in
            try recorder.acquire(buffer, offset: 64, size: 64, writtenBy: .host, for: .shaderRead)
        }
        let otherTimeline = try TimelineSemaphore(device: other)
        try runner.record { _ throws(VulkanError) in }
        XCTAssertThrowsError(try runner.submitRecorded(waitingFor: (otherTimeline, 1))) { error in
            guard case .invalidArgument? = error as? VulkanError else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(try runner.isIdle, "nothing was submitted")
        XCTAssertEqual(ExternalWriter.nic(writing: .dmaBuf), .externalMemory)
        XCTAssertEqual(ExternalWriter.nic(writing: .rdmaAddress), .externalMemory)
        XCTAssertEqual(ExternalWriter.nic(writing: .staged), .host)
    }
}
