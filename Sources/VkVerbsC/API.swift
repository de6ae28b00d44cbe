// The C entry points declared in include/vkverbs.h. Every one returns a vkv_status (or a plain
// value that cannot fail), checks its handles through HandleTable and its pointers before use,
// and runs its body inside `guarded`, so no Swift error or trap reaches the caller for bad input.
#if canImport(Glibc)
import Glibc
#endif
import CVulkan
import Transfer
import Verbs
import VulkanMemory
import VulkanRegistration

private let table = HandleTable.shared

// MARK: Library

/// VKV_VERSION: major << 16 | minor.
@_cdecl("vkv_version")
public func vkv_version() -> UInt32 { (0 << 16) | 2 }

@_cdecl("vkv_status_string")
public func vkv_status_string(_ status: Int32) -> UnsafePointer<CChar> {
    let name: StaticString = Status(rawValue: status)?.name ?? "VKV_ERR_UNKNOWN_STATUS"
    return UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("vkv_last_error_message")
public func vkv_last_error_message() -> UnsafePointer<CChar> { lastErrorMessage() }

@_cdecl("vkv_live_handle_count")
public func vkv_live_handle_count() -> Int { table.count }

// MARK: Vulkan

/// The device extensions the library can use, as static C strings.
private let extensionNames: [StaticString] = ["VK_NV_external_memory_rdma", "VK_KHR_external_memory_fd",
                                 "VK_EXT_external_memory_dma_buf", "VK_EXT_external_memory_host",
                                 "VK_EXT_memory_budget"]

@_cdecl("vkv_vulkan_required_device_extensions")
public func vkv_vulkan_required_device_extensions(
    _ physicalDevice: VkPhysicalDevice?, _ names: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
    _ count: UnsafeMutablePointer<UInt32>?
) -> Int32 {
    guarded("vkv_vulkan_required_device_extensions") {
        let count = try requireOut(count, "count")
        var wanted = extensionNames
        if let physicalDevice {
            var n: UInt32 = 0
            var result = vkEnumerateDeviceExtensionProperties(physicalDevice, nil, &n, nil)
            var props = [VkExtensionProperties](repeating: VkExtensionProperties(), count: Int(n))
            if result.rawValue >= 0 { result = vkEnumerateDeviceExtensionProperties(physicalDevice, nil, &n, &props) }
            guard result.rawValue >= 0 else {
                throw APIError(.vulkan, "vkEnumerateDeviceExtensionProperties failed with VkResult \(result.rawValue)")
            }
            let supported = Set(props.prefix(Int(n)).map { p in
                withUnsafeBytes(of: p.extensionName) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
            })
            wanted = wanted.filter { s in
                let name = s.description
                return supported.contains(name)
                    && (name != ExtensionName.externalMemoryDMABuf || supported.contains(ExtensionName.externalMemoryFD))
            }
        }
        guard let names else {
            count.pointee = UInt32(wanted.count)
            return
        }
        let capacity = Int(count.pointee)
        for (i, entry) in wanted.prefix(capacity).enumerated() {
            names[i] = UnsafeRawPointer(entry.utf8Start).assumingMemoryBound(to: CChar.self)
        }
        count.pointee = UInt32(min(capacity, wanted.count))
        if capacity < wanted.count {
            throw APIError(.outOfBounds, "room for \(capacity) names, \(wanted.count) needed")
        }
    }
}

private let VKV_VULKAN_EXTERNAL_MEMORY_RDMA: UInt32 = 1

@_cdecl("vkv_vulkan_open")
public func vkv_vulkan_open(
    _ instance: VkInstance?, _ apiVersion: UInt32, _ physicalDevice: VkPhysicalDevice?, _ device: VkDevice?,
    _ queueFamilyIndex: UInt32, _ extensions: UnsafePointer<UnsafePointer<CChar>?>?, _ extensionCount: UInt32,
    _ flags: UInt32, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guarded("vkv_vulkan_open") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        guard let instance else { throw APIError(.invalidArgument, "instance is VK_NULL_HANDLE") }
        guard let physicalDevice else { throw APIError(.invalidArgument, "physical_device is VK_NULL_HANDLE") }
        guard let device else { throw APIError(.invalidArgument, "device is VK_NULL_HANDLE") }
        guard flags & ~VKV_VULKAN_EXTERNAL_MEMORY_RDMA == 0 else {
            throw APIError(.invalidArgument, "unknown flags 0x\(String(flags, radix: 16))")
        }
        var families: UInt32 = 0
        vkGetPhysicalDeviceQueueFamilyProperties(physicalDevice, &families, nil)
        guard queueFamilyIndex < families else {
            throw APIError(.invalidArgument, "queue_family_index \(queueFamilyIndex) (the device has \(families) families)")
        }
        var names: [String] = []
        if extensionCount > 0 {
            guard let extensions else {
                throw APIError(.invalidArgument, "enabled_extensions is NULL but enabled_extension_count is \(extensionCount)")
            }
            for i in 0..<Int(extensionCount) {
                guard let name = extensions[i] else { throw APIError(.invalidArgument, "enabled_extensions[\(i)] is NULL") }
                names.append(String(cString: name))
            }
        }
        let borrowedInstance = try VulkanInstance(borrowing: instance, apiVersion: APIVersion(rawValue: apiVersion),
                                                  enabledExtensions: [])
        let borrowedDevice = try VulkanDevice(
            borrowing: device, physicalDevice: PhysicalDevice(borrowing: physicalDevice, of: borrowedInstance),
            enabledExtensions: names, externalMemoryRDMAEnabled: flags & VKV_VULKAN_EXTERNAL_MEMORY_RDMA != 0,
            queueFamilyIndex: queueFamilyIndex)
        out.pointee = table.insert(VulkanObject(instance: borrowedInstance, device: borrowedDevice), .vulkan)
    }
}

@_cdecl("vkv_vulkan_close")
public func vkv_vulkan_close(_ vulkan: OpaquePointer?) -> Int32 {
    guarded("vkv_vulkan_close") { _ = try table.remove(vulkan, .vulkan, as: VulkanObject.self, name: "vulkan") }
}

// MARK: RDMA device

@_cdecl("vkv_device_open")
public func vkv_device_open(_ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("vkv_device_open") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        let device = try DeviceObject(name: name.map { String(cString: $0) })
        out.pointee = table.insert(device, .device)
    }
}

@_cdecl("vkv_device_name")
public func vkv_device_name(_ device: OpaquePointer?, _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: Int) -> Int32 {
    guarded("vkv_device_name") {
        let d = try table.lookup(device, .device, as: DeviceObject.self, name: "device")
        guard let buffer else { throw APIError(.invalidArgument, "name buffer is NULL") }
        let name = Array(d.context.name.utf8)
        guard capacity > name.count else {
            if capacity > 0 { buffer[0] = 0 }
            throw APIError(.outOfBounds, "the name needs \(name.count + 1) bytes, the buffer has \(capacity)")
        }
        for (i, c) in name.enumerated() { buffer[i] = CChar(bitPattern: c) }
        buffer[name.count] = 0
    }
}

@_cdecl("vkv_device_close")
public func vkv_device_close(_ device: OpaquePointer?) -> Int32 {
    guarded("vkv_device_close") { _ = try table.remove(device, .device, as: DeviceObject.self, name: "device") }
}

// MARK: Memory

private let accessLocalWrite: UInt32 = 1, accessRemoteWrite: UInt32 = 2, accessRemoteRead: UInt32 = 4

private func accessFlags(_ access: UInt32) throws -> AccessFlags {
    guard access & ~(accessLocalWrite | accessRemoteWrite | accessRemoteRead) == 0 else {
        throw APIError(.invalidArgument, "unknown access bits 0x\(String(access, radix: 16))")
    }
    var flags: AccessFlags = []
    if access & (accessLocalWrite | accessRemoteWrite) != 0 { flags.insert(.localWrite) }  // remote write needs local write
    if access & accessRemoteWrite != 0 { flags.insert(.remoteWrite) }
    if access & accessRemoteRead != 0 { flags.insert(.remoteRead) }
    return flags
}

/// VKV_STRATEGY_* <-> MemoryStrategy (0 = automatic; 6 = plain host memory, reported only).
let vkvStrategies: [Int32: MemoryStrategy] = [
    1: .rdmaAddress, 2: .dmaBuf, 3: .hostPointerImport, 4: .hostVisible, 5: .staged,
]

@_cdecl("vkv_memory_allocate")
public func vkv_memory_allocate(
    _ device: OpaquePointer?, _ vulkan: OpaquePointer?, _ size: UInt64, _ strategy: Int32, _ access: UInt32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guarded("vkv_memory_allocate") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        let d = try table.lookup(device, .device, as: DeviceObject.self, name: "device")
        let vk = try table.lookup(vulkan, .vulkan, as: VulkanObject.self, name: "vulkan")
        guard size > 0 else { throw APIError(.invalidArgument, "size must be > 0") }
        guard size <= UInt64(Int.max) else { throw APIError(.outOfBounds, "size \(size) is too large") }
        let wanted: MemoryStrategy?
        if strategy == 0 {
            wanted = nil
        } else {
            guard let s = vkvStrategies[strategy] else {
                throw APIError(.invalidArgument, "unknown strategy \(strategy) (VKV_STRATEGY_AUTO..VKV_STRATEGY_STAGED)")
            }
            wanted = s
        }
        let flags = try accessFlags(access)
        let allocation = try vk.device.allocate(size: size, strategy: wanted, nic: .probe(pd: d.pd))
        let region = try allocation.registrable.register(with: d.pd, access: flags)
        let code = vkvStrategies.first { $0.value == allocation.strategy }!.key
        out.pointee = table.insert(MemoryObject(device: d, region: region, allocation: allocation, strategy: code), .memory)
    }
}

@_cdecl("vkv_memory_register_host")
public func vkv_memory_register_host(
    _ device: OpaquePointer?, _ address: UnsafeMutableRawPointer?, _ length: Int, _ access: UInt32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guarded("vkv_memory_register_host") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        let d = try table.lookup(device, .device, as: DeviceObject.self, name: "device")
        guard let address else { throw APIError(.invalidArgument, "address is NULL") }
        guard length > 0 else { throw APIError(.invalidArgument, "length must be > 0, got \(length)") }
        let region = try d.pd.register(address: address, length: length, access: try accessFlags(access))
        out.pointee = table.insert(MemoryObject(device: d, region: region, allocation: nil, strategy: 6), .memory)
    }
}

@_cdecl("vkv_memory_size")
public func vkv_memory_size(_ memory: OpaquePointer?, _ size: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_memory_size") {
        let m = try table.lookup(memory, .memory, as: MemoryObject.self, name: "memory")
        try requireOut(size, "size").pointee = m.size
    }
}

@_cdecl("vkv_memory_get_strategy")
public func vkv_memory_get_strategy(_ memory: OpaquePointer?, _ strategy: UnsafeMutablePointer<Int32>?) -> Int32 {
    guarded("vkv_memory_get_strategy") {
        let m = try table.lookup(memory, .memory, as: MemoryObject.self, name: "memory")
        try requireOut(strategy, "strategy").pointee = m.strategy
    }
}

@_cdecl("vkv_memory_host_pointer")
public func vkv_memory_host_pointer(_ memory: OpaquePointer?, _ pointer: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    guarded("vkv_memory_host_pointer") {
        let out = try requireOut(pointer, "pointer")
        out.pointee = nil
        let m = try table.lookup(memory, .memory, as: MemoryObject.self, name: "memory")
        guard let p = m.hostPointer else {
            throw APIError(.unsupported, "memory of this strategy has no host mapping (use its VkBuffer)")
        }
        out.pointee = p
    }
}

@_cdecl("vkv_memory_vk_buffer")
public func vkv_memory_vk_buffer(
    _ memory: OpaquePointer?, _ buffer: UnsafeMutablePointer<VkBuffer?>?, _ staging: UnsafeMutablePointer<VkBuffer?>?
) -> Int32 {
    guarded("vkv_memory_vk_buffer") {
        let m = try table.lookup(memory, .memory, as: MemoryObject.self, name: "memory")
        guard buffer != nil || staging != nil else { throw APIError(.invalidArgument, "buffer and staging_buffer are both NULL") }
        buffer?.pointee = nil
        staging?.pointee = nil
        guard let allocation = m.allocation else {
            throw APIError(.unsupported, "host memory registered with vkv_memory_register_host has no VkBuffer")
        }
        buffer?.pointee = allocation.buffer.raw
        staging?.pointee = allocation.staging?.raw
    }
}

@_cdecl("vkv_memory_remote_descriptor")
public func vkv_memory_remote_descriptor(_ memory: OpaquePointer?, _ descriptor: UnsafeMutablePointer<UInt8>?) -> Int32 {
    guarded("vkv_memory_remote_descriptor") {
        let m = try table.lookup(memory, .memory, as: MemoryObject.self, name: "memory")
        guard let descriptor else { throw APIError(.invalidArgument, "descriptor is NULL") }
        guard !m.region.access.isDisjoint(with: [.remoteWrite, .remoteRead]) else {
            throw APIError(.invalidArgument, "the memory was registered without remote access (VKV_ACCESS_REMOTE_WRITE/READ)")
        }
        for (i, b) in m.region.remoteBuffer.encoded.enumerated() { descriptor[i] = b }
    }
}

@_cdecl("vkv_memory_close")
public func vkv_memory_close(_ memory: OpaquePointer?) -> Int32 {
    guarded("vkv_memory_close") { _ = try table.remove(memory, .memory, as: MemoryObject.self, name: "memory") }
}

// MARK: Connections

@_cdecl("vkv_listen")
public func vkv_listen(_ device: OpaquePointer?, _ address: UnsafePointer<CChar>?, _ port: UInt16,
                       _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("vkv_listen") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        let d = try table.lookup(device, .device, as: DeviceObject.self, name: "device")
        let listener = try Listener(address: address.map { String(cString: $0) }, port: port)
        out.pointee = table.insert(ListenerObject(device: d, listener: listener), .listener)
    }
}

@_cdecl("vkv_listener_port")
public func vkv_listener_port(_ listener: OpaquePointer?, _ port: UnsafeMutablePointer<UInt16>?) -> Int32 {
    guarded("vkv_listener_port") {
        let l = try table.lookup(listener, .listener, as: ListenerObject.self, name: "listener")
        try requireOut(port, "port").pointee = l.listener.port
    }
}

@_cdecl("vkv_listener_close")
public func vkv_listener_close(_ listener: OpaquePointer?) -> Int32 {
    guarded("vkv_listener_close") { _ = try table.remove(listener, .listener, as: ListenerObject.self, name: "listener") }
}

@_cdecl("vkv_accept")
public func vkv_accept(_ listener: OpaquePointer?, _ privateData: UnsafeRawPointer?, _ privateDataLength: Int,
                       _ timeoutMilliseconds: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("vkv_accept") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        let l = try table.lookup(listener, .listener, as: ListenerObject.self, name: "listener")
        guard privateDataLength >= 0, privateDataLength <= PrivateDataLimit.accept else {
            throw APIError(.outOfBounds, "private data holds at most \(PrivateDataLimit.accept) bytes, got \(privateDataLength)")
        }
        let data = try bytes(privateData, privateDataLength, "private_data")
        let timeout = duration(milliseconds: timeoutMilliseconds)
        let d = l.device
        let object: ConnectionObject = try l.lock.withLock {
            let request = try l.listener.accept(timeout: timeout)
            let peer = request.privateData
            guard request.context.isSameDevice(as: d.context) else {
                let other = request.context.name
                try? request.reject()
                throw APIError(.notFound, "a connection request came in on \(other), not on the listener's device \(d.context.name)")
            }
            let (send, receive) = try ConnectionObject.queues(d)
            let connection = try request.prepare(pd: d.pd, sendCQ: send, receiveCQ: receive)
                .accept(privateData: data, timeout: timeout)
            return try ConnectionObject(device: d, connection: connection, peerData: peer)
        }
        out.pointee = table.insert(object, .connection)
    }
}

@_cdecl("vkv_connect")
public func vkv_connect(_ device: OpaquePointer?, _ host: UnsafePointer<CChar>?, _ port: UInt16,
                        _ privateData: UnsafeRawPointer?, _ privateDataLength: Int, _ timeoutMilliseconds: Int32,
                        _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("vkv_connect") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        let d = try table.lookup(device, .device, as: DeviceObject.self, name: "device")
        guard let host else { throw APIError(.invalidArgument, "host is NULL") }
        guard port != 0 else { throw APIError(.invalidArgument, "port 0") }
        guard privateDataLength >= 0, privateDataLength <= PrivateDataLimit.connect else {
            throw APIError(.outOfBounds, "private data holds at most \(PrivateDataLimit.connect) bytes, got \(privateDataLength)")
        }
        let data = try bytes(privateData, privateDataLength, "private_data")
        let timeout = duration(milliseconds: timeoutMilliseconds)
        let name = String(cString: host)
        let route = try ResolvedRoute.resolve(host: name, port: port, timeout: timeout)
        guard route.context.isSameDevice(as: d.context) else {
            throw APIError(.notFound, "the route to \(name) goes out of \(route.context.name), not \(d.context.name)")
        }
        let (send, receive) = try ConnectionObject.queues(d)
        let connection = try route.prepare(pd: d.pd, sendCQ: send, receiveCQ: receive)
            .connect(privateData: data, timeout: timeout)
        let object = try ConnectionObject(device: d, connection: connection, peerData: connection.peerPrivateData)
        out.pointee = table.insert(object, .connection)
    }
}

@_cdecl("vkv_connection_peer_data")
public func vkv_connection_peer_data(_ connection: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int,
                                     _ length: UnsafeMutablePointer<Int>?) -> Int32 {
    guarded("vkv_connection_peer_data") {
        let c = try table.lookup(connection, .connection, as: ConnectionObject.self, name: "connection")
        let length = try requireOut(length, "length")
        let data = c.peerData
        guard let buffer else {
            length.pointee = data.count
            return
        }
        let n = min(max(0, capacity), data.count)
        data.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        length.pointee = n
        if n < data.count { throw APIError(.outOfBounds, "the peer's data has \(data.count) bytes, the buffer \(capacity)") }
    }
}

@_cdecl("vkv_connection_close")
public func vkv_connection_close(_ connection: OpaquePointer?) -> Int32 {
    guarded("vkv_connection_close") {
        let c = try table.remove(connection, .connection, as: ConnectionObject.self, name: "connection")
        // Waits for a call on another thread to finish, then disconnects (bounded, 2 s).
        c.lock.withLock { try? c.connection.disconnect(timeout: .seconds(2)) }
    }
}

// MARK: Posting

/// A peer's descriptor (`RemoteBuffer.encodedSize` bytes) as the C API hands it over; checked.
func remoteBuffer(_ descriptor: UnsafePointer<UInt8>?) throws -> RemoteBuffer {
    guard let descriptor else { throw APIError(.invalidArgument, "remote descriptor is NULL") }
    return try RemoteBuffer(decoding: UnsafeBufferPointer(start: descriptor, count: RemoteBuffer.encodedSize))
}

/// Looks the connection and memory up, checks they share the device, and posts under the connection's lock.
private func post(
    _ connection: OpaquePointer?, _ memory: OpaquePointer?, memoryOptional: Bool, _ op: UnsafeMutablePointer<UInt64>?,
    _ kind: ConnectionObject.Op, length: UInt64, _ body: (ConnectionObject, MemoryObject?) throws -> Ticket
) throws {
    let op = try requireOut(op, "op")
    op.pointee = 0
    let c = try table.lookup(connection, .connection, as: ConnectionObject.self, name: "connection")
    var m: MemoryObject?
    if memory != nil || !memoryOptional {
        let found = try table.lookup(memory, .memory, as: MemoryObject.self, name: "memory")
        guard found.region.pd === c.connection.pd else {
            throw APIError(.invalidArgument, "the memory is registered on another vkv_device than the connection's")
        }
        m = found
    }
    let ticket = try c.lock.withLock { () throws -> Ticket in
        let t = try body(c, m)
        c.pending[t.id] = (kind, t, length)
        if kind == .receive { c.receivesInFlight.append(t.id) }
        return t
    }
    op.pointee = ticket.id
}

@_cdecl("vkv_post_write")
public func vkv_post_write(_ connection: OpaquePointer?, _ memory: OpaquePointer?, _ offset: UInt64, _ length: UInt64,
                           _ remote: UnsafePointer<UInt8>?, _ remoteOffset: UInt64, _ op: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_post_write") {
        try post(connection, memory, memoryOptional: false, op, .write, length: length) { c, m in
            let remote = try remoteBuffer(remote)
            return try c.engine.postWrite(try m!.segment(offset: offset, length: length, "local range"),
                                          to: remote, at: remoteOffset)
        }
    }
}

@_cdecl("vkv_post_write_imm")
public func vkv_post_write_imm(_ connection: OpaquePointer?, _ memory: OpaquePointer?, _ offset: UInt64, _ length: UInt64,
                               _ remote: UnsafePointer<UInt8>?, _ remoteOffset: UInt64, _ immediate: UInt32,
                               _ op: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_post_write_imm") {
        try post(connection, memory, memoryOptional: false, op, .writeImmediate, length: length) { c, m in
            let remote = try remoteBuffer(remote)
            return try c.engine.postWrite(try m!.segment(offset: offset, length: length, "local range"),
                                          to: remote, at: remoteOffset, immediate: immediate)
        }
    }
}

@_cdecl("vkv_post_read")
public func vkv_post_read(_ connection: OpaquePointer?, _ memory: OpaquePointer?, _ offset: UInt64, _ length: UInt64,
                          _ remote: UnsafePointer<UInt8>?, _ remoteOffset: UInt64, _ op: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_post_read") {
        try post(connection, memory, memoryOptional: false, op, .read, length: length) { c, m in
            let remote = try remoteBuffer(remote)
            return try c.engine.postRead(into: try m!.segment(offset: offset, length: length, "local range"),
                                         from: remote, at: remoteOffset)
        }
    }
}

@_cdecl("vkv_post_send")
public func vkv_post_send(_ connection: OpaquePointer?, _ memory: OpaquePointer?, _ offset: UInt64, _ length: UInt64,
                          _ op: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_post_send") {
        try post(connection, memory, memoryOptional: length == 0, op, .send, length: length) { c, m in
            try c.engine.postSend(try m.map { try $0.segment(offset: offset, length: length, "local range") })
        }
    }
}

@_cdecl("vkv_post_recv")
public func vkv_post_recv(_ connection: OpaquePointer?, _ memory: OpaquePointer?, _ offset: UInt64, _ length: UInt64,
                          _ op: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_post_recv") {
        try post(connection, memory, memoryOptional: length == 0, op, .receive, length: length) { c, m in
            if let m, !m.region.access.contains(.localWrite) {
                throw APIError(.invalidArgument, "a receive lands in memory registered without VKV_ACCESS_LOCAL_WRITE")
            }
            return try c.engine.postReceive(try m.map { try $0.segment(offset: offset, length: length, "local range") })
        }
    }
}

// MARK: Waiting

/// Fills a struct vkv_completion (32 bytes: op u64, opcode u32, has_imm u32, imm u32, reserved u32, byte_count u64).
private func fill(_ out: UnsafeMutableRawPointer?, op: UInt64, kind: ConnectionObject.Op, immediate: UInt32?, bytes: UInt64) {
    guard let out else { return }
    out.storeBytes(of: op, toByteOffset: 0, as: UInt64.self)
    out.storeBytes(of: kind.rawValue, toByteOffset: 8, as: UInt32.self)
    out.storeBytes(of: immediate == nil ? 0 : 1, toByteOffset: 12, as: UInt32.self)
    out.storeBytes(of: immediate ?? 0, toByteOffset: 16, as: UInt32.self)
    out.storeBytes(of: 0, toByteOffset: 20, as: UInt32.self)
    out.storeBytes(of: bytes, toByteOffset: 24, as: UInt64.self)
}

@_cdecl("vkv_wait")
public func vkv_wait(_ connection: OpaquePointer?, _ op: UInt64, _ timeoutMilliseconds: Int32,
                     _ completion: UnsafeMutableRawPointer?) -> Int32 {
    guarded("vkv_wait") {
        let c = try table.lookup(connection, .connection, as: ConnectionObject.self, name: "connection")
        let timeout = duration(milliseconds: timeoutMilliseconds)
        try c.lock.withLock {
            guard let (kind, ticket, length) = c.pending[op] else {
                throw APIError(.invalidArgument, "op \(op) was not posted on this connection, or was waited for already")
            }
            if kind == .receive {
                let start = ContinuousClock.now
                while c.arrivals[op] == nil {
                    let left = timeout - (ContinuousClock.now - start)
                    let arrival = try c.engine.nextArrival(timeout: max(.zero, left))
                    let id = c.receivesInFlight.removeFirst()
                    c.arrivals[id] = arrival
                }
                let arrival = c.arrivals.removeValue(forKey: op)!
                c.pending[op] = nil
                fill(completion, op: op, kind: kind, immediate: arrival.immediate, bytes: UInt64(arrival.byteCount))
                return
            }
            // A zero timeout looks once: wait(for:) retires what is there before giving up.
            try c.engine.wait(for: ticket, timeout: timeout)
            c.pending[op] = nil
            fill(completion, op: op, kind: kind, immediate: nil, bytes: length)
        }
    }
}
