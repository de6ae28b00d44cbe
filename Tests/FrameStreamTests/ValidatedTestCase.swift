import VulkanMemory
import XCTest

/// Base of the frame tests that use Vulkan: a fresh validation log per test, and any message the
/// validation layers wrote into it fails that test.
class ValidatedTestCase: XCTestCase {
    var log = ValidationLog()

    override func setUp() {
        super.setUp()
        log = ValidationLog()
    }

    override func tearDown() {
        XCTAssertTrue(log.messages.isEmpty, "validation reported:\n" + log.messages.map(\.description).joined(separator: "\n"))
        super.tearDown()
    }
}
