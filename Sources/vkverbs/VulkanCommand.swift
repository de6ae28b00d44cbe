import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Verbs
import VulkanMemory

// `vkverbs vulkan check`: whether GPU writes really arrive in the memory the NIC would register,
// with each strategy. (The Vulkan half of `vkverbs devices` is VulkanSurvey.)

struct VulkanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vulkan",
        abstract: "Vulkan memory checks.",
        subcommands: [VulkanCheckCommand.self])
}

/// One strategy's outcome.
struct StrategyCheck: Codable {
    enum Status: String, Codable { case ok, fail = "FAIL", unsupported }
    var strategy: MemoryStrategy
    var status: Status
    /// Why unsupported or what failed; for ok, how the bytes were read.
    var detail: String
    /// The steps that passed, in order.
    var passed: [String]
    /// The memory type of what the NIC registers (for staged: the staging buffer).
    var memoryType: Int?
    var seconds: Double
}

struct VulkanCheckReport: Codable {
    var device: String
    var deviceIndex: Int
    var driver: DriverInfo?
    var layerEnabled: Bool
    var externalMemoryRDMASource: ExternalMemoryRDMASource?
    var size: UInt64
    var checks: [StrategyCheck]
    var validationMessages: [String]?
    var passed: Bool
}

struct VulkanCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Allocate with each memory strategy, let the GPU write, read it back where the NIC would.",
        discussion: """
        For each strategy the device supports (or the one named): allocate --size bytes; vkCmdFillBuffer \
        fills the GPU buffer and the bytes are read back through the memory the NIC would register \
        (the host pointer, the mapping, the staging buffer after a GPU copy, or the layer's RDMA \
        address); then the pattern compute shader writes every word and every word is compared; \
        then the host writes a pattern there and a GPU copy must carry it back. A driver's RDMA \
        address or a dma-buf is not host memory: those are read through a GPU copy into a mapped buffer.
        One line per strategy: ok, FAIL or unsupported (with the reason). Exit status 1 on any FAIL, \
        and when the strategy named with --strategy is unsupported.
        --layer enables VK_LAYER_VKVERBS_rdma_emulation (the loader must find its manifest, e.g. \
        through VK_ADD_LAYER_PATH), so rdma-address runs through it on drivers without \
        VK_NV_external_memory_rdma. VKVERBS_VULKAN_VALIDATION=1 adds the validation layer; \
        its errors count as a failure.
        """)

    @Option(help: "Only this strategy: \(MemoryStrategy.allCases.map(\.cliName).joined(separator: ", ")).")
    var strategy: StrategyArgument?
    @Option(help: "Bytes per allocation (a multiple of 4).") var size: UInt64 = 8 << 20
    @Flag(help: "Enable the emulation layer VK_LAYER_VKVERBS_rdma_emulation.") var layer = false
    @Option(help: "Vulkan physical device index (default: the first GPU, else device 0).") var device: Int?
    @Option(help: "Seconds each GPU submission may take.") var timeout: Int = 30
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if size == 0 || size % 4 != 0 { throw ValidationError("--size must be a positive multiple of 4, got \(size)") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        let instance: VulkanInstance
        let physical: PhysicalDevice
        do {
            instance = try makeVulkanInstance(layer: layer)
            physical = try pickPhysicalDevice(instance, index: device)
        } catch {
            if case .noSuchDevice(_, 0) = error { fail("no Vulkan driver: the loader lists no physical device") }
            if case .instanceCreation = error { fail(describeInstanceFailure(error)) }
            fail(error)
        }
        var report = VulkanCheckReport(
            device: physical.name, deviceIndex: physical.index, driver: try? physical.driverInfo(),
            layerEnabled: false, externalMemoryRDMASource: try? physical.externalMemoryRDMASource(),
            size: size, checks: [], validationMessages: nil, passed: true)
        report.layerEnabled = wantsEmulationLayer(layer)
        if !json {
            let d = report.driver.map { " driver \([$0.name, $0.info].compactMap { $0 }.joined(separator: " "))" } ?? ""
            print("vulkan check: device \(physical.index) \(physical.name)\(d), \(size) bytes per allocation, "
                  + "emulation layer \(report.layerEnabled ? "on" : "off")"
                  + (report.externalMemoryRDMASource.map { ", VK_NV_external_memory_rdma from \($0.rawValue)" } ?? ""))
        }
        do {
            let vulkanDevice = try VulkanDevice(physicalDevice: physical)
            let checker = try StrategyChecker(device: vulkanDevice, size: size, timeout: .seconds(timeout),
                                              source: report.externalMemoryRDMASource)
            for (n, candidate) in (strategy.map { [$0.strategy] } ?? MemoryStrategy.allCases).enumerated() {
                let result = checker.check(candidate, seed: 0x5EED_0000 &+ UInt32(n) &* 0x101)
                report.checks.append(result)
                if !json {
                    let padded = candidate.cliName.padding(toLength: 13, withPad: " ", startingAt: 0)
                    let type = result.memoryType.map { ", memory type \($0)" } ?? ""
                    switch result.status {
                    case .ok:
                        print("\(padded) ok           \(result.passed.joined(separator: ", ")) verified\(type); "
                              + "\(result.detail) (\(String(format: "%.2f", result.seconds)) s)")
                    case .fail:
                        print("\(padded) FAIL         \(result.detail)"
                              + (result.passed.isEmpty ? "" : " (passed before: \(result.passed.joined(separator: ", ")))"))
                    case .unsupported:
                        print("\(padded) unsupported  \(result.detail)")
                    }
                }
            }
        } catch {
            fail(error)
        }
        if let log = instance.validationLog {
            let messages = log.messages
            report.validationMessages = messages.map(\.description)
            if !json {
                print("validation: \(messages.count) message(s)")
                for message in messages { print("  \(message)") }
            }
            if messages.contains(where: { $0.severity == .error }) { report.passed = false }
        }
        if report.checks.contains(where: { $0.status == .fail }) { report.passed = false }
        if strategy != nil, report.checks.contains(where: { $0.status == .unsupported }) { report.passed = false }
        if json { try printJSON(report) }
        if !report.passed { throw ExitCode(1) }
    }
}

/// The checks of one strategy on one device.
struct StrategyChecker {
    let device: VulkanDevice
    let size: UInt64
    let timeout: Duration
    let source: ExternalMemoryRDMASource?
    let runner: GPUCommandRunner
    let kernel: ComputeKernel

    init(device: VulkanDevice, size: UInt64, timeout: Duration, source: ExternalMemoryRDMASource?) throws(VulkanError) {
        self.device = device
        self.size = size
        self.timeout = timeout
        self.source = source
        runner = try GPUCommandRunner(device: device)
        kernel = try ComputeKernel.pattern(device: device)
    }

    /// A failed step, with what was seen.
    struct StepFailure: Error { let text: String }

    func check(_ strategy: MemoryStrategy, seed: UInt32) -> StrategyCheck {
        let start = monotonicSeconds()
        var result = StrategyCheck(strategy: strategy, status: .ok, detail: "", passed: [], memoryType: nil, seconds: 0)
        let allocation: VulkanAllocation
        do {
            allocation = try device.allocate(size: size, strategy: strategy)
        } catch {
            result.status = isUnsupported(error) ? .unsupported : .fail
            result.detail = (result.status == .fail ? "allocate: " : "") + error.description
            result.seconds = monotonicSeconds() - start
            return result
        }
        // The type of the memory the NIC registers (the staging buffer's for staged).
        result.memoryType = (allocation.staging ?? allocation.buffer).memoryType.index
        do {
            let view = try HostView(allocation: allocation, source: source, device: device)
            result.detail = view.how

            // 1. vkCmdFillBuffer, read where the NIC would.
            try gpu { (r) throws(VulkanError) in try r.fill(allocation.buffer, value: 0xA5A5_A5A5) }
            try view.withBytes(runner: runner, timeout: timeout) { bytes throws(StepFailure) in
                if let bad = bytes.firstIndex(where: { $0 != 0xA5 }) {
                    throw StepFailure(text: "fill: byte \(bad) is 0x\(String(bytes[bad], radix: 16)), expected 0xa5")
                }
            }
            result.passed.append("fill")

            // 2. The compute shader's pattern, every word.
            try gpu { (r) throws(VulkanError) in try r.writePattern(kernel, into: allocation.buffer, seed: seed) }
            try view.withBytes(runner: runner, timeout: timeout) { bytes throws(StepFailure) in
                if let bad = PatternShader.firstMismatch(in: UnsafeRawBufferPointer(bytes), seed: seed) {
                    let got = bytes.loadUnaligned(fromByteOffset: bad, as: UInt32.self)
                    let want = PatternShader.word(UInt32(bad / 4), seed: seed)
                    throw StepFailure(text: "compute shader: word at byte \(bad) is 0x\(String(got, radix: 16)), expected 0x\(String(want, radix: 16))")
                }
            }
            result.passed.append("compute shader")

            // 3. The other way: the host writes where the NIC would write, the GPU must see it.
            if view.hostWritable {
                let back = seed ^ 0xFFFF_FFFF
                try view.write(runner: runner, timeout: timeout) { bytes in
                    for i in 0..<(bytes.count / 4) {
                        bytes.storeBytes(of: PatternShader.word(UInt32(i), seed: back), toByteOffset: i * 4, as: UInt32.self)
                    }
                }
                let check = try DeviceBuffer(device: device, size: size, hostVisible: true)
                try gpu { (r) throws(VulkanError) in try r.copy(from: allocation.buffer, to: check) }
                if let bad = PatternShader.firstMismatch(in: UnsafeRawBufferPointer(check.bytes!), seed: back) {
                    throw StepFailure(text: "host->GPU: the GPU copy differs at byte \(bad)")
                }
                result.passed.append("host->GPU")
            }
        } catch let failure as StepFailure {
            result.status = .fail
            result.detail = failure.text
        } catch {
            result.status = .fail
            result.detail = "\(error)"
        }
        result.seconds = monotonicSeconds() - start
        return result
    }

    private func gpu(_ body: (CommandRecorder) throws(VulkanError) -> Void) throws(VulkanError) {
        try runner.run(timeout: timeout, body)
    }
}

/// How the host reaches an allocation's bytes as the NIC would see them.
struct HostView {
    enum Kind {
        /// Host memory the NIC registers (imported pages, a mapping, the layer's address).
        case direct(UnsafeMutableRawBufferPointer)
        /// A staging buffer the GPU buffer is copied into first.
        case staged(VulkanAllocation)
        /// Not host memory (a driver's RDMA address, a dma-buf): read through a GPU copy.
        case copied(VulkanAllocation, DeviceBuffer)
    }

    let kind: Kind
    let how: String

    init(allocation: VulkanAllocation, source: ExternalMemoryRDMASource?, device: VulkanDevice) throws(VulkanError) {
        switch allocation.registrable.location {
        case let .hostPointer(pointer, length):
            if allocation.staging != nil {
                kind = .staged(allocation)
                how = "read from the staging buffer the NIC registers, after a GPU copy"
            } else {
                kind = .direct(UnsafeMutableRawBufferPointer(start: pointer, count: length))
                how = allocation.strategy == .hostPointerImport ? "read at the imported host pages"
                    : "read through the mapping"
            }
        case let .remoteAddress(address, length) where source == .vkverbsLayer:
            kind = .direct(UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: UInt(address)), count: length))
            how = "read at the RDMA address from vkGetMemoryRemoteAddressNV (the layer's host mapping)"
        case .remoteAddress:
            kind = .copied(allocation, try DeviceBuffer(device: device, size: allocation.size, hostVisible: true))
            how = "the driver's RDMA address is a GPU address: read through a GPU copy"
        case .dmaBuf:
            kind = .copied(allocation, try DeviceBuffer(device: device, size: allocation.size, hostVisible: true))
            how = "a dma-buf is not mapped here: read through a GPU copy"
        }
    }

    var hostWritable: Bool {
        if case .copied = kind { return false }
        return true
    }

    /// Calls `body` with the bytes as the NIC would read them. They are copied out with one
    /// `memcpy` first: a mapping of device memory through the BAR (NVIDIA's DEVICE_LOCAL|HOST_VISIBLE
    /// type) is uncached, and reading it a byte at a time would take seconds per MiB.
    func withBytes<E: Error>(runner: GPUCommandRunner, timeout: Duration,
                             _ body: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws {
        let source: UnsafeMutableRawBufferPointer
        switch kind {
        case let .direct(bytes):
            source = bytes
        case let .staged(allocation):
            try allocation.copyToStaging(using: runner, timeout: timeout)
            source = allocation.hostBytes!
        case let .copied(allocation, check):
            try runner.copy(from: allocation.buffer, to: check, timeout: timeout)
            source = check.bytes!
        }
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: source.count, alignment: 64)
        defer { copy.deallocate() }
        memcpy(copy.baseAddress!, source.baseAddress!, source.count)
        try body(copy)
    }

    /// Lets `body` write the bytes where the NIC would write them, then makes the GPU buffer hold them.
    func write(runner: GPUCommandRunner, timeout: Duration, _ body: (UnsafeMutableRawBufferPointer) -> Void) throws {
        switch kind {
        case let .direct(bytes):
            body(bytes)
        case let .staged(allocation):
            body(allocation.hostBytes!)
            try allocation.copyFromStaging(using: runner, timeout: timeout)
        case .copied:
            break
        }
    }
}
