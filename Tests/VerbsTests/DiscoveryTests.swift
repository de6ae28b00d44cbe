import Foundation
import RDMATestSupport
import SelfTest
import Verbs
import XCTest

final class DiscoveryTests: RDMATestCase {
    func testFindsActivePortAndRoCEv2GID() throws {
        XCTAssertTrue(Devices.names().contains(env.context.name))
        let port = try env.context.activePort()
        XCTAssertEqual(port.state, .active)
        XCTAssertNotNil(port.activeMTU)
        XCTAssertGreaterThan(port.maxMessageSize, 0)
        let v2 = try XCTUnwrap(port.roceV2GID, "no RoCE v2 GID in \(port.gids)")
        XCTAssertEqual(v2.type, .roceV2)
        if port.linkLayer == .ethernet { XCTAssertNotEqual(v2.interfaceIndex, 0) }
        if let fabricAddress = ProcessInfo.processInfo.environment["VKVERBS_FABRIC_ADDR"] {
            XCTAssertTrue(port.gids.contains { $0.type == .roceV2 && $0.gid.ipv4 == fabricAddress },
                          "no RoCE v2 GID for \(fabricAddress) in \(port.gids.map(\.address))")
        }
    }

    func testDeviceInfoAndLimits() throws {
        let info = try env.context.info()
        XCTAssertEqual(info.name, env.context.name)
        XCTAssertGreaterThan(info.attributes.maxQP, 0)
        XCTAssertGreaterThan(info.attributes.maxMRSize, 0)
        XCTAssertFalse(info.ports.isEmpty)
        let json = try JSONEncoder().encode(info)
        XCTAssertEqual(try JSONDecoder().decode(DeviceInfo.self, from: json), info)
    }

    func testOpenByNameAndUnknownName() throws {
        let same = try Context.open(name: env.context.name)
        XCTAssertTrue(same.isSameDevice(as: env.context))
        XCTAssertThrowsError(try Context.open(name: "rxe-does-not-exist")) { error in
            assertVerbsError(error, ".notFound") { if case .notFound = $0 { return true }; return false }
        }
    }
}

final class MemoryRegionTests: RDMATestCase {
    func testRegisterAndDeregisterReleasesTheMR() throws {
        let before = try baselineCounts()
        do {
            let buffer = try HostBuffer(count: 1 << 20)
            let mr = try pd.register(buffer, access: .remote)
            XCTAssertEqual(mr.length, 1 << 20)
            XCTAssertEqual(mr.address, UInt64(UInt(bitPattern: buffer.pointer)))
            XCTAssertTrue(mr.owner === buffer, "the MR keeps its memory's owner")
            XCTAssertEqual(mr.remoteBuffer.rkey, mr.rkey)
            let during = try resourceCounts()
            XCTAssertEqual(during["mr"], (before["mr"] ?? 0) + 1)
        }
        XCTAssertEqual(try resourceCounts()["mr"], before["mr"], "ibv_dereg_mr ran when the region was released")
    }

    func testRegisterWithIOVA() throws {
        let buffer = try HostBuffer(count: 8192)
        let mr = try pd.register(address: buffer.pointer, length: buffer.count, iova: 0x10_0000, access: .remote, owner: buffer)
        XCTAssertEqual(mr.address, 0x10_0000)
        XCTAssertEqual(mr.hostAddress, buffer.pointer)
    }

    func testBadRegistrationsAreTypedErrors() throws {
        let buffer = try HostBuffer(count: 4096)
        let isInvalid: (VerbsError) -> Bool = { if case .invalidArgument = $0 { return true }; return false }
        XCTAssertThrowsError(try pd.register(address: buffer.pointer, length: 0, access: .local)) {
            assertVerbsError($0, "length 0 -> .invalidArgument", isInvalid)
        }
        XCTAssertThrowsError(try pd.register(address: nil, length: 4096, access: .local)) {
            assertVerbsError($0, "null address -> .invalidArgument", isInvalid)
        }
        XCTAssertThrowsError(try pd.register(address: buffer.pointer, length: 4096, access: .remoteWrite)) {
            assertVerbsError($0, "remote write without local write -> .invalidArgument", isInvalid)
        }
        let mr = try pd.register(buffer, access: .local)
        let isOutOfRange: (VerbsError) -> Bool = { if case .outOfRange = $0 { return true }; return false }
        XCTAssertThrowsError(try mr.segment(offset: 4000, length: 200)) { assertVerbsError($0, "segment past the end", isOutOfRange) }
        XCTAssertThrowsError(try mr.segment(offset: -1, length: 1)) { assertVerbsError($0, "negative offset", isOutOfRange) }
    }

    func testDMABufProbeSaysUnsupportedOnRXE() throws {
        let support = pd.dmaBufSupport()
        if env.context.name.hasPrefix("rxe") {
            guard case .unsupported = support else { return XCTFail("rxe has no dma-buf MRs, probe said \(support)") }
        }
        // A real fd: rxe refuses it as unsupported, which is what callers fall back on.
        let fd = open("/dev/zero", O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        if !support.isSupported {
            XCTAssertThrowsError(try pd.registerDMABuf(fd: fd, offset: 0, length: 4096, iova: 0, access: .local)) {
                assertVerbsError($0, ".unsupported") { if case .unsupported = $0 { return true }; return false }
            }
        }
    }
}
