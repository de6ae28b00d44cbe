import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Verbs
import VulkanMemory

// `vkverbs vulkan check` and the Vulkan half of `vkverbs devices`: what each physical device
// offers for RDMA, which strategy the automatic choice takes, and whether GPU writes really
// arrive in the memory the NIC would register.

extension MemoryStrategy {
    /// The command line's name: rdma-address, dma-buf, host-import, host-visible, staged
    /// (the same words as `pingpong --memory`).
    var cliName: String {
        switch self {
        case .rdmaAddress: return "rdma-address"
        case .dmaBuf: return "dma-buf"
        case .hostPointerImport: return "host-import"
        case .hostVisible: return "host-visible"
        case .staged: return "staged"
        }
    }
}

/// A strategy named on the command line, by its CLI name or its Swift name.
struct StrategyArgument: ExpressibleByArgument, Sendable {
    let strategy: MemoryStrategy
    init?(argument: String) {
        guard let match = MemoryStrategy.allCases.first(where: { $0.cliName == argument || $0.rawValue == argument })
        else { return nil }
        strategy = match
    }
    static var allValueStrings: [String] { MemoryStrategy.allCases.map(\.cliName) }
}

/// Whether an error says "this driver (or NIC) cannot", as opposed to "this call failed".
func isUnsupported(_ error: VulkanError) -> Bool {
    switch error {
    case .extensionMissing, .featureMissing, .notExportable, .noMemoryType, .nicUnsupported, .functionMissing:
        return true
    default:
        return false
    }
}

/// The instance the commands use: the emulation layer when asked for (else VKVERBS_RDMA_LAYER
/// decides), validation when VKVERBS_VULKAN_VALIDATION=1.
func makeVulkanInstance(layer: Bool) throws(VulkanError) -> VulkanInstance {
    try VulkanInstance(options: .init(applicationName: "vkverbs", rdmaEmulationLayer: layer ? true : nil))
}

/// Whether `makeVulkanInstance(layer:)` asks for the emulation layer.
func wantsEmulationLayer(_ layer: Bool) -> Bool {
    layer || ProcessInfo.processInfo.environment["VKVERBS_RDMA_LAYER"] == "1"
}

/// Words for an instance that could not be made: usually no driver (ICD) for the loader.
func describeInstanceFailure(_ error: VulkanError) -> String {
    if case let .instanceCreation(_, result) = error, result.rawValue == -9 {  // VK_ERROR_INCOMPATIBLE_DRIVER
        return "no Vulkan driver: the loader found no ICD (\(error)); "
            + "point VK_DRIVER_FILES at the driver's ICD manifest, e.g. /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json"
    }
    return "no Vulkan instance: \(error)"
}

/// The physical device at `index`, or the first GPU (discrete, integrated, virtual), else the first device.
func pickPhysicalDevice(_ instance: VulkanInstance, index: Int?) throws(VulkanError) -> PhysicalDevice {
    if let index { return try instance.physicalDevice(at: index) }
    let all = try instance.physicalDevices()
    guard let first = all.first else { throw .noSuchDevice(index: 0, count: 0) }
    for device in all {
        let type = try device.capabilityReport().deviceType
        if type == "discreteGPU" || type == "integratedGPU" || type == "virtualGPU" { return device }
    }
    return first
}

func formatBytes(_ bytes: UInt64) -> String {
    let units: [(UInt64, String)] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    for (unit, name) in units where bytes >= unit {
        let value = Double(bytes) / Double(unit)
        return value == value.rounded() ? "\(Int(value)) \(name)" : String(format: "%.1f %@", value, name)
    }
    return "\(bytes) B"
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

// MARK: - The Vulkan part of `vkverbs devices`

/// What `devices` says about Vulkan.
struct VulkanSurvey: Codable {
    struct Layer: Codable {
        var name: String
        /// The loader can find it (`vkEnumerateInstanceLayerProperties`).
        var found: Bool
        /// It is on for the instance this survey used.
        var enabled: Bool
    }

    struct Rejection: Codable {
        var strategy: MemoryStrategy
        var reason: String
    }

    /// What `VulkanDevice.allocate(size:strategy: nil, nic:)` did with a small probe allocation.
    struct AutomaticChoice: Codable {
        var probeSize: UInt64
        /// nil when no strategy worked (then `error` says why).
        var strategy: MemoryStrategy?
        var rejected: [Rejection]
        var error: String?
        /// Whether the NIC's side was taken into account (a protection domain of `nicDevice`).
        var nicDevice: String?
    }

    struct Device: Codable {
        var report: CapabilityReport
        var driver: DriverInfo?
        var automaticChoice: AutomaticChoice
    }

    /// False when there is no loader driver or no physical device; `note` says why.
    var available: Bool
    var note: String?
    var layer: Layer
    var devices: [Device]

    /// Surveys every physical device. With `pd`, the reports probe the NIC and the automatic choice
    /// checks the NIC side too. Never throws: what fails is said in `note` or per device.
    static func collect(layer: Bool, nic pd: ProtectionDomain?) -> VulkanSurvey {
        let found = (try? VulkanInstance.availableLayers().contains(ExtensionName.rdmaEmulationLayer)) ?? false
        var survey = VulkanSurvey(available: false, note: nil,
                                  layer: Layer(name: ExtensionName.rdmaEmulationLayer, found: found, enabled: false),
                                  devices: [])
        let instance: VulkanInstance
        do {
            instance = try makeVulkanInstance(layer: layer)
        } catch {
            if case .layerMissing = error {
                survey.note = "\(error); surveyed without it"
                do {
                    instance = try VulkanInstance(options: .init(applicationName: "vkverbs", rdmaEmulationLayer: false))
                } catch {
                    survey.note = describeInstanceFailure(error)
                    return survey
                }
            } else {
                survey.note = describeInstanceFailure(error)
                return survey
            }
        }
        let physical: [PhysicalDevice]
        do {
            physical = try instance.physicalDevices()
        } catch {
            survey.note = "no Vulkan devices: \(error)"
            return survey
        }
        guard !physical.isEmpty else {
            survey.note = "no Vulkan driver: the loader lists no physical device (is a driver installed? VK_DRIVER_FILES)"
            return survey
        }
        survey.available = true
        survey.layer.enabled = wantsEmulationLayer(layer) && survey.note == nil
        for device in physical {
            do {
                let report = try device.capabilityReport(nic: pd)
                survey.devices.append(Device(report: report, driver: try? device.driverInfo(),
                                             automaticChoice: automaticChoice(device, nic: pd)))
            } catch {
                survey.note = (survey.note.map { $0 + "; " } ?? "") + "device \(device.index) (\(device.name)): \(error)"
            }
        }
        return survey
    }

    /// Makes a device and lets the module choose for a 64 KiB allocation.
    static func automaticChoice(_ physical: PhysicalDevice, nic pd: ProtectionDomain?) -> AutomaticChoice {
        let size: UInt64 = 64 * 1024
        var choice = AutomaticChoice(probeSize: size, strategy: nil, rejected: [], error: nil, nicDevice: pd?.context.name)
        do {
            let device = try VulkanDevice(physicalDevice: physical)
            let allocation = try device.allocate(size: size, strategy: nil, nic: pd)
            choice.strategy = allocation.strategy
            choice.rejected = allocation.rejected.map { Rejection(strategy: $0.strategy, reason: $0.reason) }
        } catch {
            if case let .noStrategy(rejections) = error {
                choice.rejected = rejections.map { Rejection(strategy: $0.strategy, reason: $0.reason) }
            }
            choice.error = error.description
        }
        return choice
    }

    func printText() {
        let layerState = layer.enabled ? "enabled" : layer.found ? "found, not enabled (--layer)" : "not found"
        print("Vulkan (layer \(layer.name): \(layerState)):")
        if let note { print("  \(note)") }
        for device in devices { device.printText() }
    }
}

extension VulkanSurvey.Device {
    func printText() {
        let r = report
        let driverText = driver.map { d in
            [d.name, d.info].compactMap { $0 }.joined(separator: " ") + (d.name == nil ? "version \(d.versionString)" : "")
        } ?? "unknown"
        print(String(format: "  [%d] %@ (%@, vendor 0x%04x, device 0x%04x, Vulkan %@, driver %@)", r.deviceIndex,
                     r.deviceName, r.deviceType, r.vendorID, r.deviceID, r.apiVersion.description, driverText))
        func yes(_ b: Bool) -> String { b ? "yes" : "no" }
        let source = r.externalMemoryRDMASource.map { " from \($0.rawValue)" } ?? ""
        print("    VK_NV_external_memory_rdma: \(yes(r.extensions.externalMemoryRDMA))\(source), feature externalMemoryRDMA: \(yes(r.externalMemoryRDMAFeature))")
        let alignment = r.minImportedHostPointerAlignment.map { " (min alignment \($0))" } ?? ""
        print("    VK_KHR_external_memory_fd: \(yes(r.extensions.externalMemoryFD)), VK_EXT_external_memory_dma_buf: \(yes(r.extensions.externalMemoryDMABuf)), "
              + "VK_EXT_external_memory_host: \(yes(r.extensions.externalMemoryHost))\(alignment), VK_EXT_memory_budget: \(yes(r.extensions.memoryBudget))")
        for heap in r.heaps {
            print("    heap \(heap.index): \(formatBytes(heap.size))\(heap.deviceLocal ? " device-local" : ""), "
                  + "available \(formatBytes(heap.available)) (\(r.budgetSource.rawValue))")
        }
        for type in r.memoryTypes {
            let flags = type.properties.map { $0.replacingOccurrences(of: "_BIT", with: "") }.joined(separator: "|")
            print("    type \(type.index): heap \(type.heapIndex) \(flags.isEmpty ? "(no flags)" : flags)")
        }
        print("    RDMA-capable types: \(r.rdmaCapableMemoryTypes.isEmpty ? "none" : r.rdmaCapableMemoryTypes.map(String.init).joined(separator: ", "))")
        let buffers = r.externalBuffers.map { b -> String in
            guard b.queried else { return "\(b.handleType.rawValue) not queried (no extension)" }
            let what = [b.exportable ? "exportable" : nil, b.importable ? "importable" : nil,
                        b.dedicatedOnly ? "dedicated only" : nil].compactMap { $0 }
            return "\(b.handleType.rawValue) \(what.isEmpty ? "unsupported" : what.joined(separator: " "))"
        }
        print("    external buffers: \(buffers.joined(separator: "; "))")
        let peers = r.nic.peerMemoryClients.isEmpty ? "none"
            : r.nic.peerMemoryClients.map { "\($0.path) \($0.version)" }.joined(separator: ", ")
        print("    NIC side: peer-memory clients: \(peers); dma-buf MRs: \(r.nic.dmaBuf.map { "\($0)" } ?? "not probed (no RDMA device)")")
        let c = automaticChoice
        let nicText = c.nicDevice.map { " (NIC \($0) considered)" } ?? " (no NIC considered)"
        print("    automatic choice for \(formatBytes(c.probeSize))\(nicText): \(c.strategy?.cliName ?? "none")")
        for rejection in c.rejected { print("      not \(rejection.strategy.cliName): \(rejection.reason)") }
        if let error = c.error, c.rejected.isEmpty { print("      \(error)") }
    }
}

// MARK: - vkverbs vulkan check

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

func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
