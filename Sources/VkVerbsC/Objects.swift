// The Swift objects behind the C handles.
#if canImport(Glibc)
import Glibc
#endif
import CVulkan
import Transfer
import Verbs
import VulkanMemory

/// vkv_device: an open RDMA device and the protection domain every memory region and
/// connection made through it shares.
final class DeviceObject {
    let context: Context
    let pd: ProtectionDomain

    init(name: String?) throws {
        context = try Context.open(name: name)
        pd = try ProtectionDomain(context: context)
    }
}

/// vkv_vulkan: the application's instance, physical device and device, borrowed.
final class VulkanObject {
    let instance: VulkanInstance
    let device: VulkanDevice

    init(instance: VulkanInstance, device: VulkanDevice) {
        self.instance = instance
        self.device = device
    }
}

/// vkv_memory: a registered region, with the Vulkan allocation behind it (if any).
final class MemoryObject {
    let device: DeviceObject
    let region: MemoryRegion
    let allocation: VulkanAllocation?
    /// VKV_STRATEGY_* of the header (6 = plain host memory).
    let strategy: Int32

    init(device: DeviceObject, region: MemoryRegion, allocation: VulkanAllocation?, strategy: Int32) {
        self.device = device
        self.region = region
        self.allocation = allocation
        self.strategy = strategy
    }

    var size: UInt64 { UInt64(region.length) }

    /// The bytes as the host sees them: the region's host address (for `.staged`, the staging buffer).
    var hostPointer: UnsafeMutableRawPointer? {
        if let allocation { return allocation.hostBytes?.baseAddress }
        return region.hostAddress
    }

    /// A bounds-checked slice for a work request.
    func segment(offset: UInt64, length: UInt64, _ name: String) throws -> LocalSegment {
        guard offset <= size, length <= size - offset else {
            throw APIError(.outOfBounds, "\(name): offset \(offset) + length \(length) is outside the \(size)-byte memory")
        }
        guard length <= UInt64(UInt32.max) else {
            throw APIError(.outOfBounds, "\(name): length \(length) exceeds 4 GiB - 1")
        }
        return try region.segment(offset: Int(offset), length: Int(length))
    }
}

/// vkv_listener: an rdmacm listener whose connections use its device's protection domain.
final class ListenerObject {
    let device: DeviceObject
    let listener: Listener
    let lock = Lock()

    init(device: DeviceObject, listener: Listener) {
        self.device = device
        self.listener = listener
    }
}

/// vkv_connection: an RC connection with its own completion queues and a transfer engine.
/// Calls on one connection are serialized by `lock`.
final class ConnectionObject {
    /// vkv_opcode in vkverbs.h: each value spelled out, so a new case cannot shift the others.
    enum Op: UInt32 { case write = 1, writeImmediate = 2, read = 3, send = 4, receive = 5 }

    let device: DeviceObject
    let connection: Connection
    let engine: TransferEngine
    let peerData: [UInt8]
    let lock = Lock()
    /// Posted operations not yet waited for, with their kind.
    var pending: [UInt64: (kind: Op, ticket: Ticket, length: UInt64)] = [:]
    /// Receives in posting order (RC completes them in that order) not yet taken off the queue.
    var receivesInFlight: [UInt64] = []
    /// Receives that arrived while the caller waited for a later one.
    var arrivals: [UInt64: Arrival] = [:]

    init(device: DeviceObject, connection: Connection, peerData: [UInt8]) throws {
        self.device = device
        self.connection = connection
        self.peerData = peerData
        engine = try TransferEngine(connection: connection)
    }

    /// The resources of one connection on `device`: separate send and receive CQs on one channel.
    static func queues(_ device: DeviceObject) throws -> (CompletionQueue, CompletionQueue) {
        let channel = try CompletionChannel(context: device.context)
        return (try CompletionQueue(context: device.context, capacity: 256, channel: channel),
                try CompletionQueue(context: device.context, capacity: 256, channel: channel))
    }

    deinit {
        // Bounded: a peer that is gone already makes this return at once.
        try? connection.disconnect(timeout: .seconds(2))
    }
}
