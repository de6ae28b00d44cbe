#if canImport(Glibc)
import Glibc
#endif
import CVulkan

/// Which queue families a device's copies (`GPUCommandRunner(queue: .copy)`, `StagingRing`) are
/// submitted to. Drivers offer several families that can copy, and on NVIDIA they do not cost the
/// same: on an H200 the copy-only families copy 256 KiB-4 MiB 4-10 % faster than the main family,
/// but from 16 MiB their copy engines move 2-4 % less per second (docs/nvidia-results.md). So the
/// choice is made per size class, small copies (below `CopyQueueChoice.largeCopyBytes`) and
/// large ones, and by default it is measured once per process and device (`CopyFamilyCalibration`).
public enum CopyQueueFamily: Sendable, Hashable, CustomStringConvertible {
    /// Measured: every family that can copy runs a few small and large copies, the fastest per
    /// size class is kept (the main family unless another beats it clearly). A CPU driver, or a
    /// device with one such family (lavapipe), uses the main family without measuring.
    case automatic
    /// The family of the device's main (compute) queue.
    case main
    /// This family index for copies of every size; it must exist and be able to copy.
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

/// One family's measured cost: per copy (size and direction, between device-local and
/// host-visible memory), the median wall time of submitting it and waiting for it, the copies
/// run back to back on that family.
public struct CopyFamilyTiming: Sendable, Hashable, Codable {
    public struct Copy: Sendable, Hashable, Codable {
        public var bytes: UInt64
        /// "d2h" (device-local -> host-visible) or "h2d".
        public var direction: String
        public var microseconds: Double

        public init(bytes: UInt64, direction: String, microseconds: Double) {
            self.bytes = bytes
            self.direction = direction
            self.microseconds = microseconds
        }
    }

    public var family: UInt32
    public var copies: [Copy]

    public init(family: UInt32, copies: [Copy]) {
        self.family = family
        self.copies = copies
    }

    /// The geometric mean of this family's times over `other`'s, copy by copy (each size and
    /// direction weighs the same, whatever its length); nil when they share no copy.
    public func relativeTime(to other: CopyFamilyTiming) -> Double? {
        var logs: [Double] = []
        for c in copies where c.microseconds > 0 {
            guard let o = other.copies.first(where: { $0.bytes == c.bytes && $0.direction == c.direction }), o.microseconds > 0 else {
                continue
            }
            logs.append(log(c.microseconds / o.microseconds))
        }
        return logs.isEmpty ? nil : exp(logs.reduce(0, +) / Double(logs.count))
    }
}

/// The families a device's copies go to, and why.
public struct CopyQueueChoice: Sendable, Hashable, Codable {
    /// Copies of fewer than `largeCopyBytes` bytes go to `family`, larger ones to `largeFamily`:
    /// on an H200 the main family overtakes the copy-only ones at 16 MiB (docs/nvidia-results.md).
    public static let largeCopyBytes: UInt64 = 16 << 20

    /// The family of copies below `largeCopyBytes`.
    public var family: UInt32
    /// The family of copies of `largeCopyBytes` and more.
    public var largeFamily: UInt32
    public var mainFamily: UInt32
    /// In words: "measured", "asked for", "one family can copy", ...
    public var reason: String
    /// Per family, when measured (the main family first).
    public var timings: [CopyFamilyTiming]

    public init(family: UInt32, largeFamily: UInt32? = nil, mainFamily: UInt32, reason: String, timings: [CopyFamilyTiming] = []) {
        self.family = family
        self.largeFamily = largeFamily ?? family
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
            return .decided(CopyQueueChoice(family: index, mainFamily: main, reason: "family \(index) for every copy, as asked"))
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

    /// How much faster (`CopyFamilyTiming.relativeTime`) another family must be than the main
    /// one to be chosen: below that, measurement noise, and the main family needs no second queue.
    public static let requiredGain = 0.02

    /// The choice from measured `timings`, per size class: for copies below `largeCopyBytes` and
    /// for larger ones, the family with the lowest time relative to the main one over that class's
    /// copies when it is at least `requiredGain` faster, else the main family. Timings of no family
    /// (or none of the main family) keep the main family.
    static func pick(_ timings: [CopyFamilyTiming], main: UInt32) -> CopyQueueChoice {
        func restricted(_ large: Bool) -> [CopyFamilyTiming] {
            timings.map { t in
                CopyFamilyTiming(family: t.family, copies: t.copies.filter { ($0.bytes >= largeCopyBytes) == large })
            }
        }
        let small = pickClass(restricted(false), main: main)
        let large = pickClass(restricted(true), main: main)
        return CopyQueueChoice(family: small.family, largeFamily: large.family, mainFamily: main,
                               reason: "copies below \(largeCopyBytes >> 20) MiB: \(small.reason); from \(largeCopyBytes >> 20) MiB: \(large.reason)",
                               timings: timings)
    }

    private static func pickClass(_ timings: [CopyFamilyTiming], main: UInt32) -> (family: UInt32, reason: String) {
        guard let mainTiming = timings.first(where: { $0.family == main }) else {
            return (main, "the main family, no measurement of it")
        }
        let ranked = timings.compactMap { t in t.relativeTime(to: mainTiming).map { (t.family, $0) } }
        guard let best = ranked.min(by: { $0.1 < $1.1 }) else { return (main, "the main family, nothing to compare") }
        let gain = 1 - best.1
        if best.0 != main, gain >= requiredGain {
            return (best.0, "measured, family \(best.0) \(percent(gain)) faster than the main family \(main)")
        }
        return (main, best.0 == main ? "measured, the main family \(main) the fastest"
                    : "measured, family \(best.0) only \(percent(gain)) faster than the main family \(main)")
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
