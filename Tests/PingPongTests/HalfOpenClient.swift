#if canImport(Glibc)
import Glibc
#endif
import CVerbs
import Foundation

/// A client that sends a connect request and never completes the handshake.
///
/// With librdmacm the active side does not finish the connection in the kernel: the server's
/// REP arrives as a CONNECT_RESPONSE event, and only `rdma_get_cm_event` processing that event
/// moves the QP to RTS and sends the RTU that gives the server its ESTABLISHED. This client
/// reads its event channel for address and route resolution, calls `rdma_connect`, and then
/// never reads the channel again, so the server's accept waits for an ESTABLISHED that does not
/// come: what a client whose process was stopped right after connecting does to a server.
/// Everything is released in `deinit`.
final class HalfOpenClient {
    private let channel: UnsafeMutablePointer<rdma_event_channel>
    private var id: UnsafeMutablePointer<rdma_cm_id>?
    private var pd: UnsafeMutablePointer<ibv_pd>?
    private var cq: UnsafeMutablePointer<ibv_cq>?

    struct Failure: Error, CustomStringConvertible { let description: String }

    init(host: String, port: UInt16, privateData: [UInt8]) throws {
        guard let channel = rdma_create_event_channel() else { throw Failure(description: "rdma_create_event_channel: errno \(errno)") }
        self.channel = channel
        guard rdma_create_id(channel, &id, nil, RDMA_PS_TCP) == 0, let id else { throw Failure(description: "rdma_create_id: errno \(errno)") }

        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let found, let address = found.pointee.ai_addr else {
            throw Failure(description: "getaddrinfo(\(host))")
        }
        defer { freeaddrinfo(found) }
        guard rdma_resolve_addr(id, nil, address, 5000) == 0 else { throw Failure(description: "rdma_resolve_addr: errno \(errno)") }
        try expect(RDMA_CM_EVENT_ADDR_RESOLVED)
        guard rdma_resolve_route(id, 5000) == 0 else { throw Failure(description: "rdma_resolve_route: errno \(errno)") }
        try expect(RDMA_CM_EVENT_ROUTE_RESOLVED)

        pd = ibv_alloc_pd(id.pointee.verbs)
        cq = ibv_create_cq(id.pointee.verbs, 8, nil, nil, 0)
        guard pd != nil, cq != nil else { throw Failure(description: "ibv_alloc_pd / ibv_create_cq: errno \(errno)") }
        var attributes = ibv_qp_init_attr()
        attributes.send_cq = cq
        attributes.recv_cq = cq
        attributes.qp_type = IBV_QPT_RC
        attributes.cap.max_send_wr = 4
        attributes.cap.max_recv_wr = 4
        attributes.cap.max_send_sge = 1
        attributes.cap.max_recv_sge = 1
        guard rdma_create_qp(id, pd, &attributes) == 0 else { throw Failure(description: "rdma_create_qp: errno \(errno)") }

        let rc = privateData.withUnsafeBytes { bytes in
            var parameters = rdma_conn_param()
            parameters.private_data = bytes.baseAddress
            parameters.private_data_len = UInt8(clamping: bytes.count)
            parameters.responder_resources = 1
            parameters.initiator_depth = 1
            parameters.retry_count = 7
            parameters.rnr_retry_count = 7
            return rdma_connect(id, &parameters)
        }
        guard rc == 0 else { throw Failure(description: "rdma_connect: errno \(errno)") }
        // From here on the channel is never read: no RTU goes out.
    }

    /// The next event on the channel must be `type` (within 10 s).
    private func expect(_ type: rdma_cm_event_type) throws {
        var poller = pollfd(fd: channel.pointee.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 10_000) == 1 else { throw Failure(description: "no rdmacm event within 10 s, expected \(type)") }
        var event: UnsafeMutablePointer<rdma_cm_event>?
        guard rdma_get_cm_event(channel, &event) == 0, let event else { throw Failure(description: "rdma_get_cm_event: errno \(errno)") }
        let got = event.pointee.event
        rdma_ack_cm_event(event)
        guard got == type else { throw Failure(description: "rdmacm event \(String(cString: rdma_event_str(got))), expected \(type)") }
    }

    deinit {
        if let id {
            if id.pointee.qp != nil { rdma_destroy_qp(id) }
            rdma_destroy_id(id)
        }
        if let cq { ibv_destroy_cq(cq) }
        if let pd { ibv_dealloc_pd(pd) }
        rdma_destroy_event_channel(channel)
    }
}
