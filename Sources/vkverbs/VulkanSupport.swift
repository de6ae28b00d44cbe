import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import VulkanMemory

// What the commands that use Vulkan share: strategy names on the command line, the instance,
// and words for what went wrong.

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
