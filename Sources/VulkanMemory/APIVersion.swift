import CVulkan

/// A packed Vulkan version (`VK_MAKE_API_VERSION`), printable as major.minor.patch.
public struct APIVersion: RawRepresentable, Comparable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(major: UInt32, minor: UInt32, patch: UInt32 = 0) {
        rawValue = (major << 22) | (minor << 12) | patch
    }

    public var major: UInt32 { (rawValue >> 22) & 0x7F }
    public var minor: UInt32 { (rawValue >> 12) & 0x3FF }
    public var patch: UInt32 { rawValue & 0xFFF }

    /// External memory, `vkGetPhysicalDeviceFeatures2` and the external buffer query are core in 1.1.
    public static let v1_1 = APIVersion(major: 1, minor: 1)

    public static func < (a: APIVersion, b: APIVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    public var description: String { "\(major).\(minor).\(patch)" }
}
