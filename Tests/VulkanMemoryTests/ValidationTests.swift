import CVulkan
import VulkanMemory
import XCTest

/// The other tests' "validation reported nothing" means something only if the layer is loaded
/// and the messenger delivers: break a rule on purpose and look for the message.
final class ValidationTests: ValidatedVulkanTestCase {
    func testMessengerReportsAValidationError() throws {
        let device = try makeLavapipeDevice()
        var info = VkBufferCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
        info.size = 0  // VUID-VkBufferCreateInfo-size-00912: size must be greater than 0.
        info.usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue
        var buffer: VkBuffer?
        _ = vkCreateBuffer(device.raw, &info, nil, &buffer)
        if let buffer { vkDestroyBuffer(device.raw, buffer, nil) }
        let messages = log.messages
        XCTAssertTrue(messages.contains { $0.severity == .error && $0.id.contains("VUID-VkBufferCreateInfo-size") },
                      "\(messages)")
        log.removeAll()  // Expected; tearDown checks for anything else.
    }

    /// VKVERBS_VULKAN_VALIDATION=1 turns validation on for instances that do not say.
    func testEnvironmentVariableEnablesValidation() throws {
        setenv("VKVERBS_VULKAN_VALIDATION", "1", 1)
        defer { unsetenv("VKVERBS_VULKAN_VALIDATION") }
        XCTAssertNotNil(try VulkanInstance().validationLog)
        unsetenv("VKVERBS_VULKAN_VALIDATION")
        XCTAssertNil(try VulkanInstance().validationLog)
    }

    func testValidationNeedsTheLayer() throws {
        XCTAssertTrue(try VulkanInstance.availableLayers().contains("VK_LAYER_KHRONOS_validation"),
                      "install vulkan-validationlayers")
    }
}
