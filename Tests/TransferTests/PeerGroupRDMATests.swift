import Foundation
import RDMATestSupport
import Sharing
import Transfer
import Verbs
import XCTest

/// Groups over rxe (the fabric): four members in one process, each with its own engine and
/// rdmacm listener on the device, bootstrapped by an in-process allgather, exchanging a ring of
/// writes; a member that goes away fails the others' work on it with a typed error within the
/// timeout; the device's resources come back to their baseline.
final class PeerGroupRDMATests: RDMATestCase {
    private func members<T: Sendable>(_ size: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
        runGroupMembers(size, timeout: 120, body)
    }

    func testARingOfWritesAmongFourMembersAndAMemberThatGoesAway() throws {
        let baseline = try baselineCounts()
        let size = 4
        let pd = self.pd!, address = env.address
        do {
            let allgather = InProcessAllgather(size: size)
            let regions = try (0..<size).map { rank -> MemoryRegion in
                let r = try pd.register(try HostBuffer(count: 1 << 20), access: [.localWrite, .remoteWrite, .remoteRead])
                for i in 0..<r.length { r.bytes![i] = UInt8(truncatingIfNeeded: i &+ rank &* 31) }
                return r
            }
            let outcomes = members(size) { rank -> Result<PeerGroup, GroupError> in
                Result { () throws(GroupError) in
                    let transport: RDMAGroupTransport
                    do throws(TransferError) { transport = try RDMAGroupTransport(pd: pd, address: address) } catch { throw GroupError.transfer(error) }
                    return try PeerGroup(rank: rank, size: size, descriptor: regions[rank].remoteBuffer.encoded, transport: transport,
                                         options: .init(timeout: .seconds(10)), timeout: .seconds(30)) { try allgather.gather(rank: rank, $0) }
                }
            }
            let groups = try outcomes.map { try $0.get() }
            for g in groups { XCTAssertEqual(g.connectedRanks.count, size - 1) }
            // Each member writes the first half of its memory into the second half of the next one's.
            let failures: [String?] = members(size) { rank -> String? in
                let g = groups[rank], next = (rank + 1) % size
                do {
                    let remote = try RemoteBuffer(decoding: g.descriptor(of: next)!)
                    try g.engine.write(to: g.peer(next)!, try regions[rank].segment(offset: 0, length: 1 << 19), remote: remote, at: 1 << 19)
                    return nil
                } catch {
                    return "member \(rank): \(error)"
                }
            }
            XCTAssertEqual(failures.compactMap { $0 }, [String]())
            for rank in 0..<size {
                let previous = (rank + size - 1) % size
                XCTAssertEqual(Array(regions[rank].bytes![(1 << 19)..<(1 << 20)]), (0..<(1 << 19)).map { UInt8(truncatingIfNeeded: $0 &+ previous &* 31) })
            }
            // Member 3 goes away: the others' writes to it fail, typed, within the timeout; to each other they go on.
            groups[3].close()
            let start = ContinuousClock.now
            let gone: [UInt8] = groups[0].descriptor(of: 3)!
            let goneRemote = try RemoteBuffer(decoding: gone)
            let goneSegment = try regions[0].segment(offset: 0, length: 4096)
            XCTAssertThrowsError(try groups[0].engine.write(to: groups[0].peer(3)!, goneSegment, remote: goneRemote,
                                                            timeout: Duration.seconds(10))) {
                guard let e = $0 as? TransferError else { return XCTFail("\($0)") }
                switch e {
                case .disconnected, .failed, .timedOut: break
                default: XCTFail("\(e)")
                }
            }
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(15))
            try groups[0].engine.write(to: groups[0].peer(1)!, try regions[0].segment(offset: 0, length: 4096),
                                       remote: try RemoteBuffer(decoding: groups[0].descriptor(of: 1)!))
            for g in groups { g.close() }
        }
        let after = try resourceCounts()
        for key in ["qp", "cq", "mr", "cm_id"] { XCTAssertEqual(after[key], baseline[key], "\(key) back to the baseline") }
    }

    /// Over rxe: each member's connections share one send and one receive completion queue (the
    /// transport's); a member removes a peer while writes to it and to another are in flight: the
    /// removed peer's flushed completions stay its own (none stray, none taken for the other's),
    /// the other's writes all complete with the right bytes, and the counts come back.
    func testPeersShareTwoCompletionQueuesAndARemovedPeersFlushesStayItsOwn() throws {
        let baseline = try baselineCounts()
        let size = 3, chunk = 64 << 10, writes = 32
        let pd = self.pd!, address = env.address
        do {
            let allgather = InProcessAllgather(size: size)
            let regions = try (0..<size).map { rank -> MemoryRegion in
                let r = try pd.register(try HostBuffer(count: chunk * writes), access: [.localWrite, .remoteWrite, .remoteRead])
                for i in 0..<r.length { r.bytes![i] = UInt8(truncatingIfNeeded: i &* 3 &+ rank &* 17) }
                return r
            }
            let outcomes = members(size) { rank -> Result<PeerGroup, GroupError> in
                Result { () throws(GroupError) in
                    let transport: RDMAGroupTransport
                    do throws(TransferError) { transport = try RDMAGroupTransport(pd: pd, address: address) } catch { throw GroupError.transfer(error) }
                    return try PeerGroup(rank: rank, size: size, descriptor: regions[rank].remoteBuffer.encoded, transport: transport,
                                         options: .init(timeout: .seconds(20)), timeout: .seconds(30)) { try allgather.gather(rank: rank, $0) }
                }
            }
            let groups = try outcomes.map { try $0.get() }
            for g in groups {
                XCTAssertEqual(g.connectedRanks.count, size - 1)
                XCTAssertEqual(g.engine.completionQueues.queues, 2, "two peers, one send and one receive queue")
            }
            // Member 0 writes its memory into members 1 and 2 at once, then removes member 1 mid-stream.
            let g = groups[0]
            let toOne = try RemoteBuffer(decoding: g.descriptor(of: 1)!), toTwo = try RemoteBuffer(decoding: g.descriptor(of: 2)!)
            var one: [PeerTicket] = [], two: [PeerTicket] = []
            for k in 0..<writes {
                let segment = try regions[0].segment(offset: k * chunk, length: chunk)
                one.append(try g.engine.postWrite(to: g.peer(1)!, segment, remote: toOne, at: UInt64(k * chunk)))
                two.append(try g.engine.postWrite(to: g.peer(2)!, segment, remote: toTwo, at: UInt64(k * chunk)))
            }
            // The removal flushes, routes and ends the peer at once; its last step, the disconnect,
            // waits for member 1's side to answer, which member 1's engine does from its progress
            // loop though it has no work on that connection (it sleeps on the connection's events).
            try g.engine.remove(g.peer(1)!, timeout: .seconds(10))
            XCTAssertFalse(g.engine.peers.contains(g.peer(1)!), "member 1 is out of the engine")
            // Member 1's engine learned of it with no call of its own: its peer 0 failed, disconnected.
            let m1 = groups[1]
            var seen: TransferError?
            for _ in 0..<100 where seen == nil {
                seen = m1.engine.failure(of: m1.peer(0)!)
                if seen == nil { usleep(50_000) }
            }
            guard case .disconnected = seen else {
                XCTFail("member 1's engine should have seen member 0 disconnect within 5 s, saw \(String(describing: seen))")
                return
            }
            for t in two { try g.engine.wait(for: t, timeout: .seconds(30)) }
            XCTAssertNil(g.engine.failure(of: g.peer(2)!))
            XCTAssertEqual(Array(regions[2].bytes!), Array(regions[0].bytes!), "member 2 got every byte")
            XCTAssertEqual(g.engine.completionQueues.stray, 0, "every completion went to its peer")
            XCTAssertThrowsError(try g.engine.wait(for: one.last!, timeout: .seconds(1)), "the removed peer's operations are gone")
            // And the queues still serve: member 0 writes to member 2 again.
            try g.engine.write(to: g.peer(2)!, try regions[0].segment(offset: 0, length: 4096), remote: toTwo)
            for g in groups { g.close() }
        }
        let after = try resourceCounts()
        for key in ["qp", "cq", "mr", "cm_id"] { XCTAssertEqual(after[key], baseline[key], "\(key) back to the baseline") }
    }
}
