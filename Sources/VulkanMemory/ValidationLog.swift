import CVulkan
import Sharing

/// One message a VK_EXT_debug_utils messenger delivered.
public struct ValidationMessage: Hashable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable { case warning, error }
    public var severity: Severity
    /// The message ID name, e.g. a `VUID-...` for validation errors.
    public var id: String
    public var text: String

    public var description: String { "[\(severity)] \(id): \(text)" }
}

/// Collects the warnings and errors of the debug messenger of a module-made instance.
/// Pass one in `VulkanInstance.Options` to keep it past the instance, so messages sent
/// while the instance is destroyed are still seen.
public final class ValidationLog: Sendable {
    private let store = Locked<[ValidationMessage]>([])

    public init() {}

    public var messages: [ValidationMessage] { store.withLock { $0 } }

    public func removeAll() { store.withLock { $0.removeAll() } }

    func append(_ message: ValidationMessage) { store.withLock { $0.append(message) } }
}

/// The messenger's callback: a C function, so the log travels in `pUserData`.
let debugCallback: PFN_vkDebugUtilsMessengerCallbackEXT = { severity, _, data, user in
    guard let user, let data else { return VkBool32(VK_FALSE) }
    let log = Unmanaged<ValidationLog>.fromOpaque(user).takeUnretainedValue()
    let isError = severity.rawValue & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT.rawValue != 0
    let id = data.pointee.pMessageIdName.map { String(cString: $0) } ?? "\(data.pointee.messageIdNumber)"
    let text = data.pointee.pMessage.map { String(cString: $0) } ?? ""
    log.append(ValidationMessage(severity: isError ? .error : .warning, id: id, text: text))
    return VkBool32(VK_FALSE)  // Never abort the call that triggered the message.
}

/// A messenger create info that reports warnings and errors of every type to `log`.
/// The caller keeps `log` alive for as long as the messenger (or instance) exists.
func messengerInfo(for log: ValidationLog) -> VkDebugUtilsMessengerCreateInfoEXT {
    var info = VkDebugUtilsMessengerCreateInfoEXT()
    info.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT
    info.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT.rawValue
        | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT.rawValue
    info.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT.rawValue
        | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT.rawValue
        | VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT.rawValue
    info.pfnUserCallback = debugCallback
    info.pUserData = Unmanaged.passUnretained(log).toOpaque()
    return info
}
