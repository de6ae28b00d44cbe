#if canImport(Glibc)
import Glibc
#endif
import Verbs

/// Which members a member connects to.
public enum GroupTopology: Sendable, Equatable {
    /// Every other member.
    case allToAll
    /// These members (by rank); a pair connects when either names the other.
    case neighbours([Int])

    /// The members before and after `rank` in a ring of `size`.
    public static func ring(rank: Int, size: Int) -> GroupTopology {
        guard size > 1 else { return .neighbours([]) }
        return .neighbours(Array(Set([(rank + size - 1) % size, (rank + 1) % size])).sorted())
    }
}

/// Members of an application (an MPI job, say) connected through one `PeerEngine` each,
/// bootstrapped by an allgather the application supplies: each member listens, publishes its
/// address and a descriptor (application bytes: the memory it exposes, say) in a fixed-size
/// record, the allgather hands every member every record, and members connect all-to-all or
/// to named neighbours (the lower rank of a pair dials, the higher accepts; each member first
/// takes the connections of the lower ranks it expects, then dials the higher ones, so no
/// member waits on one that is itself waiting).
///
/// Every record is checked (length, magic, version, size, rank, lengths, neighbours) before
/// use; every wait is bounded by `timeout`; a failure is a `GroupError` naming the member and
/// leaves nothing connected (see `GroupError`).
public final class PeerGroup: Sendable {
    public let rank: Int
    public let size: Int
    /// The engine every connected member is a peer of.
    public let engine: PeerEngine
    private let members: [Int: PeerID]
    private let descriptors: [[UInt8]]

    /// The bytes one member contributes to the allgather (`allgather` gets them and must return
    /// `size` × this many: member k's at k × this).
    public static let recordSize = GroupRecord.size
    /// The longest descriptor a member may publish.
    public static let maxDescriptorBytes = GroupRecord.maxDescriptor
    /// The longest transport address.
    public static let maxAddressBytes = GroupRecord.maxAddress

    /// Forms the group.
    /// - Parameters:
    ///   - allgather: given this member's record, returns every member's, in rank order (as
    ///     `MPI_Allgather` with `recordSize` bytes per member). It may throw.
    ///   - timeout: bounds the connecting (the allgather itself is the application's).
    public init(rank: Int, size: Int, descriptor: [UInt8] = [], topology: GroupTopology = .allToAll, transport: any GroupTransport,
                options: TransferOptions = .init(), timeout: Duration = .seconds(30),
                allgather: ([UInt8]) throws -> [UInt8]) throws(GroupError) {
        guard size >= 1, size <= Int(UInt32.max), rank >= 0, rank < size else {
            throw GroupError.invalidArgument("rank \(rank) is not in a group of \(size)")
        }
        guard descriptor.count <= GroupRecord.maxDescriptor else {
            throw GroupError.invalidArgument("a descriptor of \(descriptor.count) bytes exceeds \(GroupRecord.maxDescriptor)")
        }
        var neighbours: [Int] = []
        if case let .neighbours(list) = topology {
            neighbours = Array(Set(list)).sorted()
            guard neighbours.allSatisfy({ $0 >= 0 && $0 < size && $0 != rank }) else {
                throw GroupError.invalidArgument("neighbours \(list) are not other members of a group of \(size)")
            }
            guard neighbours.count <= GroupRecord.maxNeighbours else {
                throw GroupError.invalidArgument("\(neighbours.count) neighbours exceed \(GroupRecord.maxNeighbours)")
            }
        }
        let allToAll = topology == .allToAll
        let engine: PeerEngine
        do { engine = try PeerEngine(options: options) } catch { throw GroupError.transfer(error) }
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var made: [Int: any ConnectedEndpoint] = [:]
        var listener: (any GroupListener)?
        func abandon() {
            listener?.close()
            for endpoint in made.values {
                try? endpoint.abort()
                _ = try? endpoint.pollSendCompletions(max: 64)
                _ = try? endpoint.pollReceiveCompletions(max: 64)
                try? endpoint.disconnect(timeout: .seconds(1))
            }
            engine.close()
        }
        do {
            let l: any GroupListener
            do { l = try transport.listen() } catch { throw GroupError.transfer(error) }
            listener = l
            guard !l.address.isEmpty, l.address.count <= GroupRecord.maxAddress else {
                throw GroupError.invalidArgument("the transport's address of \(l.address.count) bytes is outside 1...\(GroupRecord.maxAddress)")
            }
            let nonce = UInt64.random(in: .min ... .max)
            let mine = GroupRecord(rank: rank, groupSize: size, nonce: nonce, address: l.address, descriptor: descriptor,
                                   allToAll: allToAll, neighbours: allToAll ? [] : neighbours)
            let records = try Self.gather(mine, size: size, allgather)

            // A pair connects when both are all-to-all, or when either names the other.
            func linked(_ i: Int, _ j: Int) -> Bool {
                (records[i].allToAll && records[j].allToAll) || records[i].neighbours.contains(j) || records[j].neighbours.contains(i)
            }
            let groupNonce = records[0].nonce
            let lower = (0..<rank).filter { linked($0, rank) }
            let higher = (rank + 1..<size).filter { linked(rank, $0) }

            // Accept the lower ranks this member expects, in whatever order they come.
            var waiting = Set(lower)
            while !waiting.isEmpty {
                let left = deadline - .now
                if left <= .zero { throw GroupError.noAnswer(members: waiting.sorted(), after: timeout) }
                let request: (any GroupRequest)?
                do { request = try l.next(timeout: min(left, .milliseconds(200))) } catch { throw GroupError.transfer(error) }
                guard let request else { continue }
                guard let hello = GroupRecord.readHello(request.hello), hello.nonce == groupNonce, waiting.contains(hello.rank) else {
                    request.reject()  // not of this group, not expected, or a second dial of one already connected
                    continue
                }
                do {
                    made[hello.rank] = try request.accept(timeout: max(deadline - .now, .milliseconds(1)))
                } catch {
                    throw GroupError.unreachable(member: hello.rank, error)
                }
                waiting.remove(hello.rank)
            }
            // Dial the higher ranks.
            let hello = GroupRecord.hello(nonce: groupNonce, rank: rank)
            for j in higher {
                let left = deadline - .now
                if left <= .zero { throw GroupError.unreachable(member: j, .timedOut(operation: "connecting to member \(j)", after: timeout)) }
                do {
                    made[j] = try transport.dial(records[j].address, hello: hello, timeout: left)
                } catch {
                    throw GroupError.unreachable(member: j, error)
                }
            }
            l.close()
            listener = nil
            var members: [Int: PeerID] = [:]
            for (r, endpoint) in made.sorted(by: { $0.key < $1.key }) {
                do { members[r] = try engine.add(endpoint, name: "member \(r)") } catch { throw GroupError.transfer(error) }
            }
            self.rank = rank
            self.size = size
            self.engine = engine
            self.members = members
            descriptors = records.map(\.descriptor)
        } catch let error as GroupError {
            abandon()
            throw error
        } catch {
            abandon()
            throw GroupError.transfer(.invalidArgument("\(error)"))
        }
    }

    /// Runs the allgather and checks what came back, member by member.
    private static func gather(_ mine: GroupRecord, size: Int,
                               _ allgather: ([UInt8]) throws -> [UInt8]) throws(GroupError) -> [GroupRecord] {
        let encoded = mine.encoded()
        let all: [UInt8]
        do { all = try allgather(encoded) } catch { throw GroupError.allgather("the application's allgather threw: \(error)") }
        guard all.count == size * GroupRecord.size else {
            throw GroupError.allgather("it returned \(all.count) bytes; \(size) members of \(GroupRecord.size) bytes are \(size * GroupRecord.size)")
        }
        var out: [GroupRecord] = []
        var claimed: [Int: [Int]] = [:]
        for k in 0..<size {
            switch GroupRecord.decode(all[k * GroupRecord.size..<(k + 1) * GroupRecord.size], groupSize: size) {
            case let .failure(problem): throw GroupError.badRecord(member: k, problem.text)
            case let .success(record):
                claimed[record.rank, default: []].append(k)
                out.append(record)
            }
        }
        if let (rank, slots) = claimed.first(where: { $0.value.count > 1 }) { throw GroupError.duplicateRank(rank, members: slots.sorted()) }
        for (k, r) in out.enumerated() where r.rank != k {
            throw GroupError.badRecord(member: k, "it claims rank \(r.rank) at position \(k)")
        }
        guard Array(all[mine.rank * GroupRecord.size..<(mine.rank + 1) * GroupRecord.size]) == encoded else {
            throw GroupError.badRecord(member: mine.rank, "the allgather did not return this member's own record in its place")
        }
        return out
    }

    /// The engine's peer for member `rank`, nil when this member is not connected to it.
    public func peer(_ rank: Int) -> PeerID? { members[rank] }

    /// The members this one is connected to.
    public var connectedRanks: [Int] { members.keys.sorted() }

    /// The member of `peer`.
    public func rank(of peer: PeerID) -> Int? { members.first { $0.value == peer }?.key }

    /// What member `rank` published in the allgather.
    public func descriptor(of rank: Int) -> [UInt8]? {
        guard rank >= 0, rank < descriptors.count else { return nil }
        return descriptors[rank]
    }

    /// Disconnects every member and stops the engine.
    public func close() { engine.close() }
}
