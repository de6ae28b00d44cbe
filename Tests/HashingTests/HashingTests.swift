import Hashing
import XCTest

/// Published test vectors: FIPS 180-4's examples for SHA-256 and RFC 4231's for HMAC-SHA256.
final class HashingTests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).leftPadded(2) }.joined() }
    private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testSHA256Vectors() {
        XCTAssertEqual(hex(SHA256.hash([])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(SHA256.hash(bytes("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex(SHA256.hash(bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Streaming in pieces gives the one-shot digest, at every split around the padding boundaries.
    func testSHA256StreamingMatchesOneShot() {
        let message = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        for length in [55, 56, 57, 63, 64, 65, 119, 120, 128, 200] {
            let whole = SHA256.hash(message[0..<length])
            for split in [0, 1, 55, 56, 63, 64, length] where split <= length {
                var h = SHA256()
                h.update(message[0..<split])
                h.update(message[split..<length])
                XCTAssertEqual(h.finalize(), whole, "length \(length) split \(split)")
            }
        }
    }

    func testHMACVectors() {
        func mac(_ key: [UInt8], _ data: [UInt8]) -> String { hex(HMACSHA256.authenticationCode(for: data, key: key)) }
        XCTAssertEqual(mac([UInt8](repeating: 0x0b, count: 20), bytes("Hi There")),
                       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        XCTAssertEqual(mac(bytes("Jefe"), bytes("what do ya want for nothing?")),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        XCTAssertEqual(mac([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50)),
                       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe")
        XCTAssertEqual(mac(Array(1...25), [UInt8](repeating: 0xcd, count: 50)),
                       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b")
        let longKey = [UInt8](repeating: 0xaa, count: 131)
        XCTAssertEqual(mac(longKey, bytes("Test Using Larger Than Block-Size Key - Hash Key First")),
                       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        XCTAssertEqual(mac(longKey, bytes("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.")),
                       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2")
    }

    func testHMACStreamingAndKeyOfExactlyOneBlock() {
        let key = Array(UInt8(0)..<64)
        var mac = HMACSHA256(key: key)
        mac.update(bytes("part one, "))
        mac.update(bytes("part two"))
        XCTAssertEqual(mac.finalize(), HMACSHA256.authenticationCode(for: bytes("part one, part two"), key: key))
        XCTAssertNotEqual(HMACSHA256.authenticationCode(for: bytes("x"), key: key),
                          HMACSHA256.authenticationCode(for: bytes("x"), key: Array(key.dropLast())))
    }

    func testEqualCompares() {
        XCTAssertTrue(HMACSHA256.equal([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(HMACSHA256.equal([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(HMACSHA256.equal([1, 2, 3], [1, 2]))
        XCTAssertTrue(HMACSHA256.equal([], []))
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
