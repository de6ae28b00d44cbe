import CVulkan
import VulkanMemory
import XCTest

/// Applications own their instance and device: the module wraps them, checks what they enabled,
/// and never destroys them.
final class ForeignHandleTests: ValidatedVulkanTestCase {
    /// A VkDevice the "application" made with no extensions at all (`vkCreateDevice` here, not
    /// in the module): every external-memory strategy is refused with the extension it lacks,
    /// the automatic choice falls to host-visible memory, and the device outlives its wrapper.
    func testForeignDeviceWithoutExtensions() throws {
        let instance = try makeInstance()
        let physical = try lavapipe(instance)
        let family = try XCTUnwrap(physical.computeQueueFamily())
        let raw = try createBareDevice(physical.raw, family: family)
        defer { vkDestroyDevice(raw, nil) }
        do {
            let device = try VulkanDevice(borrowing: raw, physicalDevice: physical, enabledExtensions: [],
                                          queueFamilyIndex: family)
            XCTAssertFalse(device.ownsHandle)
            assertThrows(.extensionMissing("VK_NV_external_memory_rdma", neededFor: "RDMA-address export")) {
                () throws(VulkanError) in try device.allocate(size: 4096, strategy: .rdmaAddress)
            }
            assertThrows(.extensionMissing("VK_KHR_external_memory_fd", neededFor: "dma-buf export")) {
                () throws(VulkanError) in try device.allocate(size: 4096, strategy: .dmaBuf)
            }
            assertThrows(.extensionMissing("VK_EXT_external_memory_host", neededFor: "host-pointer import")) {
                () throws(VulkanError) in try device.allocate(size: 4096, strategy: .hostPointerImport)
            }
            let allocation = try device.allocate(size: 4096)
            XCTAssertEqual(allocation.strategy, .hostVisible)
            XCTAssertEqual(allocation.rejected.map(\.strategy), [.rdmaAddress, .dmaBuf, .hostPointerImport])
            let engine = try GPUCommandRunner(device: device)
            try engine.fill(allocation.buffer, value: 0x0102_0304)
            XCTAssertEqual(allocation.buffer.words, Array(repeating: 0x0102_0304, count: 1024))
        }
        // The wrapper and everything made through it are gone; the application's device is not.
        XCTAssertEqual(vkDeviceWaitIdle(raw), VK_SUCCESS)
    }

    /// A borrowed VkInstance is not destroyed with its wrapper.
    func testBorrowedInstanceIsNotDestroyed() throws {
        let owner = try makeInstance()
        do {
            let borrowed = try VulkanInstance(borrowing: owner.raw, apiVersion: .v1_1, enabledExtensions: [])
            XCTAssertFalse(borrowed.ownsHandle)
            XCTAssertEqual(try borrowed.physicalDevices().count, try owner.physicalDevices().count)
        }
        XCTAssertFalse(try owner.physicalDevices().isEmpty)
        assertThrows(.apiVersionTooOld(found: "1.0.0", needed: "1.1.0")) { () throws(VulkanError) in
            try VulkanInstance(borrowing: owner.raw, apiVersion: APIVersion(major: 1, minor: 0), enabledExtensions: [])
        }
    }

    private func createBareDevice(_ physical: VkPhysicalDevice, family: UInt32) throws -> VkDevice {
        var priority: Float = 1
        return try withUnsafePointer(to: &priority) { priorities in
            var queue = VkDeviceQueueCreateInfo()
            queue.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
            queue.queueFamilyIndex = family
            queue.queueCount = 1
            queue.pQueuePriorities = priorities
            return try withUnsafePointer(to: &queue) { queues in
                var info = VkDeviceCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                info.queueCreateInfoCount = 1
                info.pQueueCreateInfos = queues
                var device: VkDevice?
                XCTAssertEqual(vkCreateDevice(physical, &info, nil, &device), VK_SUCCESS)
                return try XCTUnwrap(device)
            }
        }
    }
}
