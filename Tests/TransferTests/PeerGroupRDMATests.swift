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
}
