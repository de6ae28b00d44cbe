import Dispatch
@testable import PingPong
import XCTest

/// The server's memory budget: charge, refuse, return, and many threads at once.
final class MemoryBudgetTests: XCTestCase {
    func testChargeRefuseAndReturn() throws {
        let budget = try MemoryBudget(total: 1000, perRequest: 600)
        let first = try budget.charge(600)
        XCTAssertEqual(budget.inUse, 600)
        XCTAssertThrowsError(try budget.charge(601)) { XCTAssertEqual($0 as? MemoryBudget.Refusal, .overPerRequest(needed: 601, cap: 600)) }
        XCTAssertThrowsError(try budget.charge(401)) {
            XCTAssertEqual($0 as? MemoryBudget.Refusal, .exhausted(needed: 401, free: 400, total: 1000))
            XCTAssertTrue("\($0)".hasPrefix("over memory budget"), "\($0)")
        }
        XCTAssertEqual(budget.inUse, 600, "a refusal charges nothing")
        let second = try budget.charge(400)
        XCTAssertEqual(budget.inUse, 1000)
        first.release()
        first.release()
        XCTAssertEqual(budget.inUse, 400, "a reservation is returned once, however often released")
        do {
            let dropped = try budget.charge(600)
            XCTAssertEqual(dropped.bytes, 600)
        }
        XCTAssertEqual(budget.inUse, 400, "a reservation dropped unreleased is returned too")
        second.release()
        XCTAssertEqual(budget.inUse, 0)
        XCTAssertThrowsError(try MemoryBudget(total: 0))
        XCTAssertThrowsError(try MemoryBudget(total: 10, perRequest: 11))
        XCTAssertEqual(try MemoryBudget(total: 10).perRequest, 10, "the per-request cap defaults to the total")
    }

    /// What a session costs: both buffer halves and both mailboxes; the default budget serves
    /// messages up to just under 128 MiB.
    func testCostOfASession() throws {
        XCTAssertEqual(MemoryBudget.cost(bufferSize: 4096), 8192 + 2 * Peer.mailboxSize)
        let budget = try MemoryBudget(total: PingPongServer.defaultMaxMemory)
        XCTAssertNoThrow(try budget.charge(MemoryBudget.cost(bufferSize: 64 << 20)))
        XCTAssertThrowsError(try budget.charge(MemoryBudget.cost(bufferSize: 128 << 20)))
        XCTAssertThrowsError(try budget.charge(MemoryBudget.cost(bufferSize: 1 << 30)), "the largest request")
    }

    func testConcurrentChargesNeverExceedTheTotalAndAllReturn() throws {
        let budget = try MemoryBudget(total: 10_000, perRequest: 100)
        final class Counts: @unchecked Sendable {
            let lock = NSLock()
            var granted = 0, refused = 0, peak = 0
        }
        let counts = Counts()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for i in 0..<5_000 {
                do {
                    let reservation = try budget.charge(1 + i % 100)
                    let now = budget.inUse
                    counts.lock.withLock { counts.granted += 1; counts.peak = max(counts.peak, now) }
                    if i % 3 == 0 { reservation.release() }
                } catch {
                    counts.lock.withLock { counts.refused += 1 }
                }
            }
        }
        XCTAssertEqual(counts.granted + counts.refused, 40_000)
        XCTAssertGreaterThan(counts.granted, 0)
        XCTAssertLessThanOrEqual(counts.peak, 10_000)
        XCTAssertEqual(budget.inUse, 0, "every charge was returned")
    }
}
