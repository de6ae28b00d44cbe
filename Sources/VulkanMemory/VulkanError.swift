import CVulkan

/// A `VkResult` kept as its raw value, so errors stay `Sendable`, `Codable` and comparable
/// whatever the header's enum import looks like.
public struct VulkanResult: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    init(_ result: VkResult) { rawValue = result.rawValue }

    public static let errorOutOfHostMemory = VulkanResult(VK_ERROR_OUT_OF_HOST_MEMORY)
    public static let errorOutOfDeviceMemory = VulkanResult(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    public static let errorInitializationFailed = VulkanResult(VK_ERROR_INITIALIZATION_FAILED)
    public static let errorExtensionNotPresent = VulkanResult(VK_ERROR_EXTENSION_NOT_PRESENT)
    public static let errorFeatureNotPresent = VulkanResult(VK_ERROR_FEATURE_NOT_PRESENT)
    public static let errorLayerNotPresent = VulkanResult(VK_ERROR_LAYER_NOT_PRESENT)
    public static let errorInvalidExternalHandle = VulkanResult(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    public static let errorDeviceLost = VulkanResult(VK_ERROR_DEVICE_LOST)
    public static let timeout = VulkanResult(VK_TIMEOUT)

    public var description: String {
        // The names of the codes this module can meet; others print as numbers.
        let names: [Int32: String] = [
            0: "VK_SUCCESS", 1: "VK_NOT_READY", 2: "VK_TIMEOUT", 5: "VK_INCOMPLETE",
            -1: "VK_ERROR_OUT_OF_HOST_MEMORY", -2: "VK_ERROR_OUT_OF_DEVICE_MEMORY",
            -3: "VK_ERROR_INITIALIZATION_FAILED", -4: "VK_ERROR_DEVICE_LOST", -5: "VK_ERROR_MEMORY_MAP_FAILED",
            -6: "VK_ERROR_LAYER_NOT_PRESENT", -7: "VK_ERROR_EXTENSION_NOT_PRESENT",
            -8: "VK_ERROR_FEATURE_NOT_PRESENT", -9: "VK_ERROR_INCOMPATIBLE_DRIVER",
            -10: "VK_ERROR_TOO_MANY_OBJECTS", -11: "VK_ERROR_FORMAT_NOT_SUPPORTED",
            -13: "VK_ERROR_UNKNOWN", -1000072003: "VK_ERROR_INVALID_EXTERNAL_HANDLE",
            -1000069000: "VK_ERROR_OUT_OF_POOL_MEMORY",
        ]
        return names[rawValue] ?? "VkResult \(rawValue)"
    }
}

/// Every failure of the Vulkan module. Calls that returned a negative `VkResult` give the
/// case of the step that failed, with the Vulkan function and its result; the other cases
/// say which precondition of a step was not met, so a caller (or the strategy chooser)
/// can tell "this driver cannot" from "this call failed".
public enum VulkanError: Error, Hashable, Sendable, CustomStringConvertible {
    // Steps that call Vulkan.
    case instanceCreation(function: String, result: VulkanResult)
    case debugMessenger(function: String, result: VulkanResult)
    case deviceEnumeration(function: String, result: VulkanResult)
    case deviceCreation(function: String, result: VulkanResult)
    case bufferCreation(function: String, result: VulkanResult)
    case memoryAllocation(function: String, result: VulkanResult)
    case memoryBinding(function: String, result: VulkanResult)
    case memoryMapping(function: String, result: VulkanResult)
    case remoteAddressExport(function: String, result: VulkanResult)
    case fdExport(function: String, result: VulkanResult)
    case hostPointerImport(function: String, result: VulkanResult)
    case commandSetup(function: String, result: VulkanResult)
    case commandRecording(function: String, result: VulkanResult)
    case submission(function: String, result: VulkanResult)
    case pipelineCreation(function: String, result: VulkanResult)

    // Preconditions.
    /// The instance or device lacks an extension a step needs.
    case extensionMissing(String, neededFor: String)
    /// A feature (e.g. `externalMemoryRDMA`) is not supported or was not enabled.
    case featureMissing(String, neededFor: String)
    /// A layer (e.g. VK_LAYER_KHRONOS_validation) is not installed.
    case layerMissing(String)
    /// `vkGet*ProcAddr` returned NULL for an extension function.
    case functionMissing(String)
    /// The instance or device speaks an older Vulkan than this module needs.
    case apiVersionTooOld(found: String, needed: String)
    /// No physical device has this index.
    case noSuchDevice(index: Int, count: Int)
    /// No queue family can do compute and transfer.
    case noQueueFamily
    /// The caller's input was rejected before anything reached Vulkan.
    case invalidArgument(String)
    /// The heap has less budget left than the request.
    case overBudget(requested: UInt64, available: UInt64, heap: Int)
    /// `vkGetPhysicalDeviceExternalBufferProperties` says the handle type cannot be exported (or imported).
    case notExportable(handleType: String)
    /// No memory type allowed by `memoryTypeBits` has the properties the strategy needs.
    case noMemoryType(needs: String, memoryTypeBits: UInt32)
    /// The NIC side cannot take this kind of memory (no peer-memory client, no dma-buf MRs).
    case nicUnsupported(String)
    /// A fence wait ran out; the submitted work may still be running.
    case timedOut(operation: String, after: Duration)
    /// Every strategy was refused; each entry says why.
    case noStrategy([StrategyRejection])

    public var description: String {
        switch self {
        case let .instanceCreation(f, r), let .debugMessenger(f, r), let .deviceEnumeration(f, r),
             let .deviceCreation(f, r), let .bufferCreation(f, r), let .memoryAllocation(f, r),
             let .memoryBinding(f, r), let .memoryMapping(f, r), let .remoteAddressExport(f, r),
             let .fdExport(f, r), let .hostPointerImport(f, r), let .commandSetup(f, r),
             let .commandRecording(f, r), let .submission(f, r), let .pipelineCreation(f, r):
            return "\(f) failed with \(r) (\(step))"
        case let .extensionMissing(name, purpose): return "extension \(name) is not enabled (needed for \(purpose))"
        case let .featureMissing(name, purpose): return "feature \(name) is not enabled (needed for \(purpose))"
        case let .layerMissing(name): return "layer \(name) is not installed"
        case let .functionMissing(name): return "the loader returned no \(name)"
        case let .apiVersionTooOld(found, needed): return "Vulkan \(found) is older than the \(needed) this module needs"
        case let .noSuchDevice(index, count): return "no physical device \(index) (there are \(count))"
        case .noQueueFamily: return "no queue family supports compute and transfer"
        case let .invalidArgument(text): return "invalid argument: \(text)"
        case let .overBudget(requested, available, heap):
            return "\(requested) bytes requested but heap \(heap) has \(available) bytes of budget left"
        case let .notExportable(type): return "external memory handle type \(type) is not supported for this buffer"
        case let .noMemoryType(needs, bits):
            return "no memory type with \(needs) among memoryTypeBits 0x\(String(bits, radix: 16))"
        case let .nicUnsupported(text): return "the NIC cannot register it: \(text)"
        case let .timedOut(operation, after): return "\(operation) timed out after \(after)"
        case let .noStrategy(rejections):
            return "no memory strategy worked: " + rejections.map(\.description).joined(separator: "; ")
        }
    }

    /// The step a Vulkan-call case stands for, in words.
    private var step: String {
        switch self {
        case .instanceCreation: return "creating the instance"
        case .debugMessenger: return "installing the debug messenger"
        case .deviceEnumeration: return "enumerating devices"
        case .deviceCreation: return "creating the device"
        case .bufferCreation: return "creating the buffer"
        case .memoryAllocation: return "allocating memory"
        case .memoryBinding: return "binding memory"
        case .memoryMapping: return "mapping memory"
        case .remoteAddressExport: return "exporting the RDMA address"
        case .fdExport: return "exporting the fd"
        case .hostPointerImport: return "importing host memory"
        case .commandSetup: return "setting up command buffers"
        case .commandRecording: return "recording commands"
        case .submission: return "submitting or waiting"
        case .pipelineCreation: return "creating the pipeline"
        default: return ""
        }
    }

    /// The `VkResult` behind a failed call, if this is one.
    public var result: VulkanResult? {
        switch self {
        case let .instanceCreation(_, r), let .debugMessenger(_, r), let .deviceEnumeration(_, r),
             let .deviceCreation(_, r), let .bufferCreation(_, r), let .memoryAllocation(_, r),
             let .memoryBinding(_, r), let .memoryMapping(_, r), let .remoteAddressExport(_, r),
             let .fdExport(_, r), let .hostPointerImport(_, r), let .commandSetup(_, r),
             let .commandRecording(_, r), let .submission(_, r), let .pipelineCreation(_, r):
            return r
        default: return nil
        }
    }
}

// The small core that turns a VkResult into the typed error of its step. Positive codes
// (VK_INCOMPLETE, VK_SUBOPTIMAL_KHR) are successes here; VK_TIMEOUT is handled by the caller.

typealias ErrorStep = (_ function: String, _ result: VulkanResult) -> VulkanError

@inline(__always)
func check(_ result: VkResult, _ function: String, _ step: ErrorStep) throws(VulkanError) {
    if result.rawValue < 0 { throw step(function, VulkanResult(result)) }
}
