import Foundation
import VulkanMemory
import XCTest

final class CapabilityReportTests: ValidatedVulkanTestCase {
    /// Lavapipe: no NV extension or feature, no RDMA-capable types, no budget extension (so the
    /// heap size stands in), host-pointer import with its alignment, opaque-fd export only.
    func testReportDescribesLavapipe() throws {
        let report = try lavapipe(try makeInstance()).capabilityReport()
        XCTAssertTrue(report.deviceName.hasPrefix("llvmpipe"))
        XCTAssertEqual(report.deviceType, "cpu")
        XCTAssertFalse(report.extensions.externalMemoryRDMA)
        XCTAssertFalse(report.externalMemoryRDMAFeature)
        XCTAssertFalse(report.extensions.memoryBudget)
        XCTAssertFalse(report.extensions.externalMemoryDMABuf)
        XCTAssertTrue(report.extensions.externalMemoryFD)
        XCTAssertTrue(report.extensions.externalMemoryHost)
        XCTAssertEqual(report.rdmaCapableMemoryTypes, [])
        XCTAssertEqual(report.rdmaCapableHeaps, [])
        XCTAssertFalse(report.memoryTypes.isEmpty)
        XCTAssertFalse(report.memoryTypes.contains(where: \.rdmaCapable))
        XCTAssertEqual(report.budgetSource, .heapSize)
        for heap in report.heaps {
            XCTAssertEqual(heap.budgetSource, .heapSize)
            XCTAssertEqual(heap.budget, heap.size)
            XCTAssertEqual(heap.available, heap.size)
        }
        XCTAssertTrue(report.hostPointerImport)
        let alignment = try XCTUnwrap(report.minImportedHostPointerAlignment)
        XCTAssertGreaterThan(alignment, 0)
        XCTAssertEqual(alignment & (alignment - 1), 0, "alignment is a power of two")
        XCTAssertEqual(report.externalBuffers.map(\.handleType), [.rdmaAddress, .dmaBuf, .opaqueFD])
        XCTAssertEqual(report.externalBuffer(.rdmaAddress)?.queried, false)
        XCTAssertEqual(report.externalBuffer(.dmaBuf)?.queried, false)
        let opaque = try XCTUnwrap(report.externalBuffer(.opaqueFD))
        XCTAssertTrue(opaque.queried)
        XCTAssertTrue(opaque.exportable)
        XCTAssertNil(report.nic, "nobody said what the NIC takes")
    }

    /// What the NIC takes is the caller's value, carried into the report as given.
    func testReportCarriesTheNICCapabilitiesItIsGiven() throws {
        let nic = NICCapabilities(peerMemoryClients: [PeerMemoryClient(path: "/sys/module/nvidia_peermem/version", version: "1")],
                                  dmaBuf: .unsupported(errno: EOPNOTSUPP))
        let report = try lavapipe(try makeInstance()).capabilityReport(nic: nic)
        XCTAssertEqual(report.nic, nic)
        XCTAssertEqual(try JSONDecoder().decode(CapabilityReport.self, from: try JSONEncoder().encode(report)), report)
    }

    func testReportRoundTripsThroughJSON() throws {
        let reports = try makeInstance().capabilityReports()
        XCTAssertFalse(reports.isEmpty)
        let data = try JSONEncoder().encode(reports)
        XCTAssertEqual(try JSONDecoder().decode([CapabilityReport].self, from: data), reports)
    }
}
