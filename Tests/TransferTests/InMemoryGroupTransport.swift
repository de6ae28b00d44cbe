#if canImport(Glibc)
import Glibc
#endif
import Sharing
import Transfer
import Verbs
import VerbsEmbedded

/// A `GroupTransport` over the in-memory twin: each member's listener is an `InMemoryListener`
/// in a directory the members of one test share; an address is its index (8 bytes).
final class InMemoryGroupTransport: GroupTransport {
    private let directory = Locked<[InMemoryListener]>([])

    /// Every listener made so far, in order (to read their links after a test).
    var listeners: [InMemoryListener] { directory.withLock { $0 } }

    func listen() throws(TransferError) -> any GroupListener {
        let listener = InMemoryListener()
        let index = directory.withLock { d in d.append(listener); return d.count - 1 }
        return InMemoryGroupListener(listener: listener, index: index)
    }

    func dial(_ address: [UInt8], hello: [UInt8], timeout: Duration) throws(TransferError) -> any ConnectedEndpoint {
        guard address.count == 8 else { throw TransferError.invalidArgument("an in-memory address is 8 bytes") }
        let index = address.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard let listener = directory.withLock({ d in Int(exactly: index).flatMap { $0 < d.count ? d[$0] : nil } }) else {
            throw TransferError.invalidArgument("no in-memory listener at \(index)")
        }
        return try TransferError.bridge { () throws(VerbsError) in try listener.dial(privateData: hello, timeout: timeout).endpoint }
    }

    /// A member's listener; closing makes it unreachable and refuses what waits.
    final class InMemoryGroupListener: GroupListener {
        let listener: InMemoryListener
        let address: [UInt8]

        init(listener: InMemoryListener, index: Int) {
            self.listener = listener
            address = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(index) >> (8 * UInt64($0))) }
        }

        func next(timeout: Duration) throws(TransferError) -> (any GroupRequest)? {
            listener.take(wait: timeout).map(Request.init)
        }

        func close() {
            listener.unreachable = true
            while let r = listener.take(wait: .zero) { r.reject(reason: []) }
        }
    }

    final class Request: GroupRequest {
        let request: InMemoryConnectionRequest
        init(_ request: InMemoryConnectionRequest) { self.request = request }
        var hello: [UInt8] { request.privateData }
        func accept(timeout: Duration) throws(TransferError) -> any ConnectedEndpoint {
            try TransferError.bridge { () throws(VerbsError) in try request.accept(answer: [], timeout: timeout) }
        }
        func reject() { request.reject(reason: []) }
    }
}

/// An allgather among threads of one process: each member hands in its record and gets every
/// member's back, once all have; `tamper` may change what one member gets (garbage, a short
/// buffer), as a broken application's allgather would.
final class InProcessAllgather: Sendable {
    private let size: Int
    private let slots: Locked<[[UInt8]?]>
    private let tamper: @Sendable (_ rank: Int, _ all: [UInt8]) -> [UInt8]

    init(size: Int, tamper: @escaping @Sendable (Int, [UInt8]) -> [UInt8] = { $1 }) {
        self.size = size
        slots = Locked([[UInt8]?](repeating: nil, count: size))
        self.tamper = tamper
    }

    struct Incomplete: Error {}

    func gather(rank: Int, _ mine: [UInt8], timeout: Duration = .seconds(10)) throws -> [UInt8] {
        slots.withLock { $0[rank] = mine }
        let end = ContinuousClock.now.advanced(by: timeout)
        while true {
            if let all = slots.withLock({ s in s.allSatisfy { $0 != nil } ? s.flatMap { $0! } : nil }) { return tamper(rank, all) }
            if ContinuousClock.now >= end { throw Incomplete() }
            usleep(200)
        }
    }
}
