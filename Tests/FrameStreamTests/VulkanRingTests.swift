import Dispatch
@testable import FrameStream
import Foundation
import NumberedStream
import Verbs
import VerbsEmbedded
import VulkanMemory
import XCTest

/// A frame stream whose receiver's slots are Vulkan memory (lavapipe) registered on the in-memory
/// twin: every frame checked by the GPU against the sender's checksum, a corrupted one caught and
/// counted, and GPU work waiting on the receiver's timeline semaphore seeing the frame's bytes.
final class VulkanRingTests: ValidatedTestCase {
    /// A receiver (on a Vulkan ring) and a sender over one in-memory link, both then used on this thread.
    private func pair(_ options: FrameReceiver.Options, frameSize: Int, falseChecksums: Set<UInt64> = []) throws -> (FrameReceiver, FrameSender) {
        let listener = InMemoryListener(sendQueueDepth: 128, receiveQueueDepth: 128)
        final class Box: @unchecked Sendable {  // written by the accepting thread before `done`, read after it
            var result: Result<FrameReceiver, Error>?
        }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let o = options
        Thread.detachNewThread {
            box.result = Result {
                try FrameReceiver.accept(acceptor: FrameStreamLogicTests.Acceptor(listener: listener), options: o, wait: .seconds(10))
            }
            done.signal()
        }
        var senderOptions = FrameSender.Options()
        senderOptions.frameSize = frameSize
        senderOptions.maxSlots = 16
        senderOptions.timeout = .seconds(10)
        senderOptions.falseChecksums = falseChecksums
        let sender = try FrameSender.connect(dialer: FrameStreamLogicTests.Dialer(listener: listener), options: senderOptions)
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        return (try XCTUnwrap(box.result).get(), sender)
    }

    private func options(ring: VulkanFrameRing, timeline: TimelineSemaphore?) -> FrameReceiver.Options {
        var o = FrameReceiver.Options()
        o.slots = 8
        o.slotSize = 4096
        o.timeout = .seconds(10)
        o.ringMemory = ring.memory
        o.timeline = timeline
        o.verifyChecksums = false  // the GPU checks them
        return o
    }

    /// 300 frames of varied lengths through 8 Vulkan slots (the automatic choice for the twin's
    /// NIC), each checked on the GPU after its timeline wait; frame 57's bytes are changed in the
    /// ring after arrival, and frame 123 is sent with a false checksum: exactly those two fail,
    /// typed, counted, and the stream goes on.
    func testTheGPUChecksEveryFrameAndCatchesCorruptedOnes() throws {
        let device = try FrameChecksumTests.lavapipe(log: log)
        let ring = VulkanFrameRing(device: device)
        let timeline = try TimelineSemaphore(device: device)
        let (r, s) = try pair(options(ring: ring, timeline: timeline), frameSize: 4096, falseChecksums: [123])
        let allocation = try XCTUnwrap(ring.allocation)
        XCTAssertNotEqual(allocation.strategy, .dmaBuf, "the twin takes no dma-buf regions")
        let gpu = try GPUFrameChecksum(ring: allocation, timeline: timeline, timeout: FrameChecksumTests.gpuTimeout)
        let total: UInt64 = 300, corrupt: UInt64 = 57
        var next: UInt64 = 0, checked: UInt64 = 0
        var caught: [UInt64] = []
        func consume() throws {
            while let frame = try r.poll() {
                XCTAssertEqual(frame.number, checked)
                if frame.number == corrupt {
                    let host = try XCTUnwrap(allocation.hostBytes, "the twin's ring is host-visible")
                    host[frame.offset + frame.length / 2] ^= 0x01
                }
                do { try gpu.verify(frame) } catch FrameStream.FrameError.corrupted(let f) { caught.append(f) }
                try r.release(frame)
                checked += 1
            }
        }
        while next < total {
            if try s.ready() {
                let length = Int(next * 37 % 4097)
                _ = try s.send(length: length) { FrameStreamLogicTests.pattern(next, $0) }
                next += 1
            } else {
                try consume()
            }
        }
        try s.end()
        try consume()
        XCTAssertTrue(r.ended)
        XCTAssertEqual(try s.finish().frames, total)
        XCTAssertEqual(checked, total)
        XCTAssertEqual(caught, [corrupt, 123])
        XCTAssertEqual(gpu.verified, total)
        XCTAssertEqual(gpu.mismatches, 2)
        XCTAssertEqual(try timeline.value(), total, "signalled to f + 1 for every frame f")
        r.close()
    }

    /// A GPU check of frame 0 submitted before the frame is sent waits on the device for the
    /// timeline's value 1: it has not run while nothing arrived, and once the receiver takes the
    /// arrival (and signals 1) it sees the frame's bytes: its checksum is the sender's.
    func testGPUWorkWaitingOnTheTimelineSeesTheFramesBytes() throws {
        let device = try FrameChecksumTests.lavapipe(log: log)
        let ring = VulkanFrameRing(device: device, strategy: .hostVisible)
        let timeline = try TimelineSemaphore(device: device)
        let (r, s) = try pair(options(ring: ring, timeline: timeline), frameSize: 4096)
        let gpu = try GPUFrameChecksum(ring: try XCTUnwrap(ring.allocation), timeline: timeline, timeout: FrameChecksumTests.gpuTimeout)
        let length = 3001
        try gpu.submit(frame: 0, offset: 0, length: length)
        usleep(100_000)
        XCTAssertFalse(try gpu.isIdle, "the check waits for frame 0's arrival")
        XCTAssertEqual(try timeline.value(), 0)
        _ = try s.send(length: length) { FrameStreamLogicTests.pattern(0, $0) }
        var frame: FrameReceiver.Frame?
        let deadline = Date().addingTimeInterval(10)
        while frame == nil, Date() < deadline { frame = try r.poll() }
        let got = try XCTUnwrap(frame)
        XCTAssertEqual(try timeline.value(), 1)
        let sent = (0..<length).map { UInt8(truncatingIfNeeded: 0 &* 31 &+ UInt64($0)) }
        let expected = sent.withUnsafeBytes { FrameChecksum.checksum($0, frame: 0) }
        XCTAssertEqual(got.checksum, expected)
        XCTAssertEqual(try gpu.result(), expected, "the GPU saw the frame's bytes, not the empty slot")
        try r.release(got)
        try s.end()
        let ending = Date().addingTimeInterval(60)  // a deadline of its own: the GPU's wait above may take minutes under TCG
        while !r.ended, Date() < ending { XCTAssertNil(try r.poll()) }
        XCTAssertTrue(r.ended)
        XCTAssertEqual(try s.finish().frames, 1)
        r.close()
    }
}
