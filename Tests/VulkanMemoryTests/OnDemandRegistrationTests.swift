import Foundation
import Verbs
import VulkanMemory
import VulkanRegistration
import XCTest

/// Needs an RDMA device (the rxe fabric). A 64 MiB host-visible Vulkan allocation registered for
/// on-demand paging through the bridge (`register(with:access:paging: .onDemand)`): where the
/// device reports ODP, it registers without pinning anything; where it does not (6.1), it is
/// refused with `.unsupported`. VKVERBS_EXPECT_ODP=1 or 0 makes the device's answer part of the
/// test. Data through on-demand memory is OnDemandPagingTests' business (and rxe 7.3.4's defect).
final class OnDemandRegistrationTests: ValidatedVulkanTestCase {
    private static let size = 64 << 20

    private func pinnedKiB() throws -> Int { try XCTUnwrap(processStatusField("VmPin").flatMap { Int($0) }, "no VmPin in /proc/self/status") }

    func testHostVisibleAllocationRegisteredOnDemand() throws {
        _ = try requireFabric()
        let environment = ProcessInfo.processInfo.environment
        let context = try Context.open(name: environment["VKVERBS_RDMA_DEVICE"])
        let pd = try ProtectionDomain(context: context)
        let caps = try context.onDemandPaging()
        switch environment["VKVERBS_EXPECT_ODP"] {
        case "1": XCTAssertTrue(caps.allows(.write), "\(context.name): on-demand paging \(caps)")
        case "0": XCTAssertFalse(caps.allows(.write), "\(context.name): on-demand paging \(caps)")
        default: break
        }
        let device = try makeLavapipeDevice()
        let allocation = try device.allocate(size: UInt64(Self.size), strategy: .hostVisible)
        let access: AccessFlags = [.localWrite, .remoteWrite]

        guard caps.allows(.write) else {
            XCTAssertThrowsError(try allocation.registrable.register(with: pd, access: access, paging: .onDemand)) { error in
                guard case let .unsupported(verb, _)? = error as? VerbsError else { return XCTFail("expected .unsupported, got \(error)") }
                XCTAssertTrue(verb.contains("IBV_ACCESS_ON_DEMAND"), verb)
            }
            return
        }
        let before = try pinnedKiB()
        let region = try allocation.registrable.register(with: pd, access: access, paging: .onDemand)
        XCTAssertEqual(try pinnedKiB(), before, "a \(Self.size >> 20) MiB on-demand Vulkan allocation pins nothing")
        XCTAssertTrue(region.access.contains(.onDemand))
        XCTAssertEqual(region.length, Self.size)
        XCTAssertEqual(region.hostAddress, allocation.hostBytes?.baseAddress, "the mapping the host sees is what is registered")
        XCTAssertTrue(region.owner === allocation)

        // Control: the same kind of allocation registered pinned moves VmPin, so the measure works here.
        let other = try device.allocate(size: 1 << 20, strategy: .hostVisible)
        let pinnedRegion = try other.registrable.register(with: pd, access: access)
        XCTAssertGreaterThanOrEqual(try pinnedKiB() - before, 1024, "a pinned 1 MiB Vulkan allocation shows in VmPin")
        withExtendedLifetime(pinnedRegion) {}
    }
}
