@testable import PingPong
import Verbs
import VerbsEmbedded

/// A `SessionAcceptor` over an `InMemoryListener`: the server's accept loop on the in-memory
/// twin. Sessions measure with host memory registered in the accepted endpoint's domain.
struct InMemorySessionAcceptor: SessionAcceptor {
    let listener: InMemoryListener

    func next(wait: Duration) throws(VerbsError) -> (any SessionRequest)? {
        listener.take(wait: wait).map(InMemorySessionRequest.init)
    }
}

/// An in-memory connection request as a `SessionRequest`.
struct InMemorySessionRequest: SessionRequest {
    let request: InMemoryConnectionRequest

    var privateData: [UInt8] { request.privateData }

    func reject(_ reason: String) { request.reject(reason: Array(reason.utf8)) }

    func accept(_ setup: SessionSetup) throws(PingPongError) -> Peer {
        let peer = try Peer.onHostMemory(request.endpoint, bufferSize: setup.asked.bufferSize,
                                         access: Resources.serverAccess(setup.asked.operation), timeout: setup.timeout)
        try peer.postReceives()
        do {
            _ = try request.accept(answer: setup.answer(peer.memory.region.remoteBuffer, peer.mailbox.remoteBuffer),
                                   timeout: setup.handshakeTimeout)
        } catch {
            throw .verbs(error)
        }
        return peer
    }
}
