#if canImport(Glibc)
import Glibc
#endif
import Verbs
import VerbsEmbedded

/// The fuzzer's end of an in-memory link (`link.a`): a client or sender that does what the
/// input says, through the twin's work requests, as a peer across a wire would. Its memory is
/// `dataSize` bytes it sends from and lets the server write into and read from, then
/// `scratchSize` bytes where it stages what it writes into the server's mailbox.
final class HostilePeer {
    static let dataSize = 8192
    static let scratchSize = 64

    let link: InMemoryLink
    var endpoint: InMemoryEndpoint { link.a }
    private(set) var region: MemoryRegion?
    private(set) var mailbox: MemoryRegion?
    private(set) var hungUp = false
    private var nextID: UInt64 = 0

    /// A link whose end `a` completes into queues deeper than any input can fill: the hostile
    /// peer stands for a machine across the wire, whose completion queue sizing is not the
    /// server's to keep (it posts receives and lets completions pile up as the input says); a
    /// queue of its own that overran could not be emptied in `finish`, and would hide what the
    /// server's end left behind.
    static func link(sendQueueDepth: Int, receiveQueueDepth: Int) -> InMemoryLink {
        InMemoryLink(sendQueueDepth: sendQueueDepth, receiveQueueDepth: receiveQueueDepth,
                     sendCompletions: InMemoryCompletionQueue(capacity: 1 << 16),
                     receiveCompletions: InMemoryCompletionQueue(capacity: 1 << 16))
    }

    init(link: InMemoryLink) {
        self.link = link
        do {
            region = try link.a.pd.register(try HostBuffer(count: Self.dataSize + Self.scratchSize),
                                            access: [.localWrite, .remoteWrite, .remoteRead])
            mailbox = try link.a.pd.register(try HostBuffer(count: 64), access: [.localWrite, .remoteWrite])
        } catch {
            leak("the hostile peer's memory cannot be registered: \(error)")
        }
    }

    /// The data bytes (then the scratch bytes).
    var bytes: UnsafeMutableRawPointer { region!.hostAddress! }

    /// Posts `operation` from `length` bytes at `offset` of the peer's memory (no segment when
    /// empty), signaled, and takes whatever completions are there. A post the endpoint refuses
    /// (a full queue) is dropped: a hostile peer's mistakes are its own.
    func post(_ operation: SendOperation, offset: Int = 0, length: Int) {
        guard let region, !hungUp else { return }
        nextID += 1
        var segment: LocalSegment?
        if length > 0 { segment = try? region.segment(offset: offset, length: length) }
        _ = try? endpoint.postSend(SendRequest(id: nextID, operation: operation, segment: segment))
        reap()
    }

    /// Posts up to `count` receives into the data bytes (for the server's sends and writes with immediate).
    func postReceives(_ count: Int) {
        guard let region, !hungUp else { return }
        for _ in 0..<count {
            nextID += 1
            _ = try? endpoint.postReceive(id: nextID, segment: try? region.segment(offset: 0, length: Self.dataSize))
        }
    }

    /// Takes the completions that are there; the peer does not care how its requests went.
    func reap() {
        while let got = try? endpoint.pollSendCompletions(max: 64), !got.isEmpty {}
        while let got = try? endpoint.pollReceiveCompletions(max: 64), !got.isEmpty {}
    }

    /// Drives this end to the error state (everything outstanding flushes).
    func flush() { link.inject(.flush, on: .a) }

    /// The link goes down; both ends see it at their next event read.
    func hangUp() {
        guard !hungUp else { return }
        hungUp = true
        link.inject(.disconnect)
    }

    /// After the session: hangs up, takes what both ends still hold in their queues (what
    /// destroying the queue pairs and completion queues discards) and releases this end's
    /// memory. What the link still holds after that is the server's leak: memory it kept
    /// registered, requests of its own left pending, completions or receives it kept producing.
    func finish(_ what: String) {
        hangUp()
        endpoint.processEvents()
        reap()
        link.b.processEvents()
        while let got = try? link.b.pollSendCompletions(max: 64), !got.isEmpty {}
        while let got = try? link.b.pollReceiveCompletions(max: 64), !got.isEmpty {}
        region = nil
        mailbox = nil
        var left = link.finish()
        // Unsignaled requests that succeeded with no signaled one after them stay unretired; with
        // their queue pair gone they hold nothing.
        left.a.unretiredSends = 0
        left.b.unretiredSends = 0
        if !left.isEmpty { leak("\(what) left \(link.finish())") }
    }
}
