import CVulkan
import Sharing

/// A `VkDevice` with one compute-capable queue: made and destroyed by this module, or borrowed
/// from the application (never destroyed here). Allocations keep it alive.
public final class VulkanDevice: Sendable {
    public struct Options: Sendable {
        /// Device extensions to enable; nil: every one of `ExtensionName.deviceDefaults` the
        /// device supports (dma-buf only together with VK_KHR_external_memory_fd).
        public var extensions: [String]?
        /// Enables `externalMemoryRDMA` when VK_NV_external_memory_rdma is enabled and the device has the feature.
        public var externalMemoryRDMA: Bool

        public init(extensions: [String]? = nil, externalMemoryRDMA: Bool = true) {
            self.extensions = extensions
            self.externalMemoryRDMA = externalMemoryRDMA
        }
    }

    public let physicalDevice: PhysicalDevice
    private let handle: VulkanHandle
    private let queueHandle: VulkanHandle
    public let queueFamilyIndex: UInt32
    public let enabledExtensions: Set<String>
    public let externalMemoryRDMAEnabled: Bool
    /// Timeline semaphores (VK_KHR_timeline_semaphore with its feature) can be used: the transfer
    /// engine waits on and signals them to order RDMA against GPU work.
    public let timelineSemaphoreEnabled: Bool
    /// False for a borrowed device: the application destroys it.
    public let ownsHandle: Bool
    /// `vkQueueSubmit` needs the queue externally synchronized.
    let queueLock = Locked<Void>(())

    /// Creates a device (`vkCreateDevice`) with one queue of the first compute family, the
    /// memory extensions of `options` and, with VK_NV_external_memory_rdma, the
    /// `externalMemoryRDMA` feature (`VkPhysicalDeviceExternalMemoryRDMAFeaturesNV` in the pNext chain).
    public init(physicalDevice: PhysicalDevice, options: Options = .init()) throws(VulkanError) {
        try physicalDevice.requireVersion()
        let supported = try physicalDevice.supportedExtensions()
        let extensions: [String]
        if let asked = options.extensions {
            for name in asked where !supported.contains(name) {
                throw .extensionMissing(name, neededFor: "creating the device (the device does not support it)")
            }
            extensions = asked
        } else {
            extensions = ExtensionName.deviceDefaults.filter { name in
                supported.contains(name)
                    && (name != ExtensionName.externalMemoryDMABuf || supported.contains(ExtensionName.externalMemoryFD))
            }
        }
        let wantsRDMA = options.externalMemoryRDMA && extensions.contains(ExtensionName.externalMemoryRDMA)
        let rdmaFeature = wantsRDMA ? try physicalDevice.supportsExternalMemoryRDMAFeature() : false
        guard let family = physicalDevice.computeQueueFamily() else { throw .noQueueFamily }

        var priority: Float = 1
        var rdma = VkPhysicalDeviceExternalMemoryRDMAFeaturesNV()
        rdma.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV
        rdma.externalMemoryRDMA = VkBool32(VK_TRUE)
        let wantsTimeline = extensions.contains(ExtensionName.timelineSemaphore)
        var timeline = VkPhysicalDeviceTimelineSemaphoreFeatures()
        timeline.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES
        timeline.timelineSemaphore = VkBool32(VK_TRUE)
        let device = try withCStringArray(extensions) { (names, count) throws(VulkanError) -> VkDevice in
            try withUnsafePointer(to: &priority) { (priorities) throws(VulkanError) -> VkDevice in
                var queueInfo = VkDeviceQueueCreateInfo()
                queueInfo.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
                queueInfo.queueFamilyIndex = family
                queueInfo.queueCount = 1
                queueInfo.pQueuePriorities = priorities
                return try withUnsafePointer(to: &queueInfo) { (queues) throws(VulkanError) -> VkDevice in
                    try withUnsafeMutablePointer(to: &rdma) { (rdmaFeatures) throws(VulkanError) -> VkDevice in
                      try withUnsafeMutablePointer(to: &timeline) { (timelineFeatures) throws(VulkanError) -> VkDevice in
                        var chain: UnsafeMutableRawPointer?
                        if wantsTimeline { timelineFeatures.pointee.pNext = chain; chain = UnsafeMutableRawPointer(timelineFeatures) }
                        if rdmaFeature { rdmaFeatures.pointee.pNext = chain; chain = UnsafeMutableRawPointer(rdmaFeatures) }
                        var info = VkDeviceCreateInfo()
                        info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                        info.pNext = UnsafeRawPointer(chain)
                        info.queueCreateInfoCount = 1
                        info.pQueueCreateInfos = queues
                        info.enabledExtensionCount = count
                        info.ppEnabledExtensionNames = names
                        var device: VkDevice?
                        try check(vkCreateDevice(physicalDevice.raw, &info, nil, &device), "vkCreateDevice",
                                  VulkanError.deviceCreation)
                        guard let device else {
                            throw VulkanError.deviceCreation(function: "vkCreateDevice", result: .errorInitializationFailed)
                        }
                        return device
                      }
                    }
                }
            }
        }
        var queue: VkQueue?
        vkGetDeviceQueue(device, family, 0, &queue)
        guard let queue else {
            vkDestroyDevice(device, nil)
            throw .deviceCreation(function: "vkGetDeviceQueue", result: .errorInitializationFailed)
        }
        self.physicalDevice = physicalDevice
        handle = VulkanHandle(device)
        queueHandle = VulkanHandle(queue)
        queueFamilyIndex = family
        enabledExtensions = Set(extensions)
        externalMemoryRDMAEnabled = rdmaFeature
        timelineSemaphoreEnabled = wantsTimeline
        ownsHandle = true
    }

    /// Creates a device on the physical device at `deviceIndex` of `instance`.
    public convenience init(instance: VulkanInstance, deviceIndex: Int, options: Options = .init()) throws(VulkanError) {
        try self.init(physicalDevice: try instance.physicalDevice(at: deviceIndex), options: options)
    }

    /// Wraps the application's device. `enabledExtensions` and `externalMemoryRDMAEnabled` must be
    /// what it passed to `vkCreateDevice`: the strategies are chosen from them. The queue
    /// (`vkGetDeviceQueue`) must be able to transfer, and compute for `ComputeKernel`; this
    /// module submits to it under its own lock, so the application must not use it concurrently.
    public init(borrowing raw: VkDevice, physicalDevice: PhysicalDevice, enabledExtensions: [String],
                externalMemoryRDMAEnabled: Bool = false, timelineSemaphoreEnabled: Bool = false,
                queueFamilyIndex: UInt32, queueIndex: UInt32 = 0)
        throws(VulkanError)
    {
        try physicalDevice.requireVersion()
        var queue: VkQueue?
        vkGetDeviceQueue(raw, queueFamilyIndex, queueIndex, &queue)
        guard let queue else { throw .deviceCreation(function: "vkGetDeviceQueue", result: .errorInitializationFailed) }
        self.physicalDevice = physicalDevice
        handle = VulkanHandle(raw)
        queueHandle = VulkanHandle(queue)
        self.queueFamilyIndex = queueFamilyIndex
        self.enabledExtensions = Set(enabledExtensions)
        self.externalMemoryRDMAEnabled = externalMemoryRDMAEnabled
        self.timelineSemaphoreEnabled = timelineSemaphoreEnabled
        ownsHandle = false
    }

    deinit {
        guard ownsHandle else { return }
        vkDestroyDevice(raw, nil)
    }

    public var raw: VkDevice { handle.raw }
    /// Submit to it only under `queueLock`.
    public var queue: VkQueue { queueHandle.raw }

    public var instance: VulkanInstance { physicalDevice.instance }

    /// Throws `.extensionMissing` unless `name` was enabled on this device.
    func require(_ name: String, for purpose: String) throws(VulkanError) {
        guard enabledExtensions.contains(name) else { throw .extensionMissing(name, neededFor: purpose) }
    }

    /// A device-level extension function (`vkGetDeviceProcAddr`) as its PFN type.
    func deviceFunction<T>(_ name: String, as type: T.Type) throws(VulkanError) -> T {
        guard let function = vkGetDeviceProcAddr(raw, name) else { throw .functionMissing(name) }
        return unsafeBitCast(function, to: T.self)
    }

    /// Waits until the device is idle (`vkDeviceWaitIdle`).
    public func waitIdle() throws(VulkanError) {
        try queueLock.withLock { _ throws(VulkanError) in
            try check(vkDeviceWaitIdle(raw), "vkDeviceWaitIdle", VulkanError.submission)
        }
    }
}
