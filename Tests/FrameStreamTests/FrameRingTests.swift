@testable import FrameStream
import Verbs
import XCTest

/// The receiver's slot states, the sender's credit checks, the wire decoders and the latency
/// histogram, as pure values: every policy's drop count, every refusal.
final class FrameRingTests: XCTestCase {
    private func arrive(_ ring: inout FrameRing, _ frame: UInt64) throws {
        let got = try ring.arrive(immediate: FrameWire.immediate(slot: Int(frame % UInt64(ring.slots)), frame: frame))
        XCTAssertEqual(got.frame, frame)
    }

    func testBlockKeepsEveryFrameAndRefusesAnArrivalWithoutCredit() throws {
        var ring = try FrameRing(slots: 4, policy: .block)
        for f in 0..<4 as Range<UInt64> { try arrive(&ring, f) }
        XCTAssertEqual(ring.waiting, 4)
        XCTAssertThrowsError(try ring.arrive(immediate: FrameWire.immediate(slot: 0, frame: 4))) { error in
            guard case .protocolError = error as? FrameStream.FrameError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(ring.arrived, 4, "the refused arrival changed nothing")
        let first = try XCTUnwrap(ring.take())
        XCTAssertEqual(first.frame, 0)
        XCTAssertEqual(ring.released, 0)
        try ring.release(0)
        XCTAssertEqual(ring.released, 1)
        try arrive(&ring, 4)
        XCTAssertEqual(ring.dropped, 0)
    }

    func testDropOldestKeepsTheNewestReadyLimitAndCountsTheRest() throws {
        var ring = try FrameRing(slots: 8, policy: .dropOldest, readyLimit: 3)
        for f in 0..<10 as Range<UInt64> { try arrive(&ring, f) }
        XCTAssertEqual(ring.dropped, 7)
        XCTAssertEqual(ring.released, 7, "dropped frames give their slots back")
        XCTAssertEqual([ring.take()?.frame, ring.take()?.frame, ring.take()?.frame, ring.take()?.frame], [7, 8, 9, nil])
        XCTAssertEqual(ring.delivered + ring.dropped, ring.arrived)
    }

    func testLatestWinsDeliversOnlyTheNewest() throws {
        var ring = try FrameRing(slots: 16, policy: .latestWins)
        for f in 0..<10 as Range<UInt64> { try arrive(&ring, f) }
        XCTAssertEqual(ring.dropped, 9)
        XCTAssertEqual(ring.take()?.frame, 9)
        XCTAssertNil(ring.take())
    }

    func testAHeldFrameHoldsTheCreditUntilReleasedOutOfOrderFramesToo() throws {
        var ring = try FrameRing(slots: 4, policy: .latestWins)
        try arrive(&ring, 0)
        XCTAssertEqual(ring.take()?.frame, 0)
        for f in 1..<4 as Range<UInt64> { try arrive(&ring, f) }  // 1, 2 dropped; 3 waits
        XCTAssertEqual(ring.dropped, 2)
        XCTAssertEqual(ring.released, 0, "frame 0 is still held")
        XCTAssertThrowsError(try ring.arrive(immediate: FrameWire.immediate(slot: 0, frame: 4)), "no credit for frame 4")
        XCTAssertEqual(ring.take()?.frame, 3)
        try ring.release(3)
        XCTAssertEqual(ring.released, 0)
        try ring.release(0)
        XCTAssertEqual(ring.released, 4)
        XCTAssertEqual(ring.state(of: 2), nil)
    }

    func testReleasingAFrameNotHeldChangesNothing() throws {
        var ring = try FrameRing(slots: 4, policy: .block)
        try arrive(&ring, 0)
        XCTAssertThrowsError(try ring.release(0)) { XCTAssertEqual($0 as? FrameStream.FrameError, .notHeld(frame: 0)) }
        XCTAssertThrowsError(try ring.release(7)) { XCTAssertEqual($0 as? FrameStream.FrameError, .notHeld(frame: 7)) }
        _ = ring.take()
        try ring.release(0)
        XCTAssertThrowsError(try ring.release(0), "twice") { XCTAssertEqual($0 as? FrameStream.FrameError, .notHeld(frame: 0)) }
        XCTAssertEqual(ring.released, 1)
    }

    func testImmediatesOutOfRangeOrOrderAreRefused() throws {
        var ring = try FrameRing(slots: 4, policy: .block)
        XCTAssertThrowsError(try ring.arrive(immediate: 9 << 16)) { XCTAssertEqual($0 as? FrameStream.FrameError, .slotOutOfRange(slot: 9, slots: 4)) }
        XCTAssertThrowsError(try ring.arrive(immediate: FrameWire.immediate(slot: 1, frame: 1))) {
            XCTAssertEqual($0 as? FrameStream.FrameError, .outOfOrder(expected: 0, immediate: FrameWire.immediate(slot: 1, frame: 1)))
        }
        XCTAssertThrowsError(try ring.arrive(immediate: FrameWire.immediate(slot: 0, frame: 4)), "right slot, wrong frame")
        XCTAssertEqual(ring.arrived, 0)
        try arrive(&ring, 0)
    }

    func testZeroSlotsAndBadLimitsAreRefused() {
        XCTAssertThrowsError(try FrameRing(slots: 0, policy: .block)) {
            guard case .invalidOptions = $0 as? FrameStream.FrameError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try FrameRing(slots: FrameStream.maxSlots + 1, policy: .block))
        XCTAssertThrowsError(try FrameRing(slots: 4, policy: .dropOldest, readyLimit: 5))
        XCTAssertThrowsError(try FrameRing(slots: 4, policy: .dropOldest, readyLimit: 0))
    }

    func testCreditsGoBackInBatchesOrWhenForced() throws {
        var ring = try FrameRing(slots: 8, policy: .block)
        for f in 0..<5 as Range<UInt64> {
            try arrive(&ring, f)
            _ = ring.take()
            try ring.release(f)
        }
        XCTAssertNil(ring.creditToSend(batch: 6))
        XCTAssertEqual(ring.creditToSend(batch: 4), 5)
        XCTAssertNil(ring.creditToSend(batch: 1), "nothing new")
        try arrive(&ring, 5)
        _ = ring.take()
        try ring.release(5)
        XCTAssertNil(ring.creditToSend(batch: 4))
        XCTAssertEqual(ring.creditToSend(batch: 4, force: true), 6)
    }

    func testTheSendersCreditRefusesGrantsBeyondWhatWasSentOrBackwards() throws {
        var credit = FrameCredit(slots: 2)
        XCTAssertTrue(credit.canSend)
        XCTAssertEqual(credit.next(), 0)
        XCTAssertEqual(credit.next(), 1)
        XCTAssertFalse(credit.canSend)
        XCTAssertThrowsError(try credit.update(3)) { XCTAssertEqual($0 as? FrameStream.FrameError, .badCredit(granted: 3, sent: 2, previous: 0)) }
        try credit.update(1)
        XCTAssertTrue(credit.canSend)
        XCTAssertThrowsError(try credit.update(0)) { XCTAssertEqual($0 as? FrameStream.FrameError, .badCredit(granted: 0, sent: 2, previous: 1)) }
        XCTAssertEqual(credit.granted, 1)
    }

    func testHostileHellosAnswersAndDescriptorsAreRefused() throws {
        let hello = FrameWire.Hello(frameSize: 4096, maxSlots: 16)
        XCTAssertEqual(try FrameWire.decodeHello(FrameWire.encode(hello)), hello)
        var bad = FrameWire.encode(hello)
        bad[0] = 0
        XCTAssertThrowsError(try FrameWire.decodeHello(bad))
        XCTAssertThrowsError(try FrameWire.decodeHello(Array(FrameWire.encode(hello).prefix(12))))
        XCTAssertThrowsError(try FrameWire.decodeHello(FrameWire.encode(.init(frameSize: 0, maxSlots: 16))))
        XCTAssertThrowsError(try FrameWire.decodeHello(FrameWire.encode(.init(frameSize: 16, maxSlots: 0))))
        var version = FrameWire.encode(hello)
        version[4] = 9
        XCTAssertThrowsError(try FrameWire.decodeHello(version))

        XCTAssertEqual(try FrameWire.decodeAnswer(FrameWire.encode(.init(slots: 8, slotSize: 4096)), for: hello), .init(slots: 8, slotSize: 4096))
        XCTAssertThrowsError(try FrameWire.decodeAnswer(FrameWire.encode(.init(slots: 0, slotSize: 4096)), for: hello), "0 slots")
        XCTAssertThrowsError(try FrameWire.decodeAnswer(FrameWire.encode(.init(slots: 17, slotSize: 4096)), for: hello), "more than the sender takes")
        XCTAssertThrowsError(try FrameWire.decodeAnswer(FrameWire.encode(.init(slots: 8, slotSize: 4095)), for: hello), "a slot smaller than a frame")

        let answer = FrameWire.Answer(slots: 8, slotSize: 4096)
        let fits = FrameWire.RingDescriptor(ring: .init(address: 0x1000, length: 8 * 4096, rkey: 7), headers: .init(address: 0, length: 256, rkey: 8))
        XCTAssertEqual(try FrameWire.encode(fits).withUnsafeBytes { try FrameWire.decodeRing($0, for: answer) }, fits)
        let short = FrameWire.RingDescriptor(ring: .init(address: 0x1000, length: 8 * 4096 - 1, rkey: 7), headers: fits.headers)
        XCTAssertThrowsError(try FrameWire.encode(short).withUnsafeBytes { try FrameWire.decodeRing($0, for: answer) })
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 10).withUnsafeBytes { try FrameWire.decodeDescriptor($0) })
        let tiny = FrameWire.encodeDescriptor(.init(address: 0, length: 4, rkey: 1))
        XCTAssertThrowsError(try tiny.withUnsafeBytes { try FrameWire.decodeDescriptor($0) }, "a credit word of 4 bytes")
    }

    func testHeadersAreCheckedAgainstTheFrameAndTheSlot() throws {
        var bytes = [UInt8](repeating: 0, count: FrameWire.headerSize)
        let header = FrameWire.Header(frame: 5, sentAtNanoseconds: 42, length: 100, checksum: 9)
        bytes.withUnsafeMutableBytes { FrameWire.encode(header, into: $0.baseAddress!) }
        XCTAssertEqual(try bytes.withUnsafeBytes { try FrameWire.decodeHeader($0, frame: 5, frameSize: 100) }, header)
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameWire.decodeHeader($0, frame: 6, frameSize: 100) }, "another frame")
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameWire.decodeHeader($0, frame: 5, frameSize: 99) }, "longer than a slot")
        bytes[21] = 1
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameWire.decodeHeader($0, frame: 5, frameSize: 100) }, "unknown flags")
    }

    func testHistogramPercentilesAreWithinABucketOfTheTruth() {
        var h = LatencyHistogram()
        for v in 1...100_000 as ClosedRange<UInt64> { h.record(v * 10) }
        XCTAssertEqual(h.count, 100_000)
        XCTAssertEqual(h.max, 1_000_000)
        for (p, truth) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = Double(h.percentile(p))
            XCTAssertGreaterThanOrEqual(got, truth * 0.999, "p\(p)")
            XCTAssertLessThanOrEqual(got, truth * (1 + 1.0 / 64), "p\(p)")
        }
        var small = LatencyHistogram()
        [3, 1, 2].forEach { small.record($0) }
        XCTAssertEqual(small.percentile(0.5), 2)
        XCTAssertEqual(LatencyHistogram().percentile(0.5), 0)
        for v: UInt64 in [127, 128, 129, 1 << 40, .max] { XCTAssertGreaterThanOrEqual(LatencyHistogram.upperBound(LatencyHistogram.index(v)), v) }
    }
}
