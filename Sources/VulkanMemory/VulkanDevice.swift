import CVulkan
import Sharing

/// A `VkDevice` with one compute-capable queue (the main queue) and, where other queue families
/// copy faster, queues of those families for copies (`copyQueue` below 16 MiB, `largeCopyQueue`
/// from there, chosen by `Options.copyQueue`):
/// made and destroyed by this module, or borrowed from the application (never destroyed here, one
/// queue). Allocations keep it alive. With several families every buffer this module makes is shared
/// between them (`VK_SHARING_MODE_CONCURRENT`), so a copy on any queue needs no ownership
/// transfer; work on one queue that the other reads must still be ordered by a semaphore or
/// waited for on the host.
public final class VulkanDevice: Sendable {
    public struct Options: Sendable {
        /// Device extensions to enable; nil: every one of `ExtensionName.deviceDefaults` the
        /// device supports (dma-buf only together with VK_KHR_external_memory_fd).
        public var extensions: [String]?
        /// Enables `externalMemoryRDMA` when VK_NV_external_memory_rdma is enabled and the device has the feature.
        public var externalMemoryRDMA: Bool

        /// The queue family copies go to; nil: `CopyQueueFamily.environmentVariable` when set,
        /// else `.automatic`.
        public var copyQueue: CopyQueueFamily?
        /// Measuring only: queues on exactly these families (the main one first), every buffer
        /// shared between them, copies on the main one.
        var queueFamilies: [UInt32]?

        public init(extensions: [String]? = nil, externalMemoryRDMA: Bool = true, copyQueue: CopyQueueFamily? = nil) {
            self.extensions = extensions
            self.externalMemoryRDMA = externalMemoryRDMA
            self.copyQueue = copyQueue
        }
    }

    public let physicalDevice: PhysicalDevice
    private let handle: VulkanHandle
    /// The main queue (`queueFamilyIndex`).
    public let mainQueue: DeviceQueue
    /// The queue copies below `CopyQueueChoice.largeCopyBytes` go to: the main queue unless
    /// another family was chosen.
    public let copyQueue: DeviceQueue
    /// The queue larger copies go to.
    public let largeCopyQueue: DeviceQueue
    /// Every queue made, the main one first.
    let queues: [DeviceQueue]
    /// The main queue's family.
    public let queueFamilyIndex: UInt32
    /// Which family copies go to and why.
    public let copyQueueChoice: CopyQueueChoice
    /// The families buffers are shared between (`VK_SHARING_MODE_CONCURRENT` when more than one).
    public let sharingFamilies: [UInt32]
    public let enabledExtensions: Set<String>
    public let externalMemoryRDMAEnabled: Bool
    /// Timeline semaphores (VK_KHR_timeline_semaphore with its feature) can be used: the transfer
    /// engine waits on and signals them to order RDMA against GPU work.
    public let timelineSemaphoreEnabled: Bool
    /// False for a borrowed device: the application destroys it.
    public let ownsHandle: Bool
    /// The main queue's lock: `vkQueueSubmit` needs the queue externally synchronized.
    var queueLock: Locked<Void> { mainQueue.lock }

    /// Creates a device (`vkCreateDevice`) with one queue of the first compute family, one of the
    /// copy family `options.copyQueue` comes to (measured once per process and device by
    /// `CopyFamilyCalibration` for `.automatic`, on a device of its own), the memory extensions of
    /// `options` and, with VK_NV_external_memory_rdma, the `externalMemoryRDMA` feature
    /// (`VkPhysicalDeviceExternalMemoryRDMAFeaturesNV` in the pNext chain).
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
        let choice: CopyQueueChoice
        let families: [UInt32]
        if let measuring = options.queueFamilies {
            choice = CopyQueueChoice(family: family, mainFamily: family, reason: "measuring")
            families = [family] + measuring.filter { $0 != family }
        } else {
            var asked = CopyQueueFamily.automatic
            if let named = options.copyQueue {
                asked = named
            } else if let named = try CopyQueueFamily.fromEnvironment() {
                asked = named
            }
            choice = try CopyFamilyCalibration.choice(asked, physicalDevice: physicalDevice, options: options, main: family)
            families = [family] + [choice.family, choice.largeFamily].filter { $0 != family }.reduce(into: [UInt32]()) {
                if !$0.contains($1) { $0.append($1) }
            }
        }

        var priorities = [Float](repeating: 1, count: families.count)
        var rdma = VkPhysicalDeviceExternalMemoryRDMAFeaturesNV()
        rdma.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV
        rdma.externalMemoryRDMA = VkBool32(VK_TRUE)
        let wantsTimeline = extensions.contains(ExtensionName.timelineSemaphore)
        var timeline = VkPhysicalDeviceTimelineSemaphoreFeatures()
        timeline.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES
        timeline.timelineSemaphore = VkBool32(VK_TRUE)
        let device = try withCStringArray(extensions) { (names, count) throws(VulkanError) -> VkDevice in
            try priorities.withUnsafeMutableBufferPointer { (priorities) throws(VulkanError) -> VkDevice in
                var queueInfos = families.map { index in
                    var queueInfo = VkDeviceQueueCreateInfo()
                    queueInfo.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
                    queueInfo.queueFamilyIndex = index
                    queueInfo.queueCount = 1
                    queueInfo.pQueuePriorities = UnsafePointer(priorities.baseAddress)
                    return queueInfo
                }
                return try queueInfos.withUnsafeMutableBufferPointer { (queues) throws(VulkanError) -> VkDevice in
                    try withUnsafeMutablePointer(to: &rdma) { (rdmaFeatures) throws(VulkanError) -> VkDevice in
                      try withUnsafeMutablePointer(to: &timeline) { (timelineFeatures) throws(VulkanError) -> VkDevice in
                        var chain: UnsafeMutableRawPointer?
                        if wantsTimeline { timelineFeatures.pointee.pNext = chain; chain = UnsafeMutableRawPointer(timelineFeatures) }
                        if rdmaFeature { rdmaFeatures.pointee.pNext = chain; chain = UnsafeMutableRawPointer(rdmaFeatures) }
                        var info = VkDeviceCreateInfo()
                        info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                        info.pNext = UnsafeRawPointer(chain)
                        info.queueCreateInfoCount = UInt32(queues.count)
                        info.pQueueCreateInfos = UnsafePointer(queues.baseAddress)
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
        let traits = physicalDevice.queueFamilies()
        var made: [DeviceQueue] = []
        for index in families {
            var queue: VkQueue?
            vkGetDeviceQueue(device, index, 0, &queue)
            guard let queue else {
                vkDestroyDevice(device, nil)
                throw .deviceCreation(function: "vkGetDeviceQueue", result: .errorInitializationFailed)
            }
            made.append(DeviceQueue(family: index, flags: traits.first { $0.index == index }?.flags ?? 0, raw: queue))
        }
        self.physicalDevice = physicalDevice
        handle = VulkanHandle(device)
        queues = made
        mainQueue = made[0]
        copyQueue = made.first { $0.family == choice.family } ?? made[0]
        largeCopyQueue = made.first { $0.family == choice.largeFamily } ?? made[0]
        queueFamilyIndex = family
        copyQueueChoice = choice
        sharingFamilies = families
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
        let flags = physicalDevice.queueFamilies().first { $0.index == queueFamilyIndex }?.flags ?? 0
        let only = DeviceQueue(family: queueFamilyIndex, flags: flags, raw: queue)
        queues = [only]
        mainQueue = only
        copyQueue = only
        largeCopyQueue = only
        self.queueFamilyIndex = queueFamilyIndex
        copyQueueChoice = CopyQueueChoice(family: queueFamilyIndex, mainFamily: queueFamilyIndex,
                                          reason: "the application's queue: a borrowed device has one")
        sharingFamilies = [queueFamilyIndex]
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
    /// The main queue; submit to it only under `queueLock`.
    public var queue: VkQueue { mainQueue.raw }

    /// The queue a runner of `role` submits to.
    public func queue(_ role: DeviceQueue.Role) -> DeviceQueue {
        switch role {
        case .main: return mainQueue
        case .copy: return copyQueue
        case .largeCopy: return largeCopyQueue
        }
    }

    /// The role of the queue a copy of `bytes` goes to.
    public func copyRole(forBytes bytes: UInt64) -> DeviceQueue.Role {
        bytes >= CopyQueueChoice.largeCopyBytes ? .largeCopy : .copy
    }

    /// The queue of `family`, if this device made one.
    func queue(family: UInt32) -> DeviceQueue? {
        queues.first { $0.family == family }
    }

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
    /// Every queue's lock is held: `vkDeviceWaitIdle` needs them all externally synchronized.
    public func waitIdle() throws(VulkanError) {
        try waitIdle(holding: queues[...])
    }

    private func waitIdle(holding rest: ArraySlice<DeviceQueue>) throws(VulkanError) {
        guard let first = rest.first else {
            try check(vkDeviceWaitIdle(raw), "vkDeviceWaitIdle", VulkanError.submission)
            return
        }
        try first.lock.withLock { _ throws(VulkanError) in try waitIdle(holding: rest.dropFirst()) }
    }
}
