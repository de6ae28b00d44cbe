#if canImport(Glibc)
import Glibc
#endif
@testable import PingPong
import Verbs
import VerbsEmbedded
import VulkanMemory

/// What a hostile ping-pong client does, one step at a time; the raw values are the input's
/// codes (an input byte modulo the count picks one).
enum PingPongAction: UInt8, CaseIterable {
    /// kind(1) a(8) b(8): a whole control message with the client's next sequence number,
    /// RDMA-written into the server's mailbox.
    case control = 0
    /// 32 bytes written into the mailbox as they are (any sequence, torn or stale).
    case rawControl
    /// offset(1) length(1) byte(1): that many copies of the byte written at an offset of the
    /// mailbox (past its end too: a remote access error).
    case mailboxBytes
    /// value(8): the heartbeat word after the control message.
    case heartbeat
    /// offset(2) length(2) byte(1): an RDMA write of `length` copies of the byte into the
    /// server's buffer at `offset` (a latency write's last byte is its tag).
    case write
    /// length(2) byte(1): a send of `length` copies of the byte.
    case send
    /// offset(2) length(2) immediate(4): an RDMA write with immediate into the server's buffer.
    case writeImmediate
    /// offset(2) length(2): an RDMA read of the server's buffer.
    case read
    /// count(1): receives for the server's sends and writes with immediate (count % 8).
    case postReceives
    /// address(8) rkey(4) length(2): an RDMA write anywhere, with any key.
    case writeAnywhere
    /// Nothing this time: the server spins once more.
    case idle
    /// The client's queue pair goes to the error state.
    case flush
    /// The client hangs up; the rest of the input is not read.
    case hangUp

    init(code: UInt8) { self = Self.allCases[Int(code) % Self.allCases.count] }
}

/// The ping-pong server's handling of one hostile client, at session level: the client's
/// connect private data through the server's admission (`PingPongServer.admit`: limit, format,
/// shared secret, replay, memory budget) and, once admitted, the session (`PingPongServer.serve`:
/// the accept, then `ServerSession` serving the client's control messages and data), over an
/// in-memory link, on this thread (the server's session thread is the only thing left out).
///
/// Input: `flags(1) length(1) request(length % 65) action...` (actions: `PingPongAction`).
/// Flags: bit 0 puts the client's real buffer (address, rkey) into the request, bit 1 its real
/// mailbox, bit 2 gives the server a shared secret, bit 3 signs the request with it (a fresh
/// time, so the tag and the clock check pass).
///
/// After each input: the client hangs up, the queues are emptied (as destroying them would),
/// and then the link must hold no registered memory and no pending request, the session's
/// `Peer` must be gone and the server's memory budget back to zero; anything else traps.
enum PingPongSessionTarget {
    static let secret = try! SharedSecret(Array("session-fuzzer-shared-secret-0123".utf8))
    /// The server's memory budget: requests above it are refused, as `--max-memory` does.
    static let maxMemory = 256 << 10

    static func run(_ input: inout InputReader) {
        let flags = input.byte()
        var request = input.bytes(Int(input.byte()) % 65)
        let link = HostilePeer.link(sendQueueDepth: 64, receiveQueueDepth: 128)
        let client = HostilePeer(link: link)
        let script = PingPongScript(client: client, input: input)
        if flags & 1 != 0 { patch(&request, at: 12, client.region!.remoteBuffer) }
        if flags & 2 != 0 { patch(&request, at: 24, client.mailbox!.remoteBuffer) }
        if flags & 8 != 0, request.count >= Handshake.requestSize {
            put(Handshake.now(), into: &request, at: 36)
            let tag = secret.tag("vkverbs-pingpong-request", Array(request[0..<Handshake.signedRequestSize]))
            request.replaceSubrange(Handshake.signedRequestSize..<Handshake.requestSize, with: tag.prefix(Handshake.requestTagSize))
        }
        let server: PingPongServer
        do {
            server = try PingPongServer(acceptor: NoAcceptor(), listener: nil, timeout: .seconds(10), maxSessions: 1,
                                        maxMemory: maxMemory, secret: flags & 4 != 0 ? secret : nil,
                                        vulkan: { () throws(VulkanError) in throw .invalidArgument("no Vulkan in the fuzzer") },
                                        log: { _ in })
        } catch {
            leak("a server cannot be made: \(error)")
        }
        let sessionRequest = FuzzSessionRequest(privateData: request, endpoint: PacedEndpoint(link.b, step: script.step), script: script)
        if let admission = try? server.admit(sessionRequest) {
            server.serve(admission)
            // While the admission is still here: the session gave its charge back itself, not
            // the reservation's deinit.
            if server.budget.inUse != 0 { leak("a session ended holding \(server.budget.inUse) bytes of the memory budget") }
        }
        client.finish("a ping-pong session")
        if sessionRequest.peer.object != nil { leak("the session's Peer outlived it") }
        if server.budget.inUse != 0 { leak("the session left \(server.budget.inUse) bytes charged to the memory budget") }
    }

    /// Puts `buffer`'s address and rkey (big-endian, as the request carries them) at `offset`.
    private static func patch(_ request: inout [UInt8], at offset: Int, _ buffer: RemoteBuffer) {
        guard request.count >= offset + 12 else { return }
        put(buffer.address, into: &request, at: offset)
        put(buffer.rkey, into: &request, at: offset + 8)
    }

    private static func put<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.bigEndian) { bytes.replaceSubrange(offset..<offset + $0.count, with: $0) }
    }
}

/// The accept loop's source of requests, unused: the fuzzer hands its one request to `admit`.
private struct NoAcceptor: SessionAcceptor {
    func next(wait: Duration) throws(VerbsError) -> (any SessionRequest)? { nil }
}

/// A weak reference, to see that something is gone.
final class Weak<T: AnyObject>: @unchecked Sendable {  // Only the fuzzing thread touches it.
    weak var object: T?
}

/// The hostile client's connection request: accepting it builds the session's side over the
/// paced in-memory endpoint, as the server's in-memory acceptor in the tests does, and hands
/// the server's answer to the client.
private struct FuzzSessionRequest: SessionRequest, @unchecked Sendable {  // Only the fuzzing thread touches it.
    let privateData: [UInt8]
    let endpoint: PacedEndpoint
    let script: PingPongScript
    let peer = Weak<Peer>()

    func reject(_ reason: String) {}

    func accept(_ setup: SessionSetup) throws(PingPongError) -> Peer {
        let peer = try Peer.onHostMemory(endpoint, bufferSize: setup.asked.bufferSize,
                                         access: Resources.serverAccess(setup.asked.operation), timeout: setup.timeout)
        try peer.postReceives()
        script.answered(setup.answer(peer.memory.region.remoteBuffer, peer.mailbox.remoteBuffer))
        self.peer.object = peer
        return peer
    }
}

/// The client's steps, read from the input as the server waits for them.
private final class PingPongScript {
    let client: HostilePeer
    var input: InputReader
    /// The server's buffer and mailbox, from its answer (nil: the answer did not decode).
    var server: (buffer: RemoteBuffer, mailbox: RemoteBuffer)?
    var sequence: UInt64 = 0

    init(client: HostilePeer, input: InputReader) {
        self.client = client
        self.input = input
    }

    /// The server's accept private data, decoded as a client decodes it.
    func answered(_ answer: [UInt8]) {
        server = try? Handshake.decodeAnswer(answer)
    }

    /// One step; false once the client has hung up.
    func step() -> Bool {
        if client.hungUp { return false }
        if input.isAtEnd {
            client.hangUp()
            return false
        }
        let bytes = client.bytes
        let scratch = bytes + HostilePeer.dataSize
        let buffer = server?.buffer ?? RemoteBuffer(address: 0, length: 0, rkey: 0)
        let mailbox = server?.mailbox ?? RemoteBuffer(address: 0, length: 0, rkey: 0)
        switch PingPongAction(code: input.byte()) {
        case .control:
            let kind = UInt64(input.byte()), a = input.integer(UInt64.self), b = input.integer(UInt64.self)
            sequence += 1
            for (index, word) in [sequence, a, b, kind | sequence << 8].enumerated() {
                scratch.storeBytes(of: word, toByteOffset: index * 8, as: UInt64.self)
            }
            client.post(.write(mailbox, offset: 0), offset: HostilePeer.dataSize, length: ControlMessage.size)
        case .rawControl:
            let raw = input.bytes(ControlMessage.size)
            memset(scratch, 0, ControlMessage.size)
            for (index, byte) in raw.enumerated() { scratch.storeBytes(of: byte, toByteOffset: index, as: UInt8.self) }
            client.post(.write(mailbox, offset: 0), offset: HostilePeer.dataSize, length: ControlMessage.size)
        case .mailboxBytes:
            let offset = UInt64(input.byte() % 80), length = Int(input.byte() % 65), value = input.byte()
            memset(scratch, Int32(value), length)
            client.post(.write(mailbox, offset: offset), offset: HostilePeer.dataSize, length: length)
        case .heartbeat:
            scratch.storeBytes(of: input.integer(UInt64.self), as: UInt64.self)
            client.post(.write(mailbox, offset: Peer.heartbeatOffset), offset: HostilePeer.dataSize, length: 8)
        case .write:
            let offset = UInt64(input.integer(UInt16.self)), length = Int(input.integer(UInt16.self)) % (HostilePeer.dataSize + 1)
            memset(bytes, Int32(input.byte()), length)
            client.post(.write(buffer, offset: offset), length: length)
        case .send:
            let length = Int(input.integer(UInt16.self)) % (HostilePeer.dataSize + 1)
            memset(bytes, Int32(input.byte()), length)
            client.post(.send, length: length)
        case .writeImmediate:
            let offset = UInt64(input.integer(UInt16.self)), length = Int(input.integer(UInt16.self)) % (HostilePeer.dataSize + 1)
            client.post(.writeWithImmediate(buffer, offset: offset, immediate: input.integer(UInt32.self)), length: length)
        case .read:
            let offset = UInt64(input.integer(UInt16.self)), length = Int(input.integer(UInt16.self)) % (HostilePeer.dataSize + 1)
            client.post(.read(buffer, offset: offset), length: length)
        case .postReceives:
            client.postReceives(Int(input.byte() % 8))
        case .writeAnywhere:
            let target = RemoteBuffer(address: input.integer(UInt64.self), length: 0, rkey: input.integer(UInt32.self))
            client.post(.write(target, offset: 0), length: Int(input.integer(UInt16.self)) % (HostilePeer.dataSize + 1))
        case .idle:
            client.reap()
        case .flush:
            client.flush()
        case .hangUp:
            client.hangUp()
            return false
        }
        return true
    }
}
