@testable import PingPong
import XCTest

/// The server's decoder of a client's step request: hostile words give `.badRequest`, never a trap.
final class StepRequestTests: XCTestCase {
    private func decode(_ a: UInt64, _ b: UInt64, kind: ControlKind = .start, half: Int = 4096, cap: Int = 256) throws -> StepRequest {
        try StepRequest(kind: kind, a: a, b: b, bufferHalf: half, inlineCap: cap)
    }

    private func assertBadRequest(_ a: UInt64, _ b: UInt64, kind: ControlKind = .start, _ what: String,
                                  file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(a, b, kind: kind), what, file: file, line: line) { error in
            guard case PingPongError.badRequest = error else { return XCTFail("\(what): got \(error)", file: file, line: line) }
        }
    }

    func testWhatTheClientSendsDecodes() throws {
        let words = StepRequest.words(size: 64, total: 1100, inline: 220)
        XCTAssertEqual(try decode(words.a, words.b), try decode(64 | 220 << 32, 1100))
        let step = try decode(words.a, words.b)
        XCTAssertEqual(step.size, 64)
        XCTAssertEqual(step.total, 1100)
        XCTAssertEqual(step.inline, 220)
        // The extremes that are allowed.
        XCTAssertEqual(try decode(1, 1).size, 1)
        XCTAssertEqual(try decode(4096, UInt64(StepRequest.maxTotal)).total, StepRequest.maxTotal)
        // Inline is a wish: capped by this side's QP, or off where nothing may go inline.
        XCTAssertEqual(try decode(64 | UInt64(StepRequest.maxInline) << 32, 1).inline, 256)
        XCTAssertEqual(try decode(64 | 220 << 32, 1, cap: 0).inline, 0)
    }

    func testHostileWordsAreBadRequests() {
        assertBadRequest(64, .max, "an iteration total of UInt64.max")
        assertBadRequest(64, UInt64(Int.max) + 1, "an iteration total above Int.max")
        assertBadRequest(64, UInt64(StepRequest.maxTotal) + 1, "an iteration total above the bound")
        assertBadRequest(64, 0, "an iteration total of 0")
        assertBadRequest(0, 10, "a size of 0")
        assertBadRequest(4097, 10, "a size beyond the buffer half")
        assertBadRequest(0xFFFF_FFFF, 10, "a size of UInt32.max")
        assertBadRequest(.max, .max, "every bit set")
        assertBadRequest(64 | 0xFFFF_FFFF << 32, 10, "an inline size of UInt32.max")
        assertBadRequest(64 | UInt64(StepRequest.maxInline + 1) << 32, 10, "an inline size just above the bound")
        assertBadRequest(64, 10, kind: .done, "a done where a start or bye belongs")
        assertBadRequest(64, 10, kind: .ready, "a ready where a start or bye belongs")
    }

    /// The control message framing: a message counts only when its first and last words carry
    /// the expected sequence, and an unknown kind is a typed error.
    func testControlMessageFraming() throws {
        let message = ControlMessage(sequence: 7, kind: .start, a: 64, b: 100)
        XCTAssertEqual(message.bytes.count, ControlMessage.size)
        XCTAssertEqual(try ControlMessage(bytes: message.bytes, sequence: 7), message)
        XCTAssertThrowsError(try ControlMessage(bytes: message.bytes, sequence: 8), "another sequence")
        XCTAssertThrowsError(try ControlMessage(bytes: Array(message.bytes.prefix(31)), sequence: 7), "short")
        var unknown = message.bytes
        unknown[24] = 99
        XCTAssertThrowsError(try ControlMessage(bytes: unknown, sequence: 7)) { error in
            guard case PingPongError.protocolError = error else { return XCTFail("got \(error)") }
        }
        // The public fuzz entry takes the same layout as the server's session does.
        XCTAssertNoThrow(try ControlWire.checkStep(ControlMessage(sequence: 1, kind: .start, a: 64, b: 100).bytes))
        XCTAssertThrowsError(try ControlWire.checkStep(message.bytes), "the first message is sequence 1")
        XCTAssertNoThrow(try ControlWire.checkStep(ControlMessage(sequence: 1, kind: .bye).bytes))
        XCTAssertThrowsError(try ControlWire.checkStep(ControlMessage(sequence: 1, kind: .start, a: 64, b: .max).bytes))
        for n in [0, 1, 31, 32, 33, 64] {
            _ = try? ControlWire.checkStep((0..<n).map { _ in UInt8.random(in: 0...255) })
        }
    }
}
