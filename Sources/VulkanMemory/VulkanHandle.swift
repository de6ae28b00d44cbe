/// A Vulkan handle (`VkDevice`, `VkBuffer`, ...: dispatchable and non-dispatchable handles both
/// import as `OpaquePointer` on 64-bit) as the Sendable class that made or borrowed the object
/// stores it. The wrapper is what lets that class be checked `Sendable`; the handle's public
/// accessors hand out the plain `OpaquePointer`.
struct VulkanHandle: @unchecked Sendable {  // the handle never changes; each call Vulkan wants externally synchronized on it runs under a lock or in deinit
    let raw: OpaquePointer

    init(_ raw: OpaquePointer) { self.raw = raw }
}
