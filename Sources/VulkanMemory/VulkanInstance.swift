#if canImport(Glibc)
import Glibc
#endif
import CVulkan

/// A `VkInstance`: made and destroyed by this module, or borrowed from the application
/// (then never destroyed here). Physical devices and devices keep it alive.
public final class VulkanInstance: Sendable {
    public struct Options: Sendable {
        public var applicationName: String
        /// Asked for in `VkApplicationInfo`; at least 1.1 (external memory is core there).
        public var apiVersion: APIVersion
        /// Enables VK_LAYER_KHRONOS_validation and a VK_EXT_debug_utils messenger.
        /// nil: enabled when the environment variable VKVERBS_VULKAN_VALIDATION is "1".
        public var validation: Bool?
        /// Where the messenger puts warnings and errors; one is made when nil.
        public var validationLog: ValidationLog?
        public var extraExtensions: [String]
        /// Enables VK_LAYER_VKVERBS_rdma_emulation (below the validation layer), which provides
        /// VK_NV_external_memory_rdma where the driver lacks it; throws `.layerMissing` when the loader
        /// cannot find it. nil: enabled when the environment variable VKVERBS_RDMA_LAYER is "1".
        public var rdmaEmulationLayer: Bool?

        public init(applicationName: String = "VkVerbs", apiVersion: APIVersion = .v1_1, validation: Bool? = nil,
                    validationLog: ValidationLog? = nil, extraExtensions: [String] = [],
                    rdmaEmulationLayer: Bool? = nil) {
            self.applicationName = applicationName
            self.apiVersion = apiVersion
            self.validation = validation
            self.validationLog = validationLog
            self.extraExtensions = extraExtensions
            self.rdmaEmulationLayer = rdmaEmulationLayer
        }
    }

    private let handle: VulkanHandle
    public let apiVersion: APIVersion
    public let enabledExtensions: Set<String>
    /// False for a borrowed instance: the application destroys it.
    public let ownsHandle: Bool
    /// The messenger's messages when validation is on (module-made instances only).
    public let validationLog: ValidationLog?
    private let messenger: VulkanHandle?

    /// Creates an instance (`vkCreateInstance`), with the validation layer and a debug
    /// messenger (`vkCreateDebugUtilsMessengerEXT`) when `options` asks for them.
    public init(options: Options = .init()) throws(VulkanError) {
        guard options.apiVersion >= .v1_1 else {
            throw .apiVersionTooOld(found: options.apiVersion.description, needed: APIVersion.v1_1.description)
        }
        let validate = options.validation ?? (getenv("VKVERBS_VULKAN_VALIDATION").map { String(cString: $0) } == "1")
        var layers: [String] = []
        var extensions = options.extraExtensions
        let log = validate ? (options.validationLog ?? ValidationLog()) : nil
        if validate {
            guard try Self.availableLayers().contains(ExtensionName.validationLayer) else {
                throw .layerMissing(ExtensionName.validationLayer)
            }
            layers.append(ExtensionName.validationLayer)
            extensions.append(ExtensionName.debugUtils)
        }
        // After the validation layer, so validation sees the application's NV calls before the layer rewrites them.
        if options.rdmaEmulationLayer ?? (getenv("VKVERBS_RDMA_LAYER").map { String(cString: $0) } == "1") {
            guard try Self.availableLayers().contains(ExtensionName.rdmaEmulationLayer) else {
                throw .layerMissing(ExtensionName.rdmaEmulationLayer)
            }
            layers.append(ExtensionName.rdmaEmulationLayer)
        }
        let instance = try Self.create(options: options, layers: layers, extensions: extensions, log: log)
        var messenger: VkDebugUtilsMessengerEXT?
        if let log {
            do {
                messenger = try Self.installMessenger(on: instance, log: log)
            } catch {
                vkDestroyInstance(instance, nil)
                throw error
            }
        }
        handle = VulkanHandle(instance)
        apiVersion = options.apiVersion
        enabledExtensions = Set(extensions)
        ownsHandle = true
        validationLog = log
        self.messenger = messenger.map(VulkanHandle.init)
    }

    /// Wraps the application's instance. `apiVersion` is what it asked for in `VkApplicationInfo`
    /// and `enabledExtensions` what it enabled; this object never destroys it.
    public init(borrowing raw: VkInstance, apiVersion: APIVersion, enabledExtensions: [String]) throws(VulkanError) {
        guard apiVersion >= .v1_1 else {
            throw .apiVersionTooOld(found: apiVersion.description, needed: APIVersion.v1_1.description)
        }
        handle = VulkanHandle(raw)
        self.apiVersion = apiVersion
        self.enabledExtensions = Set(enabledExtensions)
        ownsHandle = false
        validationLog = nil
        messenger = nil
    }

    deinit {
        guard ownsHandle else { return }
        if let messenger, let destroy = instanceFunction("vkDestroyDebugUtilsMessengerEXT",
                                                          as: PFN_vkDestroyDebugUtilsMessengerEXT.self) {
            destroy(raw, messenger.raw, nil)
        }
        vkDestroyInstance(raw, nil)
    }

    public var raw: VkInstance { handle.raw }

    /// The instance layers the loader can find (`vkEnumerateInstanceLayerProperties`).
    public static func availableLayers() throws(VulkanError) -> Set<String> {
        var count: UInt32 = 0
        try check(vkEnumerateInstanceLayerProperties(&count, nil), "vkEnumerateInstanceLayerProperties",
                  VulkanError.instanceCreation)
        var props = [VkLayerProperties](repeating: VkLayerProperties(), count: Int(count))
        try check(vkEnumerateInstanceLayerProperties(&count, &props), "vkEnumerateInstanceLayerProperties",
                  VulkanError.instanceCreation)
        return Set(props.prefix(Int(count)).map { string(fromCharArray: $0.layerName) })
    }

    /// The physical devices (`vkEnumeratePhysicalDevices`), in the loader's order.
    public func physicalDevices() throws(VulkanError) -> [PhysicalDevice] {
        var count: UInt32 = 0
        try check(vkEnumeratePhysicalDevices(raw, &count, nil), "vkEnumeratePhysicalDevices",
                  VulkanError.deviceEnumeration)
        var handles = [VkPhysicalDevice?](repeating: nil, count: Int(count))
        try check(vkEnumeratePhysicalDevices(raw, &count, &handles), "vkEnumeratePhysicalDevices",
                  VulkanError.deviceEnumeration)
        return handles.prefix(Int(count)).enumerated().compactMap { index, handle in
            handle.map { PhysicalDevice(instance: self, raw: $0, index: index) }
        }
    }

    /// The physical device at `index` of `physicalDevices()`, or `.noSuchDevice`.
    public func physicalDevice(at index: Int) throws(VulkanError) -> PhysicalDevice {
        let all = try physicalDevices()
        guard all.indices.contains(index) else { throw .noSuchDevice(index: index, count: all.count) }
        return all[index]
    }

    /// An instance-level extension function (`vkGetInstanceProcAddr`) as its PFN type.
    func instanceFunction<T>(_ name: String, as type: T.Type) -> T? {
        guard let function = vkGetInstanceProcAddr(raw, name) else { return nil }
        return unsafeBitCast(function, to: T.self)
    }

    private static func create(options: Options, layers: [String], extensions: [String],
                               log: ValidationLog?) throws(VulkanError) -> VkInstance {
        var app = VkApplicationInfo()
        app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO
        app.apiVersion = options.apiVersion.rawValue
        app.engineVersion = 1
        // Chained into the create info too, so messages of vkCreateInstance/vkDestroyInstance are caught.
        var debugInfo = log.map(messengerInfo(for:))
        let appName = strdup(options.applicationName)
        defer { free(appName) }
        app.pApplicationName = UnsafePointer(appName)
        return try withCStringArray(layers) { (layerNames, layerCount) throws(VulkanError) -> VkInstance in
            try withCStringArray(extensions) { (extNames, extCount) throws(VulkanError) -> VkInstance in
                try withUnsafePointer(to: &app) { (appPointer) throws(VulkanError) -> VkInstance in
                    var info = VkInstanceCreateInfo()
                    info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
                    info.pApplicationInfo = appPointer
                    info.enabledLayerCount = layerCount
                    info.ppEnabledLayerNames = layerNames
                    info.enabledExtensionCount = extCount
                    info.ppEnabledExtensionNames = extNames
                    var instance: VkInstance?
                    if debugInfo != nil {
                        try withUnsafePointer(to: &debugInfo!) { (debug) throws(VulkanError) in
                            info.pNext = UnsafeRawPointer(debug)
                            try check(vkCreateInstance(&info, nil, &instance), "vkCreateInstance",
                                      VulkanError.instanceCreation)
                        }
                    } else {
                        try check(vkCreateInstance(&info, nil, &instance), "vkCreateInstance",
                                  VulkanError.instanceCreation)
                    }
                    guard let instance else {
                        throw VulkanError.instanceCreation(function: "vkCreateInstance",
                                                           result: .errorInitializationFailed)
                    }
                    return instance
                }
            }
        }
    }

    private static func installMessenger(on instance: VkInstance, log: ValidationLog) throws(VulkanError)
        -> VkDebugUtilsMessengerEXT
    {
        guard let function = vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT") else {
            throw .functionMissing("vkCreateDebugUtilsMessengerEXT")
        }
        let create = unsafeBitCast(function, to: PFN_vkCreateDebugUtilsMessengerEXT.self)
        var info = messengerInfo(for: log)
        var messenger: VkDebugUtilsMessengerEXT?
        try check(create(instance, &info, nil, &messenger), "vkCreateDebugUtilsMessengerEXT",
                  VulkanError.debugMessenger)
        guard let messenger else {
            throw .debugMessenger(function: "vkCreateDebugUtilsMessengerEXT", result: .errorInitializationFailed)
        }
        return messenger
    }
}
