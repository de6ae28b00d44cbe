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
        XCTAssertNil(report.nic.dmaBuf, "no protection domain was given, so dma-buf was not probed")
    }

    func testReportRoundTripsThroughJSON() throws {
        let reports = try makeInstance().capabilityReports()
        XCTAssertFalse(reports.isEmpty)
        let data = try JSONEncoder().encode(reports)
        XCTAssertEqual(try JSONDecoder().decode([CapabilityReport].self, from: data), reports)
    }

    func testPeerMemoryClientIsFoundByItsVersionFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vkverbs-peer-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("version")
        try "1.2.3\n".write(to: file, atomically: true, encoding: .utf8)
        let found = NICSupport.probe(pd: nil, versionFiles: [file.path, dir.appendingPathComponent("absent").path])
        XCTAssertEqual(found.peerMemoryClients, [PeerMemoryClient(path: file.path, version: "1.2.3")])
        XCTAssertTrue(found.hasPeerMemoryClient)
        XCTAssertNil(found.dmaBuf)
    }
}
