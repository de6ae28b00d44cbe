#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// The passive side of rdmacm (`rdma_bind_addr`, `rdma_listen`).
public final class Listener: Sendable {
    let id: CMID

    /// Listens on `address` (nil: every address) and `port` (0: an ephemeral port, see `port`).
    public init(address: String? = nil, port: UInt16 = 0, backlog: Int32 = 16) throws(VerbsError) {
        var sa = try resolveSocketAddress(host: address ?? "0.0.0.0", port: port)
        id = try CMID()
        let raw = id.raw
        try withUnsafeMutablePointer(to: &sa) { p throws(VerbsError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { s throws(VerbsError) in
                try checkSetsErrno("rdma_bind_addr(\(address ?? "*"):\(port))", rdma_bind_addr(raw, s))
            }
        }
        try checkSetsErrno("rdma_listen", rdma_listen(raw, backlog))
    }

    /// The port it listens on (`rdma_get_src_port`).
    public var port: UInt16 { UInt16(bigEndian: rdma_get_src_port(id.raw)) }

    /// The device, when bound to one device's address (nil for a wildcard listener).
    public var context: Context? { id.context }

    /// Waits up to `timeout` for the next connection request.
    public func accept(timeout: Duration) throws(VerbsError) -> ConnectionRequest {
        let deadline = Deadline(after: timeout)
        while true {
            let event = try id.channel.next(deadline: deadline, operation: "waiting for a connection request")
            guard event.type == RDMA_CM_EVENT_CONNECT_REQUEST, let child = event.id else { continue }
            let childID = try CMID(adopting: child)
            guard let context = childID.context else {
                throw VerbsError.notFound("the device of an incoming connection request")
            }
            return ConnectionRequest(id: childID, context: context, privateData: event.privateData,
                                     peerResponderResources: event.responderResources,
                                     peerInitiatorDepth: event.initiatorDepth)
        }
    }
}
