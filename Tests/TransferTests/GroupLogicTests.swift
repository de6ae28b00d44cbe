import Foundation
import Sharing
@testable import Transfer
import Verbs
import VerbsEmbedded
import XCTest

/// Groups on the in-memory twin: members on threads of one process, bootstrapped by an
/// in-process allgather; all-to-all and ring; and the bad inputs (a short or garbled
/// allgather, a duplicate rank, a member that never answers), each a typed error naming the
/// member, within the timeout, with nothing left connected.
final class GroupLogicTests: XCTestCase {
    private func members<T: Sendable>(_ size: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
        runGroupMembers(size, timeout: 60, body)
    }

    private static func descriptor(_ rank: Int) -> [UInt8] { Array("member \(rank)".utf8) }

    func testSixMembersConnectAllToAllAndExchangeMessages() throws {
        let size = 6
        let transport = InMemoryGroupTransport()
        let allgather = InProcessAllgather(size: size)
        let outcomes = members(size) { rank -> Result<PeerGroup, GroupError> in
            Result { () throws(GroupError) in
                try PeerGroup(rank: rank, size: size, descriptor: Self.descriptor(rank), transport: transport,
                              options: .init(timeout: .seconds(10)), timeout: .seconds(20)) { try allgather.gather(rank: rank, $0) }
            }
        }
        let groups = try outcomes.map { try $0.get() }
        for g in groups {
            XCTAssertEqual(g.connectedRanks, (0..<size).filter { $0 != g.rank })
            for r in 0..<size { XCTAssertEqual(g.descriptor(of: r), Self.descriptor(r)) }
        }
        // Every member sends its rank to every other; each receives one message from each.
        let failures = members(size) { rank -> String? in
            let g = groups[rank]
            do {
                let pdBuffers = try g.connectedRanks.map { r -> (Int, MemoryRegion) in
                    let peer = g.peer(r)!
                    let endpointPD = try g.engine.registrationCache(for: peer).pd
                    return (r, try endpointPD.register(try HostBuffer(count: 64), access: .localWrite))
                }
                for (r, region) in pdBuffers { try g.engine.postReceive(from: g.peer(r)!, try region.segment()) }
                Thread.sleep(forTimeInterval: 0.05)
                for r in g.connectedRanks { try g.engine.send(to: g.peer(r)!, nil, immediate: UInt32(rank)) }
                for r in g.connectedRanks {
                    let a = try g.engine.nextArrival(from: g.peer(r)!, timeout: .seconds(10))
                    if a.immediate != UInt32(r) { return "member \(rank) got \(String(describing: a.immediate)) from \(r)" }
                }
                return nil
            } catch {
                return "member \(rank): \(error)"
            }
        }
        XCTAssertEqual(failures.compactMap { $0 }, [])
        for g in groups { g.close() }
        for l in transport.listeners {
            for link in l.links { XCTAssertFalse(link.a.isConnected || link.b.isConnected) }
        }
    }

    func testARingConnectsOnlyNeighbours() throws {
        let size = 5
        let transport = InMemoryGroupTransport()
        let allgather = InProcessAllgather(size: size)
        let groups = try members(size) { rank -> Result<PeerGroup, GroupError> in
            Result { () throws(GroupError) in
                try PeerGroup(rank: rank, size: size, topology: .ring(rank: rank, size: size), transport: transport,
                              timeout: .seconds(20)) { try allgather.gather(rank: rank, $0) }
            }
        }.map { try $0.get() }
        for g in groups { XCTAssertEqual(g.connectedRanks, [(g.rank + size - 1) % size, (g.rank + 1) % size].sorted()) }
        XCTAssertEqual(transport.listeners.reduce(0) { $0 + $1.links.count }, size, "one connection per ring edge")
        for g in groups { g.close() }
    }

    /// Runs a group of `size` whose allgather is `allgather`; members listed in `silent` take part
    /// in the allgather and then never connect. Returns each other member's error.
    private func failingGroup(size: Int, silent: Set<Int> = [], timeout: Duration = .seconds(2),
                              allgather: InProcessAllgather) -> (errors: [Int: GroupError], transport: InMemoryGroupTransport) {
        let transport = InMemoryGroupTransport()
        let outcomes = members(size) { rank -> GroupError? in
            if silent.contains(rank) {
                // Listens and publishes its address, then never takes a connection (a rank that died).
                guard let listener = try? transport.listen() else { return nil }
                let record = GroupRecord(rank: rank, groupSize: size, nonce: 1, address: listener.address, descriptor: [],
                                         allToAll: true, neighbours: [])
                _ = try? allgather.gather(rank: rank, record.encoded())
                Thread.sleep(forTimeInterval: Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18 + 0.5)
                listener.close()
                return nil
            }
            do throws(GroupError) {
                let g = try PeerGroup(rank: rank, size: size, transport: transport, timeout: timeout) { try allgather.gather(rank: rank, $0) }
                g.close()
                return nil
            } catch {
                return error
            }
        }
        var errors: [Int: GroupError] = [:]
        for (rank, e) in outcomes.enumerated() { if let e { errors[rank] = e } }
        return (errors, transport)
    }

    private func assertNothingLeft(_ transport: InMemoryGroupTransport, file: StaticString = #filePath, line: UInt = #line) {
        for l in transport.listeners {
            XCTAssertTrue(l.unreachable, "every listener closed", file: file, line: line)
            for link in l.links {
                XCTAssertFalse(link.a.isConnected || link.b.isConnected, "nothing left connected", file: file, line: line)
                let left = link.finish()
                XCTAssertEqual(left.a.registeredRegions + left.b.registeredRegions, 0, "nothing left registered", file: file, line: line)
                XCTAssertEqual(left.a.postedReceives + left.b.postedReceives, 0, file: file, line: line)
            }
        }
    }

    func testAShortAllgatherIsATypedError() {
        let (errors, transport) = failingGroup(size: 3, allgather: InProcessAllgather(size: 3) { rank, all in
            rank == 1 ? Array(all.prefix(all.count - 5)) : all
        })
        guard case .allgather? = errors[1] else { return XCTFail("\(errors)") }
        assertNothingLeft(transport)
    }

    func testGarbageInAMembersRecordNamesThatMember() {
        let (errors, transport) = failingGroup(size: 4, allgather: InProcessAllgather(size: 4) { _, all in
            var all = all
            all[2 * PeerGroup.recordSize + 6] = 0xFF  // member 2's address length: 0x??FF, beyond the limit
            all[2 * PeerGroup.recordSize + 7] = 0xFF
            return all
        })
        XCTAssertEqual(errors.count, 4)
        for (_, e) in errors {
            guard case .badRecord(member: 2, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(e.member, 2)
        }
        assertNothingLeft(transport)
    }

    func testADuplicateRankIsRefused() {
        let (errors, transport) = failingGroup(size: 3, allgather: InProcessAllgather(size: 3) { _, all in
            var all = all
            // Member 2's record claims rank 1.
            all[2 * PeerGroup.recordSize + 8] = 1
            return all
        })
        XCTAssertEqual(errors.count, 3)
        for (_, e) in errors { XCTAssertEqual(e, .duplicateRank(1, members: [1, 2])) }
        assertNothingLeft(transport)
    }

    func testAThrowingAllgatherIsATypedError() {
        struct Broken: Error {}
        let transport = InMemoryGroupTransport()
        XCTAssertThrowsError(try PeerGroup(rank: 0, size: 2, transport: transport, timeout: .seconds(1)) { _ in throw Broken() }) {
            guard case .allgather = $0 as? GroupError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try PeerGroup(rank: 2, size: 2, transport: transport) { $0 }) {
            guard case .invalidArgument = $0 as? GroupError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try PeerGroup(rank: 0, size: 3, topology: .neighbours([0]), transport: transport) { $0 }) {
            guard case .invalidArgument = $0 as? GroupError else { return XCTFail("\($0)") }
        }
        assertNothingLeft(transport)
    }

    func testAMemberThatNeverAnswersIsNamedWithinTheTimeout() {
        let start = ContinuousClock.now
        let (errors, transport) = failingGroup(size: 4, silent: [2], timeout: .milliseconds(800), allgather: InProcessAllgather(size: 4))
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(10))
        // Members 0 and 1 dial member 2 and get no answer; member 3 waits for 2 to dial it.
        for rank in [0, 1] {
            guard case .unreachable(member: 2, .timedOut)? = errors[rank] else { return XCTFail("member \(rank): \(String(describing: errors[rank]))") }
        }
        // Member 3 waits for 0, 1 and 2 to dial it; 0 and 1 gave up on 2 first.
        guard case let .noAnswer(missing, _)? = errors[3] else { return XCTFail("member 3: \(String(describing: errors[3]))") }
        XCTAssertTrue(missing.contains(2), "\(missing)")
        assertNothingLeft(transport)
    }

    func testRecordsRoundTripAndRejectHostileFields() {
        let r = GroupRecord(rank: 3, groupSize: 9, nonce: 0xDEAD_BEEF, address: [1, 2, 3], descriptor: [9, 9], allToAll: false, neighbours: [2, 4])
        XCTAssertEqual(try GroupRecord.decode(r.encoded()[...], groupSize: 9).get(), r)
        var bad = r.encoded()
        bad[26] = 0xFF; bad[27] = 0xFF
        guard case .failure = GroupRecord.decode(bad[...], groupSize: 9) else { return XCTFail("neighbour count") }
        guard case .failure = GroupRecord.decode(r.encoded()[...], groupSize: 8) else { return XCTFail("group size") }
        guard case .failure = GroupRecord.decode(r.encoded().dropLast()[...], groupSize: 9) else { return XCTFail("length") }
        var selfNeighbour = r
        selfNeighbour.neighbours = [3]
        guard case .failure = GroupRecord.decode(selfNeighbour.encoded()[...], groupSize: 9) else { return XCTFail("itself") }
        XCTAssertEqual(GroupRecord.readHello(GroupRecord.hello(nonce: 7, rank: 5) + [0, 0, 0])?.rank, 5)
        XCTAssertNil(GroupRecord.readHello([1, 2, 3]))
    }
}
