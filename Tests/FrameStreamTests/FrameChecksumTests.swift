@testable import FrameStream
import VulkanMemory
import XCTest

/// The frame checksum: what it detects on the CPU, and the GPU shader computing the same value
/// over a ring of Vulkan memory (lavapipe, with validation: any message fails the test).
final class FrameChecksumTests: ValidatedTestCase {
    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    private func sum(_ bytes: [UInt8], frame: UInt64) -> UInt64 {
        bytes.withUnsafeBytes { FrameChecksum.checksum($0, frame: frame) }
    }

    /// A changed bit anywhere, two words swapped, another frame number, a zero byte more: each
    /// changes the checksum; the same bytes give the same one.
    func testTheChecksumSeesChangesPositionsFrameNumbersAndLength() {
        let bytes = Self.randomBytes(1031, seed: 7)
        let base = sum(bytes, frame: 3)
        XCTAssertEqual(sum(bytes, frame: 3), base)
        for bit in stride(from: 0, to: bytes.count * 8, by: 97) {
            var flipped = bytes
            flipped[bit / 8] ^= UInt8(1 << (bit % 8))
            XCTAssertNotEqual(sum(flipped, frame: 3), base, "bit \(bit)")
        }
        var swapped = bytes
        for i in 0..<4 { swapped.swapAt(8 + i, 400 + i) }
        XCTAssertNotEqual(sum(swapped, frame: 3), base)
        XCTAssertNotEqual(sum(bytes, frame: 4), base)
        XCTAssertNotEqual(sum(bytes, frame: 3 | 1 << 40), base)
        XCTAssertNotEqual(sum(bytes + [0], frame: 3), base)
        XCTAssertNotEqual(sum([], frame: 1), sum([], frame: 2))
    }

    // MARK: - The GPU's checksum

    /// The bound on a GPU check in these tests: lavapipe compiles the shader at its first dispatch,
    /// which takes a few milliseconds on the host and minutes in the fabric's TCG guest.
    static let gpuTimeout: Duration = .seconds(600)

    /// lavapipe with validation on; a skip where mesa's lavapipe is not installed.
    static func lavapipe(log: ValidationLog) throws -> VulkanDevice {
        let instance = try VulkanInstance(options: .init(applicationName: "FrameStreamTests", validation: true,
                                                         validationLog: log))
        guard let physical = try instance.physicalDevices().first(where: { $0.name.hasPrefix("llvmpipe") }) else {
            throw XCTSkip("lavapipe (mesa-vulkan-drivers) is not installed")
        }
        return try VulkanDevice(physicalDevice: physical)
    }

    /// Frames of every awkward length (0 to 3 bytes, a word and one byte, a whole slot) in several
    /// slots of a ring, for each strategy lavapipe has (host-visible, host-import, staged; dma-buf
    /// where its mesa exports it), and imported host pages acquired as external memory (a queue
    /// family acquire from VK_QUEUE_FAMILY_EXTERNAL, under validation): the GPU's checksum is the
    /// CPU's. A byte changed in the ring changes the GPU's result too.
    func testTheGPUComputesTheSameChecksumAsTheCPU() throws {
        let device = try Self.lavapipe(log: log)
        let slotSize = 4100, slots = 3
        let filler = try GPUCommandRunner(device: device)
        var cases: [(MemoryStrategy, ExternalWriter?)] = [(.hostVisible, nil), (.hostPointerImport, nil), (.staged, nil),
                                                          (.hostPointerImport, .externalMemory)]
        if device.enabledExtensions.contains("VK_EXT_external_memory_dma_buf") { cases.append((.dmaBuf, nil)) }
        for (strategy, writer) in cases {
            let ring = try device.allocate(size: UInt64(slots * slotSize), strategy: strategy)
            let bytes = Self.randomBytes(slots * slotSize, seed: 99)
            // What the NIC would have written: host-visible strategies get it by the CPU, dma-buf by a copy on the GPU.
            if let host = ring.hostBytes {
                host.copyBytes(from: bytes)
            } else {
                let source = try DeviceBuffer(device: device, size: UInt64(bytes.count), hostVisible: true)
                source.bytes!.copyBytes(from: bytes)
                try filler.copy(from: source, to: ring.buffer)
            }
            let gpu = try GPUFrameChecksum(ring: ring, writer: writer, timeout: Self.gpuTimeout)
            XCTAssertEqual(gpu.writer, writer ?? (strategy == .dmaBuf ? .externalMemory : .host))
            for (slot, length) in [(0, 0), (1, 1), (2, 2), (0, 3), (1, 5), (2, 4097), (0, slotSize), (2, slotSize)] {
                let frame = UInt64(slot * 1000 + length)
                let offset = slot * slotSize
                let expected = bytes[offset..<offset + length].withUnsafeBytes { FrameChecksum.checksum($0, frame: frame) }
                XCTAssertEqual(try gpu.checksum(frame: frame, offset: offset, length: length), expected, "\(strategy) slot \(slot) length \(length)")
            }
            if let host = ring.hostBytes {
                let before = try gpu.checksum(frame: 5, offset: slotSize, length: 3000)
                host[slotSize + 2999] ^= 0x40
                XCTAssertNotEqual(try gpu.checksum(frame: 5, offset: slotSize, length: 3000), before, "\(strategy): the last byte changed")
                host[slotSize + 2999] ^= 0x40
                host[slotSize + 3000] ^= 0x40
                XCTAssertEqual(try gpu.checksum(frame: 5, offset: slotSize, length: 3000), before, "\(strategy): a byte past the frame is not in it")
            }
            XCTAssertThrowsError(try gpu.checksum(frame: 0, offset: 2, length: 4)) { error in
                guard case .invalidOptions? = error as? FrameStream.FrameError else { return XCTFail("\(error)") }
            }
            for (offset, length) in [(2 * slotSize, slotSize + 1), (slots * slotSize, 0), (-4, 1)] {
                XCTAssertThrowsError(try gpu.checksum(frame: 0, offset: offset, length: length), "\(length) bytes at \(offset)") { error in
                    guard case .invalidOptions? = error as? FrameStream.FrameError else { return XCTFail("\(error)") }
                }
            }
        }
    }

    /// A check whose wait timed out (its frame's value not signalled yet) stays pending: the next
    /// check waits for it first and gives the right result. A checker dropped with a check still
    /// waiting signals the awaited value, so the queue drains and nothing is destroyed in use.
    func testATimedOutCheckIsDrainedAndAnAbandonedOneReleased() throws {
        let device = try Self.lavapipe(log: log)
        let ring = try device.allocate(size: 8192, strategy: .hostVisible)
        let bytes = Self.randomBytes(8192, seed: 5)
        ring.hostBytes!.copyBytes(from: bytes)
        let timeline = try TimelineSemaphore(device: device, initialValue: 10)
        var checker: GPUFrameChecksum? = try GPUFrameChecksum(ring: ring, timeline: timeline, timeout: Self.gpuTimeout)
        // Frame 0's value is reached: this first dispatch compiles the shader (minutes under TCG), so
        // the short bound below is the semaphore's alone.
        _ = try checker!.checksum(frame: 0, offset: 0, length: 4)
        checker!.timeout = .milliseconds(300)
        try checker!.submit(frame: 20, offset: 0, length: 100)
        XCTAssertThrowsError(try checker!.result()) { error in
            guard case .timedOut? = error as? FrameStream.FrameError else { return XCTFail("\(error)") }
        }
        try timeline.signal(21)
        checker!.timeout = Self.gpuTimeout
        let expected = bytes[4096..<4096 + 999].withUnsafeBytes { FrameChecksum.checksum($0, frame: 20) }
        XCTAssertEqual(try checker!.checksum(frame: 20, offset: 4096, length: 999), expected)
        try checker!.submit(frame: 30, offset: 0, length: 8)
        checker = nil
        XCTAssertEqual(try timeline.value(), 31, "the abandoned check's value was signalled")
    }
}
