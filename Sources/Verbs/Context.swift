#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// An open RDMA device (`struct ibv_context`).
///
/// Contexts come from `rdma_get_devices`, the same ones rdmacm binds its cm_ids to,
/// so a protection domain made here can hold queue pairs of rdmacm connections.
/// An in-memory device (`init(inMemoryNamed:)`) has no verbs context: it only names the
/// protection domains of an in-memory transport (VerbsEmbedded), and every device query on it
/// throws `.unsupported`.
public final class Context: Sendable {
    private let handle: CHandle<ibv_context>?
    private let deviceList: CMDeviceList?
    private let inMemoryName: String?

    init(raw: UnsafeMutablePointer<ibv_context>, deviceList: CMDeviceList) {
        handle = CHandle(raw)
        self.deviceList = deviceList
        inMemoryName = nil
    }

    /// A device that exists only in this process, for an in-memory transport.
    package init(inMemoryNamed name: String) {
        handle = nil
        deviceList = nil
        inMemoryName = name
    }

    /// The verbs context; nil for an in-memory device.
    private var device: UnsafeMutablePointer<ibv_context>? { handle?.pointer }

    /// Whether this is an in-memory device (no verbs context behind it).
    public var isInMemory: Bool { handle == nil }

    /// The verbs context, for `verb`; an in-memory device has none.
    func raw(_ verb: String) throws(VerbsError) -> UnsafeMutablePointer<ibv_context> {
        guard let device else { throw VerbsError.unsupported(verb: "\(verb) on the in-memory device \(name)", errno: ENODEV) }
        return device
    }

    /// Opens the device called `name`, or, when `name` is nil, the first device that
    /// has an active port. Wraps `rdma_get_devices`.
    public static func open(name: String? = nil) throws(VerbsError) -> Context {
        let list = try CMDeviceList.get()
        let contexts = list.contexts.map { Context(raw: $0, deviceList: list) }
        if let name {
            guard let found = contexts.first(where: { $0.name == name }) else {
                throw VerbsError.notFound("RDMA device \"\(name)\" (devices: \(contexts.map(\.name).joined(separator: ", ")))")
            }
            return found
        }
        for context in contexts where (try? context.activePort()) != nil { return context }
        throw VerbsError.notFound("an RDMA device with an active port (devices: \(contexts.map(\.name).joined(separator: ", ")))")
    }

    /// The context rdmacm bound a cm_id to.
    static func forCMID(_ verbs: UnsafeMutablePointer<ibv_context>?) throws(VerbsError) -> Context {
        guard let verbs else { throw VerbsError.notFound("the cm_id is bound to no RDMA device") }
        let list = try CMDeviceList.get()
        return Context(raw: verbs, deviceList: list)
    }

    /// The kernel's name of the device (`ibv_get_device_name`).
    public var name: String { device.map { String(cString: ibv_get_device_name($0.pointee.device)) } ?? inMemoryName ?? "?" }

    /// Two Context objects are the same device when they wrap the same `ibv_context`.
    public func isSameDevice(as other: Context) -> Bool { device == nil ? self === other : device == other.device }

    /// Device limits (`ibv_query_device`).
    public func attributes() throws(VerbsError) -> DeviceAttributes {
        var attr = ibv_device_attr()
        try checkReturnedErrno("ibv_query_device", ibv_query_device(try raw("ibv_query_device"), &attr))
        let fw = withUnsafeBytes(of: attr.fw_ver) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return DeviceAttributes(
            firmwareVersion: fw, nodeGUID: UInt64(bigEndian: attr.node_guid),
            maxMRSize: attr.max_mr_size, pageSizeCapabilities: attr.page_size_cap,
            maxQP: attr.max_qp, maxQPWorkRequests: attr.max_qp_wr, maxSGE: attr.max_sge,
            maxCQ: attr.max_cq, maxCQE: attr.max_cqe, maxMR: attr.max_mr, maxPD: attr.max_pd,
            maxQPReadAtomic: attr.max_qp_rd_atom, maxQPInitiatorReadAtomic: attr.max_qp_init_rd_atom,
            physicalPortCount: attr.phys_port_cnt)
    }

    /// A port's attributes (`ibv_query_port`) with its valid GID entries (`ibv_query_gid_table`).
    public func port(_ number: UInt8) throws(VerbsError) -> PortInfo {
        var attr = ibv_port_attr()
        try checkReturnedErrno("ibv_query_port", ___ibv_query_port(try raw("ibv_query_port"), number, &attr))
        return PortInfo(
            number: number, state: PortState(attr.state), activeMTU: MTU(attr.active_mtu),
            maxMTU: MTU(attr.max_mtu), linkLayer: LinkLayer(attr.link_layer),
            maxMessageSize: attr.max_msg_sz, lid: attr.lid, gidTableLength: attr.gid_tbl_len,
            gids: try gidTable(port: number, length: Int(attr.gid_tbl_len)))
    }

    private func gidTable(port: UInt8, length: Int) throws(VerbsError) -> [GIDEntry] {
        guard length > 0 else { return [] }
        // The table holds every port's entries; the device-wide length bounds it.
        let capacity = length * Int(max(1, (try? attributes().physicalPortCount) ?? 1))
        var entries = [ibv_gid_entry](repeating: ibv_gid_entry(), count: capacity)
        let n = ibv_query_gid_table(try raw("ibv_query_gid_table"), &entries, capacity, 0)
        if n < 0 { throw VerbsError.fromErrno("ibv_query_gid_table", Int32(-n)) }
        return entries.prefix(Int(n)).filter { $0.port_num == UInt32(port) }.map { e in
            let type: GIDType
            switch e.gid_type {
            case UInt32(IBV_GID_TYPE_ROCE_V1.rawValue): type = .roceV1
            case UInt32(IBV_GID_TYPE_ROCE_V2.rawValue): type = .roceV2
            default: type = .ib
            }
            return GIDEntry(index: Int(e.gid_index), gid: GID(e.gid), type: type, interfaceIndex: e.ndev_ifindex)
        }
    }

    /// Every port of the device.
    public func ports() throws(VerbsError) -> [PortInfo] {
        let count = try attributes().physicalPortCount
        var result: [PortInfo] = []
        for n in 1...max(1, count) { result.append(try port(n)) }
        return result
    }

    /// The first active port, or `.notFound` naming each port's state.
    public func activePort() throws(VerbsError) -> PortInfo {
        let all = try ports()
        if let active = all.first(where: \.isActive) { return active }
        let states = all.map { "port \($0.number): \($0.state.rawValue)" }.joined(separator: ", ")
        throw VerbsError.notFound("an active port on \(name) (\(states))")
    }

    /// Everything `vkverbs devices` prints about this device.
    public func info() throws(VerbsError) -> DeviceInfo {
        let pd = try ProtectionDomain(context: self)
        return DeviceInfo(name: name, attributes: try attributes(), ports: try ports(), dmaBuf: pd.dmaBufSupport())
    }
}
