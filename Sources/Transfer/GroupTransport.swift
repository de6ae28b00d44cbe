import Verbs

/// How the members of a `PeerGroup` reach each other: each listens at an address (bytes that go
/// into the allgather), and dials the others' addresses with a hello that says who it is. The
/// verbs transport is `RDMAGroupTransport` (rdmacm); a test's is the in-memory twin's.
public protocol GroupTransport: Sendable {
    /// Starts listening; the listener's `address` is published to the other members.
    func listen() throws(TransferError) -> any GroupListener
    /// Connects to the member listening at `address`, sending `hello`; returns the endpoint once
    /// that member accepted, or throws (refused, unreachable, `.timedOut` after `timeout`).
    func dial(_ address: [UInt8], hello: [UInt8], timeout: Duration) throws(TransferError) -> any ConnectedEndpoint
}

/// A member's listening end.
public protocol GroupListener: AnyObject, Sendable {
    /// What the other members dial (opaque to the group; at most `PeerGroup.maxAddressBytes`).
    var address: [UInt8] { get }
    /// The next connection request within `timeout`, nil when none came.
    func next(timeout: Duration) throws(TransferError) -> (any GroupRequest)?
    /// Stops listening (requests not taken are refused).
    func close()
}

/// A connection request a listener took: the dialer's hello, answered once.
public protocol GroupRequest: AnyObject {
    var hello: [UInt8] { get }
    /// Accepts; the endpoint is connected once this returns.
    func accept(timeout: Duration) throws(TransferError) -> any ConnectedEndpoint
    /// Refuses (the dialer's `dial` throws).
    func reject()
}
