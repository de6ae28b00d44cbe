import CVulkan
@testable import VulkanMemory
import XCTest

/// What a wait does when the driver reports the device lost, or nothing ever completes: a typed
/// error naming the call, within the timeout, whether the wait was polling or blocking. (A lost
/// device cannot be caused on lavapipe; the driver's answers are played here.)
final class HostWaitTests: XCTestCase {
    /// The blocking call reports the device lost: `.submission` with that result, at once.
    func testADeviceLostWhileBlockedIsATypedError() {
        for policy in [HostWait.blocking, HostWait(spin: .microseconds(200))] {
            let start = ContinuousClock.now
            assertThrows(.submission(function: "vkWaitSemaphores", result: .errorDeviceLost)) { () throws(VulkanError) in
                try policy.wait(timeout: .seconds(5), operation: "waiting", function: "vkWaitSemaphores",
                                done: { () throws(VulkanError) -> Bool in false },
                                block: { _ in VK_ERROR_DEVICE_LOST })
            }
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(1))
        }
    }

    /// The status query reports the device lost mid-spin: that error, not a spin to the end.
    func testADeviceLostWhilePollingEndsTheSpin() {
        var polls = 0
        let start = ContinuousClock.now
        assertThrows(.submission(function: "vkGetSemaphoreCounterValue", result: .errorDeviceLost)) { () throws(VulkanError) in
            try HostWait(spin: .seconds(30)).wait(
                timeout: .seconds(60), operation: "waiting", function: "vkWaitSemaphores",
                done: { () throws(VulkanError) -> Bool in
                    polls += 1
                    if polls == 100 { throw .submission(function: "vkGetSemaphoreCounterValue", result: .errorDeviceLost) }
                    return false
                },
                block: { _ in VK_SUCCESS })
        }
        XCTAssertEqual(polls, 100)
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(1))
    }

    /// Nothing completes: the spin is cut at the timeout and the rest of the wait gets what is
    /// left, so the whole wait ends with `.timedOut` near the timeout, never later.
    func testANeverCompletingWaitTimesOutOnTime() {
        var blockedFor: UInt64 = .max
        let start = ContinuousClock.now
        assertThrows(.timedOut(operation: "waiting for timeline value 7", after: .milliseconds(50))) { () throws(VulkanError) in
            try HostWait(spin: .seconds(10)).wait(
                timeout: .milliseconds(50), operation: "waiting for timeline value 7", function: "vkWaitSemaphores",
                done: { () throws(VulkanError) -> Bool in false },
                block: { nanoseconds in
                    blockedFor = nanoseconds
                    return VK_TIMEOUT
                })
        }
        let elapsed = ContinuousClock.now - start
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(50))
        XCTAssertLessThan(elapsed, .seconds(2))
        XCTAssertLessThan(blockedFor, 5_000_000, "the spin took the whole timeout; the block gets what is left")
    }
}
