import CVulkan
#if canImport(Glibc)
import Glibc
#endif
@testable import VulkanMemory
import XCTest

/// The copy queue family choice: the rules on given queue families and timings (an H200's
/// families as `vkGetPhysicalDeviceQueueFamilyProperties` reported them on the accelerator
/// machine), and on lavapipe, under validation, what a device with one family does.
final class CopyQueueFamilyTests: ValidatedVulkanTestCase {
    private let graphics = VK_QUEUE_GRAPHICS_BIT.rawValue
    private let compute = VK_QUEUE_COMPUTE_BIT.rawValue
    private let transfer = VK_QUEUE_TRANSFER_BIT.rawValue
    private let sparse = VK_QUEUE_SPARSE_BINDING_BIT.rawValue
    private let videoDecode: UInt32 = 0x20
    private let opticalFlow: UInt32 = 0x100

    /// The H200's five families (flags 15, 12, 14, 44, 268).
    private var h200: [QueueFamilyTraits] {
        [QueueFamilyTraits(index: 0, flags: graphics | compute | transfer | sparse, queueCount: 16, timestampValidBits: 64),
         QueueFamilyTraits(index: 1, flags: transfer | sparse, queueCount: 2, timestampValidBits: 64),
         QueueFamilyTraits(index: 2, flags: compute | transfer | sparse, queueCount: 8, timestampValidBits: 64),
         QueueFamilyTraits(index: 3, flags: transfer | sparse | videoDecode, queueCount: 7, timestampValidBits: 64),
         QueueFamilyTraits(index: 4, flags: transfer | sparse | opticalFlow, queueCount: 1, timestampValidBits: 64)]
    }

    /// A family's medians: 4 KiB and 1 MiB d2h, 16 MiB d2h and h2d.
    private func timing(_ family: UInt32, _ small: Double, _ medium: Double, _ large: Double = 330, _ largeIn: Double = 340)
        -> CopyFamilyTiming
    {
        CopyFamilyTiming(family: family, copies: [
            .init(bytes: 4096, direction: "d2h", microseconds: small), .init(bytes: 1 << 20, direction: "d2h", microseconds: medium),
            .init(bytes: 16 << 20, direction: "d2h", microseconds: large), .init(bytes: 16 << 20, direction: "h2d", microseconds: largeIn),
        ])
    }

    func testParsesAutoMainAndAnIndexOnly() {
        XCTAssertEqual(CopyQueueFamily("auto"), .automatic)
        XCTAssertEqual(CopyQueueFamily("Automatic"), .automatic)
        XCTAssertEqual(CopyQueueFamily("main"), .main)
        XCTAssertEqual(CopyQueueFamily("4"), .family(4))
        for bad in ["", "fast", "-1", "4.0", "99999999999"] { XCTAssertNil(CopyQueueFamily(bad), bad) }
        XCTAssertEqual(CopyQueueFamily.family(3).description, "3")
    }

    /// Every family that can copy, the main one first; graphics and compute families count even
    /// without the TRANSFER bit, families without queues or with only video bits do not.
    func testCandidatesAreTheFamiliesThatCanCopyMainFirst() {
        XCTAssertEqual(CopyQueueChoice.candidates(h200, main: 0), [0, 1, 2, 3, 4])
        XCTAssertEqual(CopyQueueChoice.candidates(h200, main: 2), [2, 0, 1, 3, 4])
        let odd = [QueueFamilyTraits(index: 0, flags: compute, queueCount: 1, timestampValidBits: 0),
                   QueueFamilyTraits(index: 1, flags: transfer, queueCount: 0, timestampValidBits: 64),
                   QueueFamilyTraits(index: 2, flags: videoDecode, queueCount: 2, timestampValidBits: 64),
                   QueueFamilyTraits(index: 3, flags: graphics, queueCount: 1, timestampValidBits: 64)]
        XCTAssertEqual(CopyQueueChoice.candidates(odd, main: 0), [0, 3])
    }

    func testPlanDecidesWithoutMeasuringWhereItCan() throws {
        XCTAssertEqual(try CopyQueueChoice.plan(.automatic, families: h200, main: 0, cpuDevice: false), .measure([0, 1, 2, 3, 4]))
        guard case .decided(let asked) = try CopyQueueChoice.plan(.family(4), families: h200, main: 0, cpuDevice: false) else {
            return XCTFail("an asked family is not measured")
        }
        XCTAssertEqual(asked.family, 4)
        XCTAssertEqual(asked.largeFamily, 4)
        guard case .decided(let main) = try CopyQueueChoice.plan(.main, families: h200, main: 0, cpuDevice: false) else {
            return XCTFail("main is not measured")
        }
        XCTAssertEqual(main.family, 0)
        // A CPU driver, and a device with one family that copies (lavapipe), keep the main family.
        guard case .decided(let cpu) = try CopyQueueChoice.plan(.automatic, families: h200, main: 0, cpuDevice: true) else {
            return XCTFail("a CPU driver is not measured")
        }
        XCTAssertEqual(cpu.family, 0)
        XCTAssertTrue(cpu.reason.contains("CPU"), cpu.reason)
        let one = [h200[0], QueueFamilyTraits(index: 1, flags: videoDecode, queueCount: 1, timestampValidBits: 64)]
        guard case .decided(let single) = try CopyQueueChoice.plan(.automatic, families: one, main: 0, cpuDevice: false) else {
            return XCTFail("one family that copies is not measured")
        }
        XCTAssertEqual(single.family, 0)
        XCTAssertTrue(single.timings.isEmpty)
    }

    func testPlanRefusesAFamilyThatIsMissingOrCannotCopy() {
        let withVideo = h200 + [QueueFamilyTraits(index: 5, flags: videoDecode, queueCount: 1, timestampValidBits: 64)]
        XCTAssertThrowsError(try CopyQueueChoice.plan(.family(9), families: withVideo, main: 0, cpuDevice: false)) { error in
            guard case VulkanError.invalidArgument(let text) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains("copy queue family 9"), text)
        }
        XCTAssertThrowsError(try CopyQueueChoice.plan(.family(5), families: withVideo, main: 0, cpuDevice: false)) { error in
            guard case VulkanError.invalidArgument(let text) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains("cannot copy"), text)
        }
    }

    /// Per size class (below and from `largeCopyBytes`), another family is chosen only when it
    /// beats the main one by `requiredGain`, every copy of the class weighing the same (geometric
    /// mean of the time ratios).
    func testPickKeepsTheMainFamilyUnlessAnotherIsClearlyFaster() {
        // The probe's medians of 2026-12-02 (copy-to-host, 4 KiB and 1 MiB), large copies alike:
        // family 4 about 10 % faster below 16 MiB, none faster from there.
        let measured = [timing(0, 14.9, 33.3), timing(1, 13.5, 33.6), timing(2, 14.1, 32.0), timing(3, 12.7, 32.5), timing(4, 13.1, 30.7)]
        let choice = CopyQueueChoice.pick(measured, main: 0)
        XCTAssertEqual(choice.family, 4)
        XCTAssertEqual(choice.largeFamily, 0)
        XCTAssertEqual(choice.mainFamily, 0)
        XCTAssertEqual(choice.timings, measured)
        XCTAssertTrue(choice.reason.contains("below 16 MiB: measured, family 4"), choice.reason)
        XCTAssertEqual(measured[0].relativeTime(to: measured[0]), 1)
        XCTAssertEqual(measured[4].relativeTime(to: measured[0])!, 0.949, accuracy: 0.001)
        // Faster small copies and a slower copy engine on large ones: each class its own family.
        let split = CopyQueueChoice.pick([timing(0, 15, 35, 330, 340), timing(3, 13, 33, 400, 420)], main: 0)
        XCTAssertEqual(split.family, 3)
        XCTAssertEqual(split.largeFamily, 0)
        let largeOnly = CopyQueueChoice.pick([timing(0, 15, 35, 330, 340), timing(2, 15, 35, 320, 325)], main: 0)
        XCTAssertEqual(largeOnly.family, 0)
        XCTAssertEqual(largeOnly.largeFamily, 2)
        // 1 % is noise.
        XCTAssertEqual(CopyQueueChoice.pick([timing(0, 15, 35), timing(1, 14.85, 34.65)], main: 0).family, 0)
        // The main family fastest, or the only one measured.
        XCTAssertEqual(CopyQueueChoice.pick([timing(0, 12, 30), timing(1, 14, 33)], main: 0).family, 0)
        XCTAssertEqual(CopyQueueChoice.pick([timing(2, 12, 30)], main: 2).family, 2)
        // Without a timing of the main family, or with no copy in common, nothing is compared: main.
        XCTAssertEqual(CopyQueueChoice.pick([timing(1, 5, 10)], main: 0).family, 0)
        XCTAssertEqual(CopyQueueChoice.pick([timing(1, 5, 10)], main: 0).largeFamily, 0)
        XCTAssertEqual(CopyQueueChoice.pick([], main: 0).family, 0)
        let other = CopyFamilyTiming(family: 1, copies: [.init(bytes: 8, direction: "d2h", microseconds: 1)])
        XCTAssertNil(other.relativeTime(to: timing(0, 15, 35)))
        XCTAssertEqual(CopyQueueChoice.pick([timing(0, 15, 35), other], main: 0).family, 0)
    }

    /// lavapipe has one family: copies go to the main queue, unmeasured, buffers stay exclusive.
    func testLavapipeCopiesOnItsOneFamilyUnmeasured() throws {
        let device = try makeLavapipeDevice()
        XCTAssertEqual(device.physicalDevice.queueFamilies().filter(\.canCopy).count, 1)
        XCTAssertEqual(device.copyQueueChoice.family, device.queueFamilyIndex)
        XCTAssertTrue(device.copyQueueChoice.timings.isEmpty)
        XCTAssertTrue(device.copyQueue === device.mainQueue)
        XCTAssertTrue(device.largeCopyQueue === device.mainQueue)
        XCTAssertEqual(device.copyRole(forBytes: 4096), .copy)
        XCTAssertEqual(device.copyRole(forBytes: CopyQueueChoice.largeCopyBytes), .largeCopy)
        XCTAssertEqual(device.sharingFamilies, [device.queueFamilyIndex])
        // The copy queue works like the main one: a copy through it arrives.
        let source = try DeviceBuffer(device: device, size: 4096, hostVisible: true)
        source.bytes!.bindMemory(to: UInt32.self).update(repeating: 0xFEED_F00D)
        let destination = try DeviceBuffer(device: device, size: 4096, hostVisible: true)
        try GPUCommandRunner(device: device, queue: .copy).copy(from: source, to: destination)
        XCTAssertEqual(Set(destination.words), [0xFEED_F00D])
    }

    func testAFamilyTheDeviceLacksIsATypedError() throws {
        let physical = try lavapipe(try makeInstance())
        XCTAssertThrowsError(try VulkanDevice(physicalDevice: physical, options: .init(copyQueue: .family(99)))) { error in
            guard case VulkanError.invalidArgument(let text) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains("copy queue family 99"), text)
        }
        let main = try VulkanDevice(physicalDevice: physical, options: .init(copyQueue: .family(physical.computeQueueFamily()!)))
        XCTAssertTrue(main.copyQueue === main.mainQueue)
    }

    /// The environment names the family when the options do not; a bad value is a typed error.
    func testTheEnvironmentVariableOverridesAndIsChecked() throws {
        let physical = try lavapipe(try makeInstance())
        defer { unsetenv(CopyQueueFamily.environmentVariable) }
        setenv(CopyQueueFamily.environmentVariable, "sideways", 1)
        XCTAssertThrowsError(try VulkanDevice(physicalDevice: physical)) { error in
            guard case VulkanError.invalidArgument(let text) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains(CopyQueueFamily.environmentVariable), text)
        }
        setenv(CopyQueueFamily.environmentVariable, "42", 1)
        XCTAssertThrowsError(try VulkanDevice(physicalDevice: physical))
        // Options win over the environment.
        XCTAssertNoThrow(try VulkanDevice(physicalDevice: physical, options: .init(copyQueue: .main)))
        setenv(CopyQueueFamily.environmentVariable, "main", 1)
        XCTAssertEqual(try VulkanDevice(physicalDevice: physical).copyQueueChoice.reason, "the main family, as asked")
    }

    /// The measurement itself, over the one family lavapipe has: a device of its own, every size
    /// both ways, medians that are real times; validation stays quiet.
    func testCalibrationMeasuresEveryFamilyItIsGiven() throws {
        let physical = try lavapipe(try makeInstance())
        let main = try XCTUnwrap(physical.computeQueueFamily())
        let timings = try CopyFamilyCalibration.measure(physicalDevice: physical, options: .init(), families: [main],
                                                        sizes: [4096, 65536], rounds: 1)
        XCTAssertEqual(timings.map(\.family), [main])
        XCTAssertEqual(timings[0].copies.map(\.bytes), [4096, 4096, 65536, 65536])
        XCTAssertEqual(timings[0].copies.map(\.direction), ["d2h", "h2d", "d2h", "h2d"])
        for copy in timings[0].copies { XCTAssertGreaterThan(copy.microseconds, 0, "\(copy)") }
        XCTAssertEqual(CopyQueueChoice.pick(timings, main: main).family, main)
        XCTAssertThrowsError(try CopyFamilyCalibration.measure(physicalDevice: physical, options: .init(), families: [main], sizes: []))
    }
}
