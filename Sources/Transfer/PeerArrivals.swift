/// One peer's arrivals as an `AsyncSequence` (`PeerEngine.arrivals(from:)`): each element is
/// resumed by the engine's progress loop, no thread waits. It ends when the peer is removed
/// (after what had arrived), and throws the peer's typed failure or a timeout.
public struct PeerArrivals: AsyncSequence, Sendable {
    public typealias Element = Arrival
    public typealias Failure = TransferError

    let engine: PeerEngine
    let peer: PeerID
    let timeout: Duration?

    public struct AsyncIterator: AsyncIteratorProtocol {
        let engine: PeerEngine
        let peer: PeerID
        let timeout: Duration?
        var done = false

        public mutating func next() async throws(TransferError) -> Arrival? {
            guard !done else { return nil }
            let got = try await engine.arrival(from: peer, timeout: timeout)
            if got == nil { done = true }
            return got
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(TransferError) -> Arrival? {
            guard !done else { return nil }
            let got = try await engine.arrival(from: peer, timeout: timeout)
            if got == nil { done = true }
            return got
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(engine: engine, peer: peer, timeout: timeout) }
}
