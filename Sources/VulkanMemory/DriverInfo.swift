import CVulkan

/// Who made the driver and which version it is (`VkPhysicalDeviceDriverProperties` where the
/// device has Vulkan 1.2 or VK_KHR_driver_properties; the raw `driverVersion` always).
public struct DriverInfo: Codable, Sendable, Hashable {
    /// E.g. "NVIDIA", "llvmpipe" (nil without driver properties).
    public var name: String?
    /// E.g. "580.159.04", "Mesa 22.3.6 (LLVM 15.0.6)".
    public var info: String?
    /// `VkPhysicalDeviceProperties::driverVersion`, vendor-encoded.
    public var version: UInt32
    /// `driverVersion` decoded: NVIDIA's 10.8.8.6 bits, Vulkan's version encoding otherwise.
    public var versionString: String
    /// The device's Vulkan version (`apiVersion`).
    public var apiVersion: APIVersion
}

extension PhysicalDevice {
    /// The driver's name and version.
    public func driverInfo() throws(VulkanError) -> DriverInfo {
        let props = properties
        let version = props.driverVersion
        let decoded = props.vendorID == 0x10DE
            ? "\(version >> 22).\((version >> 14) & 0xFF).\((version >> 6) & 0xFF).\(version & 0x3F)"
            : APIVersion(rawValue: version).description
        var name: String?
        var info: String?
        let deviceVersion = APIVersion(rawValue: props.apiVersion)
        // Core in 1.2 (as both the instance and the device speak it), else the device extension.
        let extensions = try supportedExtensions()
        if effectiveAPIVersion >= APIVersion(major: 1, minor: 2) || extensions.contains("VK_KHR_driver_properties") {
            var driver = VkPhysicalDeviceDriverProperties()
            driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES
            queryProperties2(chaining: &driver)
            name = string(fromCharArray: driver.driverName)
            info = string(fromCharArray: driver.driverInfo)
        }
        return DriverInfo(name: name, info: info, version: version, versionString: decoded, apiVersion: deviceVersion)
    }
}
