import CVulkan
import Glibc
@testable import VulkanMemory
import XCTest

/// Lavapipe has no dma-buf export, but the same export machinery (`VkExternalMemoryBufferCreateInfo`,
/// `VkExportMemoryAllocateInfo`, `vkGetMemoryFdKHR`) runs for opaque fds: check it under validation,
/// and that the buffer closes the fd it was given.
final class BufferPlanTests: ValidatedVulkanTestCase {
    func testOpaqueFDExportRunsTheDMABufMachinery() throws {
        let device = try makeLavapipeDevice()
        XCTAssertTrue(device.enabledExtensions.contains("VK_KHR_external_memory_fd"))
        var fd: Int32 = -1
        do {
            let buffer = try DeviceBuffer(device: device, plan: BufferPlan(
                size: 65536, handleType: .opaqueFD, export: true, needs: "any properties"))
            fd = try buffer.exportFD(.opaqueFD)
            XCTAssertGreaterThanOrEqual(fd, 0)
            XCTAssertEqual(try buffer.exportFD(.opaqueFD), fd, "exported once, then reused")
            XCTAssertNotEqual(fcntl(fd, F_GETFD), -1)
        }
        XCTAssertEqual(fcntl(fd, F_GETFD), -1, "the fd is closed with its buffer")
    }

    /// A step that fails after vkCreateBuffer (no memory type has RDMA_CAPABLE_BIT_NV here) destroys
    /// the buffer: validation's object tracker would report it at vkDestroyDevice otherwise.
    func testFailedStepDestroysWhatItMade() throws {
        let device = try makeLavapipeDevice()
        XCTAssertThrowsError(try DeviceBuffer(device: device, plan: BufferPlan(
            size: 4096, required: VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV.rawValue, needs: "RDMA_CAPABLE_BIT_NV"))) {
            guard case .noMemoryType(needs: "RDMA_CAPABLE_BIT_NV", _)? = $0 as? VulkanError else {
                return XCTFail("\($0)")
            }
        }
        // Host pages that cannot be imported (too small for the buffer) are refused before binding.
        XCTAssertThrowsError(try DeviceBuffer(device: device, plan: BufferPlan(
            size: 8192, handleType: .hostAllocation, hostPages: UnsafeMutableRawPointer(bitPattern: 4096),
            importSize: 4096, needs: "any")))
    }
}
