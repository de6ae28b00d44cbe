/// Why a `PeerGroup` could not be formed; every case that concerns one member names it (by
/// rank). When one is thrown nothing the attempt made is left: the listener is closed, every
/// connection made so far is flushed and disconnected, the group's engine is closed.
public enum GroupError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The caller's arguments (rank, size, descriptor, neighbours) do not make a group.
    case invalidArgument(String)
    /// The allgather threw, or returned the wrong number of bytes.
    case allgather(String)
    /// Member `member`'s record in the allgather's result is not a record of this group.
    case badRecord(member: Int, String)
    /// Two records claim the same rank.
    case duplicateRank(Int, members: [Int])
    /// Dialing `member` failed (refused, unreachable, or no answer within the timeout).
    case unreachable(member: Int, TransferError)
    /// These members were to connect to this one and had not within `after`.
    case noAnswer(members: [Int], after: Duration)
    /// The transport or the engine failed outside any one member.
    case transfer(TransferError)

    public var description: String {
        switch self {
        case let .invalidArgument(text): return "invalid group argument: \(text)"
        case let .allgather(text): return "the allgather failed: \(text)"
        case let .badRecord(member, text): return "member \(member)'s record is invalid: \(text)"
        case let .duplicateRank(rank, members): return "rank \(rank) is claimed by the records at \(members.map(String.init).joined(separator: ", "))"
        case let .unreachable(member, error): return "member \(member) could not be reached: \(error)"
        case let .noAnswer(members, after):
            return "member\(members.count == 1 ? "" : "s") \(members.map(String.init).joined(separator: ", ")) did not connect within \(after)"
        case let .transfer(error): return "group transport: \(error)"
        }
    }

    /// The member an error names, when it names one.
    public var member: Int? {
        switch self {
        case let .badRecord(m, _), let .unreachable(m, _): return m
        case let .duplicateRank(r, _): return r
        case let .noAnswer(ms, _): return ms.first
        case .invalidArgument, .allgather, .transfer: return nil
        }
    }
}
