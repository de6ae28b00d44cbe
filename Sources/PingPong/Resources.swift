import CVerbs
import Verbs
import VulkanMemory

/// Builds both sides' resources the same way.
enum Resources {
    /// With `events`, the receive queue gets a completion channel of its own (event mode).
    static func make(context: Context, config kind: MemoryKind, bufferSize: Int, access: AccessFlags, window: Int, events: Bool = false,
                     vulkan: () throws(VulkanError) -> VulkanDevice) throws(PingPongError)
        -> (pd: ProtectionDomain, send: CompletionQueue, receive: CompletionQueue, memory: PingPongMemory,
            mailbox: MemoryRegion, outbox: MemoryRegion) {
        let pd = try v { () throws(VerbsError) in try ProtectionDomain(context: context) }
        let send = try v { () throws(VerbsError) in try CompletionQueue(context: context, capacity: window + 64) }
        let receive = try v { () throws(VerbsError) in
            var channel: CompletionChannel?
            if events { channel = try CompletionChannel(context: context) }
            return try CompletionQueue(context: context, capacity: Peer.receiveDepth * 2, channel: channel)
        }
        // Two halves: peers write into the first, we post from the second.
        let memory = try PingPongMemory(kind: kind, size: 2 * bufferSize, pd: pd, access: access, vulkan: vulkan)
        let (mailbox, outbox) = try mailboxes(pd: pd)
        return (pd, send, receive, memory, mailbox, outbox)
    }

    /// A side's mailbox and outbox, `Peer.mailboxSize` bytes of host memory each, in `pd`. The
    /// peer RDMA-writes control messages and heartbeats into the mailbox; it never reads it.
    static func mailboxes(pd: ProtectionDomain) throws(PingPongError) -> (mailbox: MemoryRegion, outbox: MemoryRegion) {
        let mailbox = try v { () throws(VerbsError) in
            try pd.register(try HostBuffer(count: Peer.mailboxSize), access: [.localWrite, .remoteWrite])
        }
        let outbox = try v { () throws(VerbsError) in try pd.register(try HostBuffer(count: Peer.mailboxSize), access: .local) }
        return (mailbox, outbox)
    }

    /// Least privilege: the server's buffer is open to what the client's operation does to it, no more.
    static func serverAccess(_ op: RDMAOperation) -> AccessFlags {
        switch op {
        case .write, .writeImm: return [.localWrite, .remoteWrite]
        case .read: return [.localWrite, .remoteRead]
        case .send: return .local
        }
    }

    /// The client's buffer is written by the server only in write and write-imm latency (the echo).
    static func clientAccess(_ c: PingPongConfiguration) -> AccessFlags {
        c.measurement == .latency && (c.operation == .write || c.operation == .writeImm) ? [.localWrite, .remoteWrite] : .local
    }

    /// Inline room for the 8-byte heartbeat at least; a device that refuses `inline` gets that.
    static func capabilities(window: Int, inline: Int) -> QueuePairCapabilities {
        let asked = UInt32(clamping: max(inline, heartbeatInline))
        return QueuePairCapabilities(maxSendRequests: UInt32(clamping: window + 32), maxReceiveRequests: UInt32(clamping: Peer.receiveDepth + 8),
                                     maxInlineData: asked, fallbackInlineData: asked > heartbeatInline ? UInt32(clamping: heartbeatInline) : nil)
    }
    static let heartbeatInline = 16
    /// What a server's latency QP offers, so a client's default inline size (220) finds room.
    static let serverLatencyInline = 256
}

/// The tag a latency iteration writes into the last byte; never 0, so a cleared buffer never matches.
@inline(__always) func tag(_ i: Int) -> UInt8 { UInt8(i % 255) + 1 }
