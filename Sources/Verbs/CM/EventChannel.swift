#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// An rdmacm event, copied out so the event can be acknowledged at once
/// (`rdma_destroy_id` waits for every event of its id to be acknowledged).
struct CMEvent {
    var type: rdma_cm_event_type
    var status: Int32
    var id: UnsafeMutablePointer<rdma_cm_id>?
    var listenID: UnsafeMutablePointer<rdma_cm_id>?
    var privateData: [UInt8]
    var responderResources: UInt8
    var initiatorDepth: UInt8

    var name: String { String(cString: rdma_event_str(type)) }
}

/// An rdmacm event channel (`rdma_create_event_channel`), non-blocking so every wait has a timeout.
final class EventChannel: Sendable {
    private let handle: CHandle<rdma_event_channel>

    init() throws(VerbsError) {
        let channel: UnsafeMutablePointer<rdma_event_channel>
        do {
            channel = try checkPointer("rdma_create_event_channel", rdma_create_event_channel())
        } catch {
            // librdmacm opens /dev/infiniband/rdma_cm here: missing means no RDMA at all.
            if error.errno == ENODEV || error.errno == ENOENT { throw VerbsError.noRDMADevice }
            throw error
        }
        do {
            try setNonBlocking(channel.pointee.fd, verb: "fcntl(rdma event channel)")
        } catch {
            rdma_destroy_event_channel(channel)
            throw error
        }
        handle = CHandle(channel)
    }

    deinit { rdma_destroy_event_channel(raw) }

    var raw: UnsafeMutablePointer<rdma_event_channel> { handle.pointer }

    /// The next event (`rdma_get_cm_event`, then `rdma_ack_cm_event`), waiting until the deadline.
    /// The wait comes before the read, so an event costs one `poll` and one read whether or not it
    /// had arrived yet: reading first and polling after EAGAIN made the number of system calls of
    /// connection setup and teardown depend on how fast the peer answered.
    func next(deadline: Deadline, operation: String) throws(VerbsError) -> CMEvent {
        while true {
            try waitReadable(raw.pointee.fd, deadline: deadline, operation: operation)
            var event: UnsafeMutablePointer<rdma_cm_event>?
            if rdma_get_cm_event(raw, &event) == 0, let event {
                let e = event.pointee
                let conn = e.param.conn
                var data: [UInt8] = []
                if let p = conn.private_data, conn.private_data_len > 0 {
                    data = Array(UnsafeRawBufferPointer(start: p, count: Int(conn.private_data_len)))
                }
                let copy = CMEvent(type: e.event, status: e.status, id: e.id, listenID: e.listen_id,
                                   privateData: data, responderResources: conn.responder_resources,
                                   initiatorDepth: conn.initiator_depth)
                rdma_ack_cm_event(event)
                return copy
            }
            let code = Glibc.errno
            guard code == EAGAIN || code == EWOULDBLOCK || code == EINTR else {
                throw VerbsError.fromErrno("rdma_get_cm_event", code)
            }
        }
    }

    /// Waits for `expected`; any other event becomes a typed connection failure.
    func expect(_ expected: rdma_cm_event_type, deadline: Deadline, operation: String) throws(VerbsError) -> CMEvent {
        let event = try next(deadline: deadline, operation: operation)
        if event.type == expected { return event }
        let reason: ConnectionFailure.Reason
        switch event.type {
        case RDMA_CM_EVENT_ADDR_ERROR: reason = .addressResolution
        case RDMA_CM_EVENT_ROUTE_ERROR: reason = .routeResolution
        case RDMA_CM_EVENT_UNREACHABLE: reason = .unreachable
        case RDMA_CM_EVENT_REJECTED: reason = .rejected
        case RDMA_CM_EVENT_CONNECT_ERROR: reason = .connectError
        case RDMA_CM_EVENT_DISCONNECTED, RDMA_CM_EVENT_TIMEWAIT_EXIT: reason = .disconnected
        case RDMA_CM_EVENT_DEVICE_REMOVAL: reason = .deviceRemoved
        default: reason = .unexpectedEvent
        }
        throw VerbsError.connection(ConnectionFailure(
            reason: reason, event: event.name, status: event.status, privateData: event.privateData))
    }
}

/// An rdmacm identifier (`rdma_create_id`, `rdma_destroy_id`), with the channel its events arrive on.
final class CMID: Sendable {
    private let handle: CHandle<rdma_cm_id>
    let channel: EventChannel

    /// A new id on its own channel (`rdma_create_id`, RDMA_PS_TCP: reliable connected).
    init() throws(VerbsError) {
        let channel = try EventChannel()
        var id: UnsafeMutablePointer<rdma_cm_id>?
        try checkSetsErrno("rdma_create_id", rdma_create_id(channel.raw, &id, nil, RDMA_PS_TCP))
        handle = CHandle(id!)
        self.channel = channel
    }

    /// Adopts the id rdmacm made for an incoming request (its events arrive on the listener's
    /// channel until then), and moves it to a channel of its own (`rdma_migrate_id`) so its
    /// events do not mix with the listener's. The id is destroyed when either step fails.
    init(adopting id: UnsafeMutablePointer<rdma_cm_id>) throws(VerbsError) {
        let own: EventChannel
        do { own = try EventChannel() } catch {
            rdma_destroy_id(id)
            throw error
        }
        handle = CHandle(id)
        channel = own
        // On failure the id stays on the listener's channel; deinit destroys it.
        try checkSetsErrno("rdma_migrate_id", rdma_migrate_id(id, own.raw))
    }

    deinit { rdma_destroy_id(raw) }

    var raw: UnsafeMutablePointer<rdma_cm_id> { handle.pointer }

    var context: Context? { raw.pointee.verbs.flatMap { try? Context.forCMID($0) } }
}

/// Turns "host" and a port into a socket address, numeric port only.
func resolveSocketAddress(host: String, port: UInt16) throws(VerbsError) -> sockaddr_storage {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_NUMERICSERV
    var result: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &result)
    guard rc == 0, let result, let addr = result.pointee.ai_addr else {
        let text = rc == 0 ? "no address" : String(cString: gai_strerror(rc))
        throw VerbsError.notFound("address of \"\(host)\": \(text)")
    }
    defer { freeaddrinfo(result) }
    var storage = sockaddr_storage()
    withUnsafeMutableBytes(of: &storage) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(start: addr, count: Int(result.pointee.ai_addrlen)))
    }
    return storage
}

/// Sizes of connection private data that the IB CM carries for rdmacm's RC connections.
public enum PrivateDataLimit {
    public static let connect = 56
    public static let accept = 196
    public static let reject = 148
}

func checkPrivateData(_ data: [UInt8], limit: Int, step: String) throws(VerbsError) {
    guard data.count <= limit else {
        throw VerbsError.invalidArgument("\(step) private data holds at most \(limit) bytes, got \(data.count)")
    }
}
