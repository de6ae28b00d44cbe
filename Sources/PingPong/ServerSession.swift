#if canImport(Glibc)
import Glibc
#endif
import Verbs

/// One client's session on the server once it is connected: the client's steps, answered until
/// it says bye. `PingPongServer` runs one on each session thread over a `Connection`; tests run
/// one over an in-memory endpoint.
///
/// Contract: `peer` is connected and knows the client's buffer and mailbox (`peerBuffer`,
/// `peerMailbox`); its buffer is open to what `operation` does to it (`Resources.serverAccess`).
/// Every control message is hostile until checked: each `start` is decoded by `StepRequest`
/// before any of its values is used, so a hostile one ends the session with `.badRequest`; an
/// unknown kind or one out of order ends it with `.protocolError`. A client that goes away ends
/// it with `.peerGone`, one that stops answering with `.timedOut` after the peer's timeout (a
/// heartbeat restarts that clock). It never traps on what the client sends.
struct ServerSession {
    let peer: Peer
    let operation: RDMAOperation
    let measurement: MeasurementKind
    let log: (String) -> Void

    /// Serves steps until the client's bye (returns) or an error (thrown; the session is over).
    /// Posts the receives the client's sends and writes with immediate need, where they are not
    /// posted yet.
    func run() throws(PingPongError) {
        if operation == .send || operation == .writeImm { try peer.postReceives() }
        while true {
            let (kind, a, b) = try peer.receiveControl(nil, what: "waiting for the client's next step")
            if kind == .bye { log("client done"); return }
            // The client says how much it inlines; we answer likewise, within our cap.
            let request = try StepRequest(kind: kind, a: a, b: b, bufferHalf: peer.half,
                                          inlineCap: peer.memory.canInline ? peer.endpoint.maxInlineData : 0)
            peer.inlineLimit = request.inline
            try step(size: request.size, total: request.total)
        }
    }

    /// One step of `size` bytes (1...peer.half) and at most `total` iterations, both checked by `StepRequest`.
    private func step(size: Int, total: Int) throws(PingPongError) {
        if let bytes = peer.memory.hostBytes { memset(bytes, 0, size) }
        peer.watchMailbox = true
        peer.peerFinishedEarly = false
        defer { peer.watchMailbox = false }
        try peer.sendControl(.ready)
        if measurement == .latency {
            // A read needs no answer, so nothing is prepared for it.
            let prepared = operation == .read ? nil : try peer.prepare(operation, size: size)
            var i = 0
            loop: while i < total {
                switch operation {
                case .write:
                    guard let bytes = peer.memory.hostBytes else {
                        throw .protocolError("write latency spins on the buffer's last byte, which the host cannot see in \(peer.memory.description)")
                    }
                    guard try peer.waitLastByte(size: size, tag: tag(i), "waiting for the client's write") else { break loop }
                    (bytes + peer.half + size - 1).storeBytes(of: tag(i), as: UInt8.self)
                    try peer.post(prepared!)
                case .writeImm:
                    guard try peer.waitReceive("waiting for the client's write with immediate") else { break loop }
                    try peer.post(prepared!, immediate: UInt32(truncatingIfNeeded: i))
                    try peer.postReceives()
                case .send:
                    guard try peer.waitReceive("waiting for the client's message") else { break loop }
                    try peer.post(prepared!)
                    try peer.postReceives()
                case .read:
                    break loop  // The client reads on its own; nothing to answer.
                }
                try peer.reapSends()
                i += 1
            }
        } else if operation == .writeImm || operation == .send {
            // Consume (and re-post) receives until the client says it is done.
            while try peer.waitReceive("receiving the client's messages") { try peer.postReceives() }
            // RC ordering: every message posted before the client's "done" has landed; take their completions.
            var failure: WorkCompletion?
            while try v({ () throws(VerbsError) in
                try peer.pollReceives { wc in
                    peer.postedReceives -= 1
                    if !wc.isSuccess && failure == nil { failure = wc }
                }
            }) > 0 {}
            if let failure {
                if failure.status == .flushed { throw .peerGone("while receiving the client's messages") }
                try v { () throws(VerbsError) in try failure.check() }
            }
            try peer.postReceives()
        }
        try peer.waitSend("draining the send queue")
        peer.watchMailbox = false
        _ = try peer.receiveControl(.done, what: "waiting for the client to finish the step")
        try peer.sendControl(.done)
    }
}
