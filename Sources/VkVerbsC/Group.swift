// The C API's groups (vkv_group_*): a PeerGroup over rdmacm on one vkv_device, bootstrapped by
// an allgather the application implements (MPI_Allgather, say).
#if canImport(Glibc)
import Glibc
#endif
import Sharing
import Transfer
import Verbs

private let table = HandleTable.shared

/// vkv_group: the members connected through one engine on one device.
final class GroupObject {
    let device: DeviceObject
    let group: PeerGroup
    /// Writes posted with vkv_group_post_write and not yet waited for, by op (each keeps its
    /// local segment, and so its registration, until then). Bounded: wait for what you post.
    let pending = Locked<(next: UInt64, ops: [UInt64: (PeerTicket, LocalSegment)])>((1, [:]))
    static let maxPending = 4096

    init(device: DeviceObject, group: PeerGroup) {
        self.device = device
        self.group = group
    }

    deinit { group.close() }

    func peer(_ rank: Int32) throws -> PeerID {
        guard let peer = group.peer(Int(rank)) else {
            throw APIError(.invalidArgument, "member \(rank) is not connected to member \(group.rank) in this group")
        }
        return peer
    }

    func memory(_ handle: OpaquePointer?) throws -> MemoryObject {
        let m = try table.lookup(handle, .memory, as: MemoryObject.self, name: "memory")
        guard m.device === device else { throw APIError(.invalidArgument, "the memory is registered on another vkv_device than the group's") }
        return m
    }
}

/// vkv_allgather_fn: fills all (size × record_size bytes) with every member's record, in rank
/// order; returns 0 on success.
public typealias AllgatherFunction = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int32

/// An error of the application's allgather callback, by its return code.
struct AllgatherFailed: Error, CustomStringConvertible {
    var code: Int32
    var description: String { "the allgather callback returned \(code)" }
}

func classify(_ error: GroupError) -> Status {
    switch error {
    case .invalidArgument, .allgather, .badRecord, .duplicateRank: return .invalidArgument
    case .noAnswer: return .timeout
    case let .unreachable(_, e), let .transfer(e): return classify(e)
    }
}

@_cdecl("vkv_group_record_size")
public func vkv_group_record_size() -> Int { PeerGroup.recordSize }

@_cdecl("vkv_group_create")
public func vkv_group_create(_ device: OpaquePointer?, _ address: UnsafePointer<CChar>?, _ rank: Int32, _ size: Int32,
                             _ neighbours: UnsafePointer<Int32>?, _ neighbourCount: Int32,
                             _ descriptor: UnsafeRawPointer?, _ descriptorLength: Int,
                             _ allgather: AllgatherFunction?, _ user: UnsafeMutableRawPointer?, _ timeoutMilliseconds: Int32,
                             _ failedMember: UnsafeMutablePointer<Int32>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    failedMember?.pointee = -1
    return guarded("vkv_group_create") {
        let out = try requireOut(out, "out")
        out.pointee = nil
        let d = try table.lookup(device, .device, as: DeviceObject.self, name: "device")
        guard let address else { throw APIError(.invalidArgument, "address is NULL (an IP address of the device)") }
        guard let allgather else { throw APIError(.invalidArgument, "allgather is NULL") }
        guard descriptorLength >= 0, descriptorLength <= PeerGroup.maxDescriptorBytes else {
            throw APIError(.invalidArgument, "descriptor_length \(descriptorLength) exceeds \(PeerGroup.maxDescriptorBytes)")
        }
        let topology: GroupTopology
        if neighbourCount < 0 {
            topology = .allToAll
        } else {
            guard neighbourCount <= 64 else { throw APIError(.invalidArgument, "neighbour_count \(neighbourCount) exceeds 64") }
            if neighbourCount > 0 && neighbours == nil { throw APIError(.invalidArgument, "neighbours is NULL but neighbour_count is \(neighbourCount)") }
            topology = .neighbours((0..<Int(neighbourCount)).map { Int(neighbours![$0]) })
        }
        let transport = try RDMAGroupTransport(pd: d.pd, address: String(cString: address))
        let published = try bytes(descriptor, descriptorLength, "descriptor")
        let members = Int(size)
        do throws(GroupError) {
            let group = try PeerGroup(rank: Int(rank), size: members, descriptor: published, topology: topology, transport: transport,
                                      timeout: duration(milliseconds: timeoutMilliseconds)) { mine in
                guard members > 0, members <= Int.max / PeerGroup.recordSize else { throw AllgatherFailed(code: -1) }
                var all = [UInt8](repeating: 0, count: members * PeerGroup.recordSize)
                let rc = mine.withUnsafeBytes { m in all.withUnsafeMutableBytes { a in allgather(m.baseAddress, a.baseAddress, PeerGroup.recordSize, user) } }
                guard rc == 0 else { throw AllgatherFailed(code: rc) }
                return all
            }
            out.pointee = table.insert(GroupObject(device: d, group: group), .group)
        } catch {
            if let member = error.member { failedMember?.pointee = Int32(clamping: member) }
            throw APIError(classify(error), error.description)
        }
    }
}

@_cdecl("vkv_group_connected")
public func vkv_group_connected(_ group: OpaquePointer?, _ rank: Int32, _ connected: UnsafeMutablePointer<Int32>?) -> Int32 {
    guarded("vkv_group_connected") {
        let connected = try requireOut(connected, "connected")
        connected.pointee = 0
        let g = try table.lookup(group, .group, as: GroupObject.self, name: "group")
        connected.pointee = g.group.peer(Int(rank)) == nil ? 0 : 1
    }
}

@_cdecl("vkv_group_descriptor")
public func vkv_group_descriptor(_ group: OpaquePointer?, _ rank: Int32, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int,
                                 _ length: UnsafeMutablePointer<Int>?) -> Int32 {
    guarded("vkv_group_descriptor") {
        let length = try requireOut(length, "length")
        length.pointee = 0
        let g = try table.lookup(group, .group, as: GroupObject.self, name: "group")
        guard let published = g.group.descriptor(of: Int(rank)) else {
            throw APIError(.invalidArgument, "rank \(rank) is not in a group of \(g.group.size)")
        }
        length.pointee = published.count
        guard let buffer else { return }
        let n = min(max(0, capacity), published.count)
        published.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        if n < published.count { throw APIError(.outOfBounds, "member \(rank)'s descriptor is \(published.count) bytes; \(capacity) fit") }
    }
}

@_cdecl("vkv_group_write")
public func vkv_group_write(_ group: OpaquePointer?, _ rank: Int32, _ memory: OpaquePointer?, _ offset: UInt64, _ length: UInt64,
                            _ remoteDescriptor: UnsafePointer<UInt8>?, _ remoteOffset: UInt64, _ timeoutMilliseconds: Int32) -> Int32 {
    guarded("vkv_group_write") {
        let g = try table.lookup(group, .group, as: GroupObject.self, name: "group")
        let segment = try g.memory(memory).segment(offset: offset, length: length, "local range")
        try g.group.engine.write(to: try g.peer(rank), segment, remote: try remoteBuffer(remoteDescriptor), at: remoteOffset,
                                 timeout: duration(milliseconds: timeoutMilliseconds))
    }
}

@_cdecl("vkv_group_post_write")
public func vkv_group_post_write(_ group: OpaquePointer?, _ rank: Int32, _ memory: OpaquePointer?, _ offset: UInt64, _ length: UInt64,
                                 _ remoteDescriptor: UnsafePointer<UInt8>?, _ remoteOffset: UInt64, _ timeoutMilliseconds: Int32,
                                 _ op: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guarded("vkv_group_post_write") {
        let out = try requireOut(op, "op")
        out.pointee = 0
        let g = try table.lookup(group, .group, as: GroupObject.self, name: "group")
        let segment = try g.memory(memory).segment(offset: offset, length: length, "local range")
        let full = g.pending.withLock { $0.ops.count >= GroupObject.maxPending }
        if full { throw APIError(.outOfBounds, "\(GroupObject.maxPending) posted writes were not waited for: vkv_group_wait them") }
        let ticket = try g.group.engine.postWrite(to: try g.peer(rank), segment, remote: try remoteBuffer(remoteDescriptor),
                                                  at: remoteOffset, timeout: duration(milliseconds: timeoutMilliseconds))
        out.pointee = g.pending.withLock { p in
            defer { p.next += 1 }
            p.ops[p.next] = (ticket, segment)
            return p.next
        }
    }
}

@_cdecl("vkv_group_wait")
public func vkv_group_wait(_ group: OpaquePointer?, _ op: UInt64, _ timeoutMilliseconds: Int32) -> Int32 {
    guarded("vkv_group_wait") {
        let g = try table.lookup(group, .group, as: GroupObject.self, name: "group")
        guard let (ticket, _) = g.pending.withLock({ $0.ops[op] }) else {
            throw APIError(.invalidArgument, "op \(op) was not posted on this group, or was waited for already")
        }
        do {
            try g.group.engine.wait(for: ticket, timeout: duration(milliseconds: timeoutMilliseconds))
        } catch {
            // A timeout leaves it pending (wait again); any other error ends it.
            if case .timedOut? = error as? TransferError {} else { _ = g.pending.withLock { $0.ops.removeValue(forKey: op) } }
            throw error
        }
        _ = g.pending.withLock { $0.ops.removeValue(forKey: op) }
    }
}

@_cdecl("vkv_group_read")
public func vkv_group_read(_ group: OpaquePointer?, _ rank: Int32, _ memory: OpaquePointer?, _ offset: UInt64, _ length: UInt64,
                           _ remoteDescriptor: UnsafePointer<UInt8>?, _ remoteOffset: UInt64, _ timeoutMilliseconds: Int32) -> Int32 {
    guarded("vkv_group_read") {
        let g = try table.lookup(group, .group, as: GroupObject.self, name: "group")
        let segment = try g.memory(memory).segment(offset: offset, length: length, "local range")
        try g.group.engine.read(from: try g.peer(rank), into: segment, remote: try remoteBuffer(remoteDescriptor), at: remoteOffset,
                                timeout: duration(milliseconds: timeoutMilliseconds))
    }
}

@_cdecl("vkv_group_close")
public func vkv_group_close(_ group: OpaquePointer?) -> Int32 {
    guarded("vkv_group_close") { _ = try table.remove(group, .group, as: GroupObject.self, name: "group") }
}
