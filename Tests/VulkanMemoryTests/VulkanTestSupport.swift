import CVulkan
import Foundation
import Verbs
import VulkanMemory
import XCTest

/// Every test here runs with VK_LAYER_KHRONOS_validation and a debug messenger; `tearDown`
/// fails the test for any warning or error it reported. Objects a test makes are locals, so
/// they are destroyed (and their destruction validated) before `tearDown` looks at the log.
class ValidatedVulkanTestCase: XCTestCase {
    var log = ValidationLog()

    /// An instance with validation, made by the first test's setUp and never destroyed: while one
    /// lives, the loader keeps the drivers and the validation layer loaded, so each test's own
    /// instance does not load, relocate and initialise them again. No test uses it; each still makes
    /// and validates its own instance. (On the host that is 75 ms of CPU an instance without it,
    /// 18 ms with it; in the fabric's TCG guest, where the libraries' code is translated again after
    /// every reload, those tests took 100 to 180 times their host time.)
    private static let librariesKept: VulkanInstance? =
        try? VulkanInstance(options: .init(applicationName: "VulkanMemoryTests (keeps the libraries loaded)", validation: true))

    override func setUp() {
        super.setUp()
        _ = Self.librariesKept
        log = ValidationLog()
    }

    override func tearDown() {
        let messages = log.messages
        XCTAssertTrue(messages.isEmpty, "validation reported:\n" + messages.map(\.description).joined(separator: "\n"))
        super.tearDown()
    }

    /// An instance the module owns, with validation on and messages going to `log`.
    func makeInstance() throws -> VulkanInstance {
        try VulkanInstance(options: .init(applicationName: "VulkanMemoryTests", validation: true, validationLog: log))
    }

    /// Mesa's lavapipe (llvmpipe), the device every host-only test runs on.
    func lavapipe(_ instance: VulkanInstance) throws -> PhysicalDevice {
        guard let device = try instance.physicalDevices().first(where: { $0.name.hasPrefix("llvmpipe") }) else {
            throw XCTSkip("lavapipe (mesa-vulkan-drivers) is not installed")
        }
        return device
    }

    func makeLavapipeDevice(_ options: VulkanDevice.Options = .init()) throws -> VulkanDevice {
        try VulkanDevice(physicalDevice: try lavapipe(try makeInstance()), options: options)
    }

    /// The fabric's address, or a skip without an RDMA device (a failure when VKVERBS_REQUIRE_RDMA=1).
    func requireFabric() throws -> String {
        let required = ProcessInfo.processInfo.environment["VKVERBS_REQUIRE_RDMA"] == "1"
        do {
            _ = try Context.open()
        } catch .notFound(let what) {
            if required {
                XCTFail("VKVERBS_REQUIRE_RDMA=1 but there is no RDMA device")
                throw VerbsError.notFound(what)
            }
            throw XCTSkip("skipped: no RDMA device")
        }
        guard let address = ProcessInfo.processInfo.environment["VKVERBS_FABRIC_ADDR"] else {
            if required {
                XCTFail("VKVERBS_REQUIRE_RDMA=1 but VKVERBS_FABRIC_ADDR is not set")
                throw VerbsError.invalidArgument("VKVERBS_FABRIC_ADDR is not set")
            }
            throw XCTSkip("skipped: VKVERBS_FABRIC_ADDR is not set")
        }
        return address
    }
}

/// Asserts that `body` throws exactly `expected`.
func assertThrows<T>(_ expected: VulkanError, file: StaticString = #filePath, line: UInt = #line,
                     _ body: () throws(VulkanError) -> T) {
    do {
        _ = try body()
        XCTFail("expected \(expected), got success", file: file, line: line)
    } catch {
        XCTAssertEqual(error, expected, file: file, line: line)
    }
}

extension DeviceBuffer {
    /// The buffer's bytes as 32-bit words (host-visible buffers only).
    var words: [UInt32] {
        guard let bytes else { return [] }
        return Array(bytes.bindMemory(to: UInt32.self))
    }
}

/// Writes `PatternShader`'s pattern over all of `buffer` on the GPU.
func writePattern(_ buffer: DeviceBuffer, seed: UInt32, kernel: ComputeKernel, engine: GPUCommandRunner) throws {
    let count = UInt32(buffer.size / 4)
    try engine.run { (recorder) throws(VulkanError) in
        try recorder.dispatch(kernel, buffer: buffer, groups: (count + PatternShader.localSize - 1) / PatternShader.localSize,
                              pushConstants: [count, seed])
    }
}

func expectedPattern(words count: Int, seed: UInt32) -> [UInt32] {
    (0..<UInt32(count)).map { PatternShader.word($0, seed: seed) }
}
