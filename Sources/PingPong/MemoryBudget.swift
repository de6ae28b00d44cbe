import Sharing
import Synchronization
import Verbs

/// The memory a server may commit to its sessions' buffers, checked before anything is allocated.
///
/// Every admitted request is charged what its session will allocate (`cost`) and gets a
/// `MemoryBudget.Reservation`; the bytes come back when the reservation is released (at the
/// latest when it is deallocated). A charge above `perRequest`, or above what is left of
/// `total`, is refused. Safe to use from any thread.
public final class MemoryBudget: Sendable {
    /// Bytes all sessions together may hold.
    public let total: Int
    /// Bytes one session may hold.
    public let perRequest: Int
    private let used = Locked<Int>(0)

    /// `perRequest` defaults to `total`. Both must be positive, and `perRequest` at most `total`.
    public init(total: Int, perRequest: Int? = nil) throws(PingPongError) {
        let cap = perRequest ?? total
        guard total > 0, cap > 0, cap <= total else {
            throw .verbs(.invalidArgument("a memory budget needs 0 < per-request (\(cap)) <= total (\(total)) bytes"))
        }
        self.total = total
        self.perRequest = cap
    }

    /// Bytes charged now.
    public var inUse: Int { used.withLock { $0 } }

    /// What a session for `bufferSize`-byte messages allocates: two buffer halves and the two
    /// mailboxes. `bufferSize` is at most 1 GiB (the handshake checks it), so this never overflows.
    static func cost(bufferSize: Int) -> Int { 2 * bufferSize + 2 * Peer.mailboxSize }

    /// Why a charge was refused; the description goes into the reject's private data, so it is short.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case overPerRequest(needed: Int, cap: Int)
        case exhausted(needed: Int, free: Int, total: Int)

        public var description: String {
            switch self {
            case let .overPerRequest(needed, cap):
                return "over memory budget: needs \(needed) bytes, at most \(cap) per client"
            case let .exhausted(needed, free, total):
                return "over memory budget: needs \(needed) bytes, \(free) of \(total) free"
            }
        }
    }

    /// Charges `bytes` (at least 0), or refuses without charging anything.
    public func charge(_ bytes: Int) throws(Refusal) -> Reservation {
        let needed = max(0, bytes)
        if needed > perRequest { throw .overPerRequest(needed: needed, cap: perRequest) }
        let refusal: Refusal? = used.withLock { used in
            let free = total - used
            guard needed <= free else { return .exhausted(needed: needed, free: free, total: total) }
            used += needed
            return nil
        }
        if let refusal { throw refusal }
        return Reservation(budget: self, bytes: needed)
    }

    fileprivate func refund(_ bytes: Int) { used.withLock { $0 -= bytes } }

    /// Bytes charged to one session; `release` (or deallocation) gives them back, once.
    public final class Reservation: Sendable {
        public let bytes: Int
        private let budget: MemoryBudget
        private let released = Atomic<Bool>(false)

        fileprivate init(budget: MemoryBudget, bytes: Int) {
            self.budget = budget
            self.bytes = bytes
        }

        /// Gives the bytes back; later calls do nothing.
        public func release() {
            if !released.exchange(true, ordering: .acquiringAndReleasing) { budget.refund(bytes) }
        }

        deinit { release() }
    }
}
