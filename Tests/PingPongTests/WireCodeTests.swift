@testable import PingPong
import Verbs
import XCTest

/// The handshake's codes are part of the protocol: pinned here, so a case added to or moved in
/// an enum cannot change them unnoticed.
final class WireCodeTests: XCTestCase {
    func testOperationCodesAreFixed() {
        let expected: [(RDMAOperation, UInt8)] = [(.write, 0), (.writeImm, 1), (.send, 2), (.read, 3)]
        XCTAssertEqual(expected.count, RDMAOperation.allCases.count, "every operation has a pinned code")
        for (operation, code) in expected {
            XCTAssertEqual(operation.code, code, "\(operation)")
            XCTAssertEqual(RDMAOperation(code: code), operation)
        }
        for code in UInt8(4)...UInt8.max { XCTAssertNil(RDMAOperation(code: code)) }
    }

    func testMemoryKindCodesAreFixed() {
        let expected: [(MemoryKind, UInt8)] = [(.host, 0), (.auto, 1), (.rdmaAddress, 2), (.dmaBuf, 3), (.hostPointerImport, 4),
                                               (.hostVisible, 5), (.staged, 6)]
        XCTAssertEqual(expected.count, MemoryKind.allCases.count, "every memory kind has a pinned code")
        for (kind, code) in expected {
            XCTAssertEqual(kind.code, code, "\(kind)")
            XCTAssertEqual(MemoryKind(code: code), kind)
        }
        for code in UInt8(7)...UInt8.max { XCTAssertNil(MemoryKind(code: code)) }
    }

    /// The client's memory kind travels in the handshake and the server keeps it.
    func testTheClientsMemoryKindIsDecoded() throws {
        for kind in MemoryKind.allCases {
            var config = PingPongConfiguration()
            config.memory = kind
            let bytes = Handshake.request(config, buffer: RemoteBuffer(address: 1, length: 4, rkey: 1),
                                          mailbox: RemoteBuffer(address: 2, length: 64, rkey: 2))
            XCTAssertEqual(try Handshake.decodeRequest(bytes).memory, kind)
        }
    }
}
