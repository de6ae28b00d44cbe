import Verbs
import VulkanMemory

/// Where a ping-pong server takes its clients' connection requests: rdmacm's listener
/// (`RDMASessionAcceptor`), or an in-memory one in tests.
protocol SessionAcceptor: Sendable {
    /// The next connection request within `wait`; nil when none came.
    func next(wait: Duration) throws(VerbsError) -> (any SessionRequest)?
}

/// A client's connection request, from the accept loop to its session thread. It is answered
/// once: `reject`, or `accept`, which builds the session's side and completes the handshake.
protocol SessionRequest: Sendable {
    /// The request's private data, hostile until `Handshake.decodeRequest` checked it.
    var privateData: [UInt8] { get }
    /// Refuses the request, with `reason` as the reject's private data (cut to what fits).
    func reject(_ reason: String)
    /// Builds the session's memory (`setup.asked.bufferSize`, in the connection's protection
    /// domain), posts `Peer.receiveDepth` receives, and accepts with `setup.answer` as private
    /// data; the client must complete the handshake within `setup.handshakeTimeout`. Refuses
    /// the request (`no memory`) when the memory cannot be had. The peer's `peerBuffer` and
    /// `peerMailbox` are the caller's to set.
    func accept(_ setup: SessionSetup) throws(PingPongError) -> Peer
}

/// What a session's side is made of, whatever the transport.
struct SessionSetup {
    /// The client's decoded request.
    let asked: Handshake.Request
    /// The kind of memory the server measures with (transports without Vulkan use host memory).
    let memory: MemoryKind
    let vulkan: () throws(VulkanError) -> VulkanDevice
    /// The session's timeout (the peer's) and the handshake's.
    let timeout: Duration
    let handshakeTimeout: Duration
    /// The accept's private data, given the session's buffer and mailbox.
    let answer: (_ buffer: RemoteBuffer, _ mailbox: RemoteBuffer) -> [UInt8]
    /// Event mode: receive waits sleep on a completion channel (transports without one poll).
    var events = false
}
