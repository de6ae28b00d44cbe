import Foundation
import Verbs
import VerbsEmbedded
import VulkanMemory
import VulkanRegistration
import XCTest

/// VulkanRegistration on the host: what it tells VulkanMemory about a NIC, and the memory region
/// of a Vulkan allocation, registered with an in-memory protection domain (VerbsEmbedded), so no
/// RDMA device is needed. RDMATests does the same registrations on rxe.
final class RegistrationTests: ValidatedVulkanTestCase {
    func testPeerMemoryClientIsFoundByItsVersionFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vkverbs-peer-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("version")
        try "1.2.3\n".write(to: file, atomically: true, encoding: .utf8)
        let found = NICCapabilities.probe(pd: nil, versionFiles: [file.path, dir.appendingPathComponent("absent").path])
        XCTAssertEqual(found.peerMemoryClients, [PeerMemoryClient(path: file.path, version: "1.2.3")])
        XCTAssertTrue(found.hasPeerMemoryClient)
        XCTAssertNil(found.dmaBuf)
    }

    /// A device asked through its protection domain answers for dma-buf; the in-memory device has
    /// no verbs context, so it says unsupported (ENODEV), as `ProtectionDomain.dmaBufSupport()` does.
    func testProbeAsksTheProtectionDomainAboutDMABuf() {
        let link = InMemoryLink()
        let nic = NICCapabilities.probe(pd: link.a.pd, versionFiles: [])
        XCTAssertEqual(nic.dmaBuf, .unsupported(errno: ENODEV))
        XCTAssertEqual(nic.dmaBuf, NICCapabilities.DMABuf(link.a.pd.dmaBufSupport()))
        XCTAssertFalse(nic.dmaBuf!.isSupported)
        XCTAssertEqual(nic.peerMemoryClients, [])
        XCTAssertEqual(NICCapabilities.DMABuf(.supported), .supported)
        XCTAssertEqual(NICCapabilities.DMABuf(.unknown(errno: EPERM)), .unknown(errno: EPERM))
    }

    /// Each host-side strategy registers what the NIC must see (the staging buffer for `.staged`),
    /// the region's owner is the allocation, and the region keeps it alive until the region goes.
    func testRegionOfEachHostStrategyOwnsItsAllocation() throws {
        let device = try makeLavapipeDevice()
        let link = InMemoryLink()
        let nic = NICCapabilities.probe(pd: link.a.pd, versionFiles: [])
        for strategy in [MemoryStrategy.hostPointerImport, .hostVisible, .staged] {
            var allocation: VulkanAllocation? = try device.allocate(size: 3 * 4096 + 256, strategy: strategy, nic: nic)
            weak let watched = allocation
            var region: MemoryRegion? = try allocation!.registrable.register(with: link.a.pd, access: .remote)
            XCTAssertTrue(region!.owner === allocation, "\(strategy)")
            XCTAssertEqual(region!.length, 3 * 4096 + 256, "\(strategy)")
            XCTAssertEqual(region!.hostAddress, allocation!.hostBytes?.baseAddress, "\(strategy): the bytes the host sees")
            allocation = nil
            XCTAssertNotNil(watched, "\(strategy): the region keeps the allocation")
            region = nil
            XCTAssertNil(watched, "\(strategy): dropping the region frees the allocation")
        }
    }

    /// On-demand registration of a host-visible allocation goes to the device's on-demand path,
    /// which the in-memory device (no verbs context, so no ODP capabilities) refuses as unsupported.
    func testOnDemandRegistrationAsksTheDevice() throws {
        let device = try makeLavapipeDevice()
        let link = InMemoryLink()
        let allocation = try device.allocate(size: 8192, strategy: .hostVisible)
        XCTAssertThrowsError(try allocation.registrable.register(with: link.a.pd, access: .remote, paging: .onDemand)) { error in
            guard case let .unsupported(verb, _)? = error as? VerbsError else { return XCTFail("expected .unsupported, got \(error)") }
            XCTAssertTrue(verb.contains("ibv_query_device_ex"), verb)
        }
        XCTAssertEqual(RegistrationPaging.onDemand.description, "on-demand")
    }

    /// Told that the NIC takes no dma-buf regions, the automatic choice never lands on dma-buf, and
    /// a region of what it chose registers on that NIC's protection domain.
    func testAutomaticChoiceToldAboutTheNICRegistersOnIt() throws {
        let device = try makeLavapipeDevice()
        let link = InMemoryLink()
        let allocation = try device.allocate(size: 8192, nic: .probe(pd: link.a.pd, versionFiles: []))
        XCTAssertNotEqual(allocation.strategy, .dmaBuf)
        XCTAssertTrue(allocation.rejected.contains { $0.strategy == .dmaBuf })
        let region = try allocation.registrable.register(with: link.a.pd, access: .local)
        XCTAssertTrue(region.owner === allocation)
    }
}
