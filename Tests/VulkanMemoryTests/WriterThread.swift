import Dispatch
import Foundation
import Verbs

/// The active side: connects, reads the regions from the accept's private data and RDMA-writes
/// `pattern(index:)` into region `index`, waiting for every completion.
final class WriterThread: @unchecked Sendable {
    let host: String, port: UInt16, size: Int, count: Int
    private let written = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private var failure: Error?

    init(host: String, port: UInt16, size: Int, count: Int) {
        (self.host, self.port, self.size, self.count) = (host, port, size, count)
    }

    static func pattern(size: Int, index: Int) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 101 &+ 7) }
    }

    func start() {
        Thread.detachNewThread { [self] in
            var connection: Connection?
            do { connection = try run() } catch { failure = error }
            written.signal()
            // Stay connected until the listener side has checked the memory and hangs up.
            _ = try? connection?.waitForPeerDisconnect(timeout: .seconds(60))
            try? connection?.disconnect(timeout: .seconds(2))
            finished.signal()
        }
    }

    /// Waits until the writes completed (or failed).
    func wait(timeout seconds: Int) throws {
        guard written.wait(timeout: .now() + .seconds(seconds)) == .success else {
            throw VerbsError.timedOut(operation: "the writer thread", after: .seconds(seconds))
        }
        if let failure { throw failure }
    }

    func finish(timeout seconds: Int) { _ = finished.wait(timeout: .now() + .seconds(seconds)) }

    private func run() throws -> Connection {
        let route = try ResolvedRoute.resolve(host: host, port: port, timeout: .seconds(30))
        let pd = try ProtectionDomain(context: route.context)
        let cq = try CompletionQueue(context: route.context, capacity: 16)
        let connection = try route.prepare(pd: pd, sendCQ: cq, receiveCQ: cq).connect(timeout: .seconds(30))
        let source = try HostBuffer(count: size * count)
        for index in 0..<count {
            let bytes = Self.pattern(size: size, index: index)
            for i in 0..<size { source.bytes[index * size + i] = bytes[i] }
        }
        let region = try pd.register(source, access: .local)
        let data = connection.peerPrivateData
        for index in 0..<count {
            let remote = try RemoteBuffer(decoding: data.dropFirst(index * RemoteBuffer.encodedSize))
            try connection.queuePair.postSend(SendRequest(
                id: UInt64(index), operation: .write(remote, offset: 0),
                segment: try region.segment(offset: index * size, length: size)))
        }
        _ = try cq.collect(count, timeout: .seconds(30), mode: .busyPoll)
        return connection
    }
}
