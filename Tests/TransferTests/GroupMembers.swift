import Foundation
import Sharing
import XCTest

/// Runs `body(rank)` for every rank of a group of `size` members, each on its own thread, all at
/// once (a group's members block on each other while they connect); returns each one's result.
/// Fails the test if they have not all finished within `timeout`.
func runGroupMembers<T: Sendable>(_ size: Int, timeout: Double, _ body: @escaping @Sendable (Int) -> T) -> [T] {
    let results = Locked([T?](repeating: nil, count: size))
    let done = DispatchGroup()
    for rank in 0..<size {
        done.enter()
        Thread.detachNewThread {
            let r = body(rank)
            results.withLock { $0[rank] = r }
            done.leave()
        }
    }
    guard done.wait(timeout: .now() + timeout) == .success else {
        XCTFail("the group's \(size) members did not all finish within \(timeout) s")
        return results.withLock { $0.compactMap { $0 } }
    }
    return results.withLock { $0.map { $0! } }
}
