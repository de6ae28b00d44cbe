import Verbs
import VerbsEmbedded

/// The server's end of an in-memory link, handed to the code under test in place of the bare
/// `InMemoryEndpoint`: every call goes to that endpoint unchanged, and each time the server
/// looks for something from the peer and waits (`processEvents`, which every spin loop of the
/// ping-pong server calls, a poll that finds nothing, and the engine's `wait...Completions`) the
/// hostile peer takes its next step (`step`). So one thread runs both ends, in an order fixed by the input:
/// the peer acts only while the server waits, as a peer on the other side of a wire does, and
/// runs are repeatable. `step` returns false once the peer's script is over and it has hung
/// up (the link is down), after which waits are the twin's own and end with the disconnect.
///
/// Only the fuzzing thread touches it (the `step` closure is not synchronized).
final class PacedEndpoint: ConnectedEndpoint, @unchecked Sendable {
    let inner: InMemoryEndpoint
    private let step: () -> Bool

    init(_ inner: InMemoryEndpoint, step: @escaping () -> Bool) {
        self.inner = inner
        self.step = step
    }

    var pd: ProtectionDomain { inner.pd }
    var sendQueueDepth: Int { inner.sendQueueDepth }
    var receiveQueueDepth: Int { inner.receiveQueueDepth }
    var sendCompletionQueue: any CompletionSource { inner.sendCompletionQueue }
    var receiveCompletionQueue: any CompletionSource { inner.receiveCompletionQueue }
    var maxInlineData: Int { inner.maxInlineData }
    var maxMessageSize: Int { inner.maxMessageSize }
    var isConnected: Bool { inner.isConnected }

    @discardableResult
    func processEvents() -> Bool {
        _ = step()
        return inner.processEvents()
    }

    func postSend(_ request: SendRequest) throws(VerbsError) { try inner.postSend(request) }
    func prepare(_ request: SendRequest) throws(VerbsError) -> any PreparedPost { try inner.prepare(request) }
    func postReceive(id: UInt64, segment: LocalSegment?) throws(VerbsError) { try inner.postReceive(id: id, segment: segment) }

    /// A poll that finds nothing is the server waiting too (its spin loops poll): the peer steps.
    func pollSendCompletions(max: Int) throws(VerbsError) -> [WorkCompletion] {
        let got = try inner.pollSendCompletions(max: max)
        if got.isEmpty { _ = step() }
        return got
    }

    func pollReceiveCompletions(max: Int) throws(VerbsError) -> [WorkCompletion] {
        let got = try inner.pollReceiveCompletions(max: max)
        if got.isEmpty { _ = step() }
        return got
    }

    func waitSendCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion] {
        while true {
            let got = try inner.pollSendCompletions(max: max)
            if !got.isEmpty { return got }
            if !step() { return try inner.waitSendCompletions(timeout: timeout, mode: mode, max: max) }
        }
    }

    func waitReceiveCompletions(timeout: Duration, mode: CompletionWaitMode, max: Int) throws(VerbsError) -> [WorkCompletion] {
        while true {
            let got = try inner.pollReceiveCompletions(max: max)
            if !got.isEmpty { return got }
            if !step() { return try inner.waitReceiveCompletions(timeout: timeout, mode: mode, max: max) }
        }
    }

    func abort() throws(VerbsError) { try inner.abort() }
    func disconnect(timeout: Duration) throws(VerbsError) { try inner.disconnect(timeout: timeout) }
}

/// Reads a fuzz input front to back; past its end every read is zero, so any input is a
/// complete script.
struct InputReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// `count` bytes (fewer at the end of the input).
    mutating func bytes(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, offset + max(0, count))
        defer { offset = end }
        return Array(bytes[offset..<end])
    }

    /// A little-endian integer of `T`'s width (zero-filled at the end of the input).
    mutating func integer<T: FixedWidthInteger & UnsignedInteger>(_: T.Type) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value |= T(byte()) << (8 * index) }
        return value
    }
}

/// The harness found a leak or a broken invariant: a trap, so libFuzzer reports the input.
func leak(_ what: String) -> Never {
    fatalError("SessionFuzzer: \(what)")
}
