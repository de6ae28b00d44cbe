#if canImport(Glibc)
import Glibc
#endif
import SelfTest
@testable import Verbs
import XCTest

/// Tests that need no RDMA device: they run everywhere.
final class HostTests: XCTestCase {
    func testRemoteBufferRoundTrip() throws {
        let b = RemoteBuffer(address: 0x1122_3344_5566_7788, length: 8 << 20, rkey: 0xDEAD_BEEF)
        XCTAssertEqual(b.encoded.count, RemoteBuffer.encodedSize)
        XCTAssertEqual(Array(b.encoded.prefix(2)), [0x11, 0x22], "big-endian on the wire")
        XCTAssertEqual(try RemoteBuffer(decoding: b.encoded), b)
        XCTAssertEqual(try RemoteBuffer(decoding: b.encoded + [9, 9]), b, "trailing padding is ignored")
        XCTAssertThrowsError(try RemoteBuffer(decoding: b.encoded.prefix(19))) { error in
            guard case VerbsError.invalidArgument = error else { return XCTFail("got \(error)") }
        }
    }

    func testRemoteRangeChecks() throws {
        let b = RemoteBuffer(address: 4096, length: 100, rkey: 1)
        XCTAssertNoThrow(try b.check(offset: 0, length: 100))
        XCTAssertNoThrow(try b.check(offset: 100, length: 0))
        XCTAssertThrowsError(try b.check(offset: 1, length: 100))
        XCTAssertThrowsError(try b.check(offset: UInt64.max, length: 2), "no overflow wrap-around")
    }

    func testErrnoMapping() {
        XCTAssertEqual(VerbsError.fromErrno("ibv_reg_dmabuf_mr", EOPNOTSUPP), .unsupported(verb: "ibv_reg_dmabuf_mr", errno: EOPNOTSUPP))
        XCTAssertEqual(VerbsError.fromErrno("x", EPROTONOSUPPORT), .unsupported(verb: "x", errno: EPROTONOSUPPORT))
        XCTAssertEqual(VerbsError.fromErrno("ibv_reg_mr", ENOMEM), .system(verb: "ibv_reg_mr", errno: ENOMEM))
        let text = VerbsError.system(verb: "ibv_reg_mr", errno: ENOMEM).description
        XCTAssertTrue(text.contains("ibv_reg_mr") && text.contains("Cannot allocate memory"), text)
        XCTAssertEqual(VerbsError.system(verb: "v", errno: EINVAL).errno, EINVAL)
    }

    func testRejectDescriptionExplainsNoListener() {
        let f = ConnectionFailure(reason: .rejected, event: "RDMA_CM_EVENT_REJECTED", status: 8, privateData: [])
        XCTAssertTrue(f.description.contains("nothing listens"), f.description)
        XCTAssertTrue(f.isNoListener)
        let byApp = ConnectionFailure(reason: .rejected, event: "RDMA_CM_EVENT_REJECTED", status: 28, privateData: [])
        XCTAssertTrue(byApp.description.contains("application"), byApp.description)
        XCTAssertFalse(byApp.isNoListener)
    }

    func testGIDFormatting() {
        let mapped = GID(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1])
        XCTAssertEqual(mapped.ipv4, "192.0.2.1")
        XCTAssertEqual(mapped.description, "192.0.2.1")
        let linkLocal = GID(bytes: [0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [1])
        XCTAssertNil(linkLocal.ipv4)
        XCTAssertEqual(linkLocal.description, "fe80::1")
        XCTAssertEqual(GID(linkLocal.raw), linkLocal, "round trip through union ibv_gid")
    }

    func testPatternDetectsEveryKindOfDamage() throws {
        let buffer = try HostBuffer(count: 4099)
        Pattern.fill(buffer.bytes, count: 4099, seed: 7)
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(buffer.bytes), count: 4099, seed: 7))
        XCTAssertEqual(Pattern.firstMismatch(UnsafeRawBufferPointer(buffer.bytes), count: 4099, seed: 8), 0, "another seed differs")
        for at in [0, 7, 8, 4095, 4098] {
            buffer.bytes[at] ^= 0x40
            XCTAssertEqual(Pattern.firstMismatch(UnsafeRawBufferPointer(buffer.bytes), count: 4099, seed: 7), at)
            buffer.bytes[at] ^= 0x40
        }
    }

    func testDeadlineRoundsUp() {
        XCTAssertEqual(Deadline(after: .microseconds(1)).remainingMilliseconds <= 1, true)
        let d = Deadline(after: .milliseconds(1500))
        XCTAssertTrue((1400...1500).contains(d.remainingMilliseconds), "\(d.remainingMilliseconds)")
        XCTAssertEqual(Deadline(after: .zero).remainingMilliseconds, 0)
    }

    func testHostBufferRejectsZero() {
        XCTAssertThrowsError(try HostBuffer(count: 0)) { error in
            guard case VerbsError.invalidArgument = error else { return XCTFail("got \(error)") }
        }
        let b = try? HostBuffer(count: 10)
        XCTAssertEqual(Int(bitPattern: b!.pointer) % Int(sysconf(Int32(_SC_PAGESIZE))), 0, "page aligned")
    }

    func testUnknownDeviceIsNotFound() {
        // With no RDMA at all the answer is "no RDMA device"; with devices, "no such name". Both are .notFound.
        XCTAssertThrowsError(try Context.open(name: "no-such-rdma-device")) { error in
            guard case VerbsError.notFound = error else { return XCTFail("got \(error)") }
        }
    }

    func testAccessFlagsMatchVerbs() {
        XCTAssertEqual(AccessFlags.remote.rawValue, 0x7, "IBV_ACCESS_LOCAL_WRITE|REMOTE_WRITE|REMOTE_READ")
        XCTAssertFalse(AccessFlags.remoteWrite.isConsistent)
        XCTAssertTrue(AccessFlags.remoteRead.isConsistent)
        XCTAssertTrue(AccessFlags.remote.isConsistent)
    }
}
