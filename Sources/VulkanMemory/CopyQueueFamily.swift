#if canImport(Glibc)
import Glibc
#endif
import CVulkan

/// Which queue family a device's copies (`GPUCommandRunner(queue: .copy)`, `StagingRing`) are
/// submitted to. Drivers offer several families that can copy, and on NVIDIA they do not cost
/// the same per submission: on an H200 a copy-only family copied 1 MiB in 30.7 us where the main
/// family took 33.3 (docs/nvidia-results.md). Which one wins differs by device and driver, so by
/// default it is measured once per process and device (`CopyFamilyCalibration`).
public enum CopyQueueFamily: Sendable, Hashable, CustomStringConvertible {
    /// Measured: every family that can copy runs a few small and large copies, the fastest is
    /// kept (the main family unless another beats it clearly). A CPU driver, or a device with one
    /// such family (lavapipe), uses the main family without measuring.
    case automatic
    /// The family of the device's main (compute) queue.
    case main
    /// This family index; it must exist and be able to copy.
    case family(UInt32)

    /// The environment variable `VulkanDevice` reads when its options leave the choice open:
    /// `auto`, `main` or a family index.
    public static let environmentVariable = "VKVERBS_COPY_QUEUE_FAMILY"

    /// Parses `auto` (or `automatic`), `main` or a family index; nil for anything else.
    public init?(_ text: String) {
        switch text.lowercased() {
        case "auto", "automatic": self = .automatic
        case "main": self = .main
        default:
            guard let index = UInt32(text) else { return nil }
            self = .family(index)
        }
    }

    public var description: String {
        switch self {
        case .automatic: return "auto"
        case .main: return "main"
        case .family(let index): return "\(index)"
        }
    }

    /// The choice `VKVERBS_COPY_QUEUE_FAMILY` names; nil when it is unset or empty. Throws
    /// `.invalidArgument` for a value that is none of the three forms.
    public static func fromEnvironment() throws(VulkanError) -> CopyQueueFamily? {
        guard let raw = getenv(environmentVariable) else { return nil }
        let text = String(cString: raw)
        if text.isEmpty { return nil }
        guard let choice = CopyQueueFamily(text) else {
            throw .invalidArgument("\(environmentVariable)=\(text): expected auto, main or a queue family index")
        }
        return choice
    }
}

/// What `vkGetPhysicalDeviceQueueFamilyProperties` says about one family, as the copy family
/// choice needs it.
public struct QueueFamilyTraits: Sendable, Hashable, Codable {
    public var index: UInt32
    /// `VkQueueFlags` as raw bits.
    public var flags: UInt32
    public var queueCount: UInt32
    public var timestampValidBits: UInt32

    public init(index: UInt32, flags: UInt32, queueCount: UInt32, timestampValidBits: UInt32) {
        self.index = index
        self.flags = flags
        self.queueCount = queueCount
        self.timestampValidBits = timestampValidBits
    }

    /// Has a queue that can record `vkCmdCopyBuffer` and `vkCmdFillBuffer`: graphics and compute
    /// families support transfers whether or not they report TRANSFER (Vulkan spec, queue
    /// operations).
    public var canCopy: Bool {
        let copying = VK_QUEUE_TRANSFER_BIT.rawValue | VK_QUEUE_GRAPHICS_BIT.rawValue | VK_QUEUE_COMPUTE_BIT.rawValue
        return queueCount > 0 && flags & copying != 0
    }
}

/// One family's measured cost: the median wall time of a small and of a large copy, each
/// submitted and waited for in turn (device-local -> host-visible memory).
public struct CopyFamilyTiming: Sendable, Hashable, Codable {
    public var family: UInt32
    public var smallBytes: UInt64
    public var smallMicroseconds: Double
    public var largeBytes: UInt64
    public var largeMicroseconds: Double

    public init(family: UInt32, smallBytes: UInt64, smallMicroseconds: Double, largeBytes: UInt64, largeMicroseconds: Double) {
        self.family = family
        self.smallBytes = smallBytes
        self.smallMicroseconds = smallMicroseconds
        self.largeBytes = largeBytes
        self.largeMicroseconds = largeMicroseconds
    }

    /// What the families are ranked by: a small plus a large copy, the fixed cost per submission
    /// and the rate both counting.
    public var score: Double { smallMicroseconds + largeMicroseconds }
}

/// The family a device's copies go to, and why.
public struct CopyQueueChoice: Sendable, Hashable, Codable {
    public var family: UInt32
    public var mainFamily: UInt32
    /// In words: "measured", "asked for", "one family can copy", ...
    public var reason: String
    /// Per family, when measured (the main family first).
    public var timings: [CopyFamilyTiming]

    public init(family: UInt32, mainFamily: UInt32, reason: String, timings: [CopyFamilyTiming] = []) {
        self.family = family
        self.mainFamily = mainFamily
        self.reason = reason
        self.timings = timings
    }

    /// The families that can copy, the main one first, then by index.
    static func candidates(_ families: [QueueFamilyTraits], main: UInt32) -> [UInt32] {
        let copying = families.filter(\.canCopy).map(\.index)
        return copying.contains(main) ? [main] + copying.filter { $0 != main } : copying
    }

    /// What `asked` comes to on a device with `families`, its main family `main`: a family
    /// decided without measuring, or the candidates to measure. Throws `.invalidArgument` when
    /// `asked` names a family the device lacks or one that cannot copy.
    static func plan(_ asked: CopyQueueFamily, families: [QueueFamilyTraits], main: UInt32, cpuDevice: Bool)
        throws(VulkanError) -> Plan
    {
        switch asked {
        case .main:
            return .decided(CopyQueueChoice(family: main, mainFamily: main, reason: "the main family, as asked"))
        case .family(let index):
            guard let traits = families.first(where: { $0.index == index }) else {
                throw .invalidArgument("copy queue family \(index): the device has \(families.count) queue families")
            }
            guard traits.canCopy else {
                throw .invalidArgument("copy queue family \(index) cannot copy (flags 0x\(String(traits.flags, radix: 16)), "
                                       + "\(traits.queueCount) queues)")
            }
            return .decided(CopyQueueChoice(family: index, mainFamily: main, reason: "family \(index), as asked"))
        case .automatic:
            let candidates = candidates(families, main: main)
            if cpuDevice {
                return .decided(CopyQueueChoice(family: main, mainFamily: main,
                                                reason: "the main family: a CPU driver, whose copies take the host's cores"))
            }
            if candidates.count <= 1 {
                return .decided(CopyQueueChoice(family: main, mainFamily: main, reason: "the main family: the only one that can copy"))
            }
            return .measure(candidates)
        }
    }

    enum Plan: Equatable {
        case decided(CopyQueueChoice)
        case measure([UInt32])
    }

    /// How much faster (by `CopyFamilyTiming.score`) another family must be than the main one to
    /// be chosen: below that, measurement noise, and the main family needs no second queue.
    public static let requiredGain = 0.03

    /// The choice from measured `timings`: the fastest family when it beats the main one by at
    /// least `requiredGain`, else the main family. Timings of no family (or none of the main
    /// family) keep the main family.
    static func pick(_ timings: [CopyFamilyTiming], main: UInt32) -> CopyQueueChoice {
        guard let mainTiming = timings.first(where: { $0.family == main }),
              let best = timings.filter({ $0.score > 0 }).min(by: { $0.score < $1.score })
        else {
            return CopyQueueChoice(family: main, mainFamily: main, reason: "the main family: no measurement of it", timings: timings)
        }
        let gain = 1 - best.score / mainTiming.score
        if best.family != main, gain >= requiredGain {
            return CopyQueueChoice(family: best.family, mainFamily: main,
                                   reason: "measured: family \(best.family) \(percent(gain)) faster than the main family \(main)",
                                   timings: timings)
        }
        return CopyQueueChoice(family: main, mainFamily: main,
                               reason: best.family == main ? "measured: the main family is the fastest"
                                   : "measured: family \(best.family) only \(percent(gain)) faster than the main family",
                               timings: timings)
    }

    private static func percent(_ fraction: Double) -> String {
        "\(Int((fraction * 1000).rounded()) / 10).\(abs(Int((fraction * 1000).rounded())) % 10) %"
    }
}

extension PhysicalDevice {
    /// Every queue family (`vkGetPhysicalDeviceQueueFamilyProperties`).
    public func queueFamilies() -> [QueueFamilyTraits] {
        var count: UInt32 = 0
        vkGetPhysicalDeviceQueueFamilyProperties(raw, &count, nil)
        var families = [VkQueueFamilyProperties](repeating: VkQueueFamilyProperties(), count: Int(count))
        vkGetPhysicalDeviceQueueFamilyProperties(raw, &count, &families)
        return families.prefix(Int(count)).enumerated().map { index, family in
            QueueFamilyTraits(index: UInt32(index), flags: family.queueFlags, queueCount: family.queueCount,
                              timestampValidBits: family.timestampValidBits)
        }
    }
}
