#if canImport(Glibc)
import Glibc
#endif
import CVerbs
import Sharing

/// The RDMA devices the kernel exposes.
public enum Devices {
    /// Names of the RDMA devices (`ibv_get_device_list`, `ibv_get_device_name`).
    /// An empty list means no RDMA device (no driver, or no /dev/infiniband).
    public static func names() -> [String] {
        var count: Int32 = 0
        guard let list = ibv_get_device_list(&count) else { return [] }
        defer { ibv_free_device_list(list) }
        return (0..<Int(count)).compactMap { i in
            list[i].flatMap { ibv_get_device_name($0) }.map { String(cString: $0) }
        }
    }
}

extension VerbsError {
    /// What to do when the machine has no RDMA device at all.
    static let noRDMADevice = VerbsError.notFound(
        "no RDMA device (no /dev/infiniband/rdma_cm or no device driver loaded): load the NIC's driver, or for SoftRoCE "
            + "`modprobe rdma_rxe rdma_ucm && rdma link add rxe0 type rxe netdev IFACE`")
}

/// The array `rdma_get_devices` returns; its contexts are the ones rdmacm binds
/// cm_ids to, so every Context shares it and it is freed after the last one.
final class CMDeviceList: Sendable {
    private let list: CHandle<UnsafeMutablePointer<ibv_context>?>
    let count: Int

    init() throws(VerbsError) {
        var n: Int32 = 0
        let list = rdma_get_devices(&n)
        guard let list, n > 0 else {
            if let list { rdma_free_devices(list) }
            throw VerbsError.noRDMADevice
        }
        self.list = CHandle(list)
        count = Int(n)
    }

    var contexts: [UnsafeMutablePointer<ibv_context>] { (0..<count).compactMap { list.pointer[$0] } }

    deinit { rdma_free_devices(list.pointer) }

    /// One list for the process: rdmacm keeps its devices open for the process' life anyway,
    /// and sharing the list means contexts compare equal by pointer.
    private static let shared = Locked<CMDeviceList?>(nil)

    static func get() throws(VerbsError) -> CMDeviceList {
        try shared.withLock { (list) throws(VerbsError) -> CMDeviceList in
            if let list { return list }
            let made = try CMDeviceList()
            list = made
            return made
        }
    }
}
