import Dispatch
import Foundation
@testable import Transfer
import Verbs
import VerbsEmbedded
import XCTest

/// The many-peer engine on the in-memory twin, at host speed: many peers on one engine (one
/// thread), peers added and removed while others work, a peer that dies failing only its own
/// work, completions reordered across queue pairs, the sync and async APIs over one core,
/// arrivals as an AsyncSequence per peer, the registration cache on the path, and nothing left
/// on any link after close.
final class PeerEngineLogicTests: XCTestCase {
    /// One link: this side's memory (the engine's end, a) and the far side's (b).
    private struct Link {
        let link: InMemoryLink
        let source: MemoryRegion
        let target: MemoryRegion
    }

    private func link(size: Int = 1 << 16, depth: Int = 128, seed: Int = 0) throws -> Link {
        let link = InMemoryLink(sendQueueDepth: depth)
        let source = try link.a.pd.register(try HostBuffer(count: size), access: [.localWrite, .remoteWrite, .remoteRead])
        let target = try link.b.pd.register(try HostBuffer(count: size), access: [.localWrite, .remoteWrite, .remoteRead])
        for i in 0..<size { source.bytes![i] = UInt8(truncatingIfNeeded: i &* 7 &+ seed &* 13 &+ 1) }
        return Link(link: link, source: source, target: target)
    }

    private let options = TransferOptions(window: 16, signalInterval: 4, maxChunk: 4096, timeout: .seconds(10))

    /// Progress threads of this process, found by name: other tests' threads may start or end
    /// meanwhile, so the process's whole thread count says nothing.
    private func threadCount() -> Int {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return -1 }
        return tasks.filter { tid in
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)) ?? ""
            return comm.trimmingCharacters(in: .whitespacesAndNewlines) == ProgressLoop.threadName
        }.count
    }

    func testEightPeersOnOneEngineMoveTheirOwnBytes() throws {
        let engine = try PeerEngine(options: options)
        let links = try (0..<8).map { try link(seed: $0) }
        let peers = try links.enumerated().map { try engine.add($0.element.link.a, name: "link \($0.offset)") }
        XCTAssertEqual(engine.peers, peers)
        // Post on every peer before waiting on any: the loop retires them all.
        var tickets: [PeerTicket] = []
        for (i, l) in links.enumerated() {
            for k in 0..<8 {
                tickets.append(try engine.postWrite(to: peers[i], try l.source.segment(offset: k * 8192, length: 8192),
                                                    remote: l.target.remoteBuffer, at: UInt64(k * 8192)))
            }
        }
        for t in tickets { try engine.wait(for: t) }
        for l in links { XCTAssertEqual(Array(l.target.bytes!), Array(l.source.bytes!)) }
        // Reads back from every peer into fresh memory.
        for (i, l) in links.enumerated() {
            let back = try l.link.a.pd.register(try HostBuffer(count: 5000), access: .localWrite)
            try engine.read(from: peers[i], into: try back.segment(), remote: l.target.remoteBuffer, at: 300)
            XCTAssertEqual(Array(back.bytes!), Array(l.source.bytes![300..<5300]))
        }
        engine.close()
        for l in links { XCTAssertTrue(l.link.finish().a.pendingSends == 0 && l.link.finish().a.unretiredSends == 0, "\(l.link.finish())") }
    }

    func testOneThreadServesEveryPeer() throws {
        let before = threadCount()
        let engine = try PeerEngine(options: options)
        let withEngine = threadCount()
        let links = try (0..<16).map { _ in try link(size: 4096) }
        let peers = try links.map { try engine.add($0.link.a) }
        for (i, l) in links.enumerated() { try engine.write(to: peers[i], try l.source.segment(), remote: l.target.remoteBuffer) }
        XCTAssertEqual(withEngine - before, 1, "the engine runs one progress thread")
        XCTAssertEqual(threadCount(), withEngine, "sixteen peers and their transfers start no thread")
        engine.close()
    }

    func testPeersAddedAndRemovedWhileOthersWork() async throws {
        let engine = try PeerEngine(options: options)
        let a = try link(seed: 1), b = try link(seed: 2), c = try link(seed: 3)
        let pa = try engine.add(a.link.a), pb = try engine.add(b.link.a)
        b.link.hold(.a)  // b's writes stay outstanding
        let stuck = try engine.postWrite(to: pb, try b.source.segment(offset: 0, length: 4096), remote: b.target.remoteBuffer)
        async let waiter: Void = engine.completion(of: stuck, timeout: .seconds(5))
        let writer = Task {
            for k in 0..<64 {
                try await engine.write(to: pa, try a.source.segment(offset: k * 1024, length: 1024), remote: a.target.remoteBuffer,
                                       at: UInt64(k * 1024))
            }
        }
        while engine.waiters(on: pb) == 0 { try await Task.sleep(for: .milliseconds(1)) }
        try engine.remove(pb, timeout: .seconds(1))
        do {
            try await waiter
            XCTFail("a removed peer's operation cannot complete")
        } catch {
            guard case .disconnected? = error as? TransferError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try engine.postSend(to: pb, nil)) { guard case .invalidArgument = $0 as? TransferError else { return XCTFail("\($0)") } }
        let pc = try engine.add(c.link.a)
        try await engine.write(to: pc, try c.source.segment(), remote: c.target.remoteBuffer)
        try await writer.value
        XCTAssertEqual(Array(a.target.bytes!), Array(a.source.bytes!))
        XCTAssertEqual(Array(c.target.bytes!), Array(c.source.bytes!))
        XCTAssertEqual(engine.peers, [pa, pc])
        XCTAssertNotEqual(pc, pb, "identities are not reused")
        let left = b.link.finish().a
        XCTAssertEqual(left.unpolledSendCompletions, 0, "the removed peer's flushes were taken: \(left)")
        XCTAssertFalse(b.link.a.isConnected)
        engine.close()
    }

    func testAPeerThatDiesFailsOnlyItsOwnWorkWithATypedError() throws {
        let engine = try PeerEngine(options: options)
        let links = try (0..<4).map { try link(seed: $0) }
        let peers = try links.map { try engine.add($0.link.a) }
        links[2].link.hold(.a)
        let doomed = try engine.postWrite(to: peers[2], try links[2].source.segment(offset: 0, length: 8192), remote: links[2].target.remoteBuffer)
        let start = ContinuousClock.now
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) { links[2].link.inject(.disconnect) }
        XCTAssertThrowsError(try engine.wait(for: doomed, timeout: .seconds(5))) {
            guard case .disconnected = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5), "the failure comes before the timeout")
        guard case .disconnected? = engine.failure(of: peers[2]) else { return XCTFail("\(String(describing: engine.failure(of: peers[2])))") }
        // The others go on.
        for i in [0, 1, 3] {
            try engine.write(to: peers[i], try links[i].source.segment(), remote: links[i].target.remoteBuffer)
            XCTAssertNil(engine.failure(of: peers[i]))
            XCTAssertEqual(Array(links[i].target.bytes!), Array(links[i].source.bytes!))
        }
        // A remote access error on another peer is that peer's, typed.
        let closed = try links[3].link.b.pd.register(try HostBuffer(count: 4096), access: .localWrite)
        XCTAssertThrowsError(try engine.write(to: peers[3], try links[3].source.segment(offset: 0, length: 64), remote: closed.remoteBuffer)) {
            guard case .failed(_, .remoteAccessError, _) = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        try engine.write(to: peers[0], try links[0].source.segment(offset: 0, length: 64), remote: links[0].target.remoteBuffer)
        engine.close()
    }

    func testCompletionsReorderedAcrossQueuePairsFinishTheirOwnOperations() throws {
        let engine = try PeerEngine(options: options)
        let links = try (0..<4).map { try link(seed: $0) }
        let peers = try links.map { try engine.add($0.link.a) }
        for l in links { l.link.holdCompletions(.a) }
        let tickets = try links.enumerated().map { i, l in
            try engine.postWrite(to: peers[i], try l.source.segment(offset: 0, length: 12000), remote: l.target.remoteBuffer)
        }
        // Completions come back last link first; each wait sees its own.
        for i in (0..<4).reversed() {
            links[i].link.deliverCompletions(.a, queue: .send)
            try engine.wait(for: tickets[i], timeout: .seconds(2))
            for j in 0..<i {
                XCTAssertEqual(engine.outstanding(on: peers[j]), 1, "link \(j)'s completion has not come")
            }
        }
        XCTAssertThrowsError(try engine.wait(for: PeerTicket(peer: peers[0], ticket: Ticket(id: 99)), timeout: .zero))
        for l in links { l.link.releaseCompletions(.a) }
        engine.close()
    }

    func testWaitsTimeOutAndCancelWithoutAFailure() async throws {
        let engine = try PeerEngine(options: options)
        let l = try link()
        let peer = try engine.add(l.link.a)
        l.link.hold(.a)
        let t = try engine.postWrite(to: peer, try l.source.segment(offset: 0, length: 64), remote: l.target.remoteBuffer)
        XCTAssertThrowsError(try engine.wait(for: t, timeout: .milliseconds(20))) {
            guard case .timedOut = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        do {
            try await engine.completion(of: t, timeout: .milliseconds(20))
            XCTFail("held")
        } catch {
            guard case .timedOut = error else { return XCTFail("\(error)") }
        }
        let task = Task { try await engine.completion(of: t, timeout: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(10))
        task.cancel()
        do {
            try await task.value
            XCTFail("cancelled")
        } catch let error as TransferError {
            guard case .cancelled = error else { return XCTFail("\(error)") }
        }
        XCTAssertNil(engine.failure(of: peer), "a timeout is not a failure")
        l.link.release(.a)
        try engine.wait(for: t, timeout: .seconds(2))
        engine.close()
    }

    func testArrivalsAreAnAsyncSequencePerPeerInOrder() async throws {
        let sender = try PeerEngine(options: options), receiver = try PeerEngine(options: options)
        let links = try (0..<3).map { try link(seed: $0) }
        let out = try links.map { try sender.add($0.link.a) }
        let inbound = try links.map { try receiver.add($0.link.b) }
        let count = 20
        for (i, l) in links.enumerated() {
            for k in 0..<count { try receiver.postReceive(from: inbound[i], try l.target.segment(offset: k * 64, length: 64)) }
        }
        let sequences = inbound.map { receiver.arrivals(from: $0, timeout: .seconds(5)) }
        async let got: [[UInt32]] = withThrowingTaskGroup(of: (Int, [UInt32]).self) { tasks in
            for (i, s) in sequences.enumerated() {
                tasks.addTask {
                    var seen: [UInt32] = []
                    for try await arrival in s {
                        seen.append(arrival.immediate ?? 0)
                        if seen.count == count { break }
                    }
                    return (i, seen)
                }
            }
            var all = [[UInt32]](repeating: [], count: sequences.count)
            for try await (i, seen) in tasks { all[i] = seen }
            return all
        }
        for k in 0..<count {
            for (i, l) in links.enumerated() {
                try await sender.send(to: out[i], try l.source.segment(offset: k * 8, length: 8), immediate: UInt32(i * 1000 + k))
            }
        }
        let arrivals = try await got
        for i in 0..<links.count { XCTAssertEqual(arrivals[i], (0..<count).map { UInt32(i * 1000 + $0) }) }
        // A removed peer's sequence ends.
        try receiver.postReceive(from: inbound[0], try links[0].target.segment(offset: 0, length: 64))
        let ending = Task { () throws(TransferError) -> Int in
            var n = 0
            for try await _ in receiver.arrivals(from: inbound[0], timeout: .seconds(5)) { n += 1 }
            return n
        }
        while receiver.waiters(on: inbound[0]) == 0 { try await Task.sleep(for: .milliseconds(1)) }
        try receiver.remove(inbound[0], timeout: .seconds(1))
        let n = try await ending.value
        XCTAssertEqual(n, 0)
        sender.close()
        receiver.close()
    }

    func testSyncAndAsyncCallersShareTheCore() async throws {
        let engine = try PeerEngine(options: .init(window: 8, signalInterval: 2, maxChunk: 512, timeout: .seconds(10)))
        let links = try (0..<4).map { try link(seed: $0) }
        let peers = try links.map { try engine.add($0.link.a) }
        let group = DispatchGroup()
        for i in 0..<4 {
            let l = links[i], p = peers[i]
            DispatchQueue.global().async(group: group) {
                for k in 0..<32 {
                    do { try engine.write(to: p, try l.source.segment(offset: k * 1024, length: 1024), remote: l.target.remoteBuffer, at: UInt64(k * 1024)) } catch {
                        XCTFail("sync: \(error)")
                    }
                }
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for i in 0..<4 {
                let l = links[i], p = peers[i]
                tasks.addTask {
                    for k in 32..<64 {
                        try await engine.write(to: p, try l.source.segment(offset: k * 1024, length: 1024), remote: l.target.remoteBuffer,
                                               at: UInt64(k * 1024))
                    }
                }
            }
            try await tasks.waitForAll()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 30), .success)
        for l in links { XCTAssertEqual(Array(l.target.bytes!), Array(l.source.bytes!)) }
        engine.close()
    }

    func testAnOperationLongerThanTheWindowIsRefused() throws {
        let engine = try PeerEngine(options: .init(window: 4, signalInterval: 2, maxChunk: 1024, timeout: .seconds(5)))
        let l = try link()
        let peer = try engine.add(l.link.a)
        XCTAssertThrowsError(try engine.postWrite(to: peer, try l.source.segment(offset: 0, length: 5000), remote: l.target.remoteBuffer)) {
            guard case .outOfBounds = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(l.link.executed(.a), 0)
        try engine.write(to: peer, try l.source.segment(offset: 0, length: 4096), remote: l.target.remoteBuffer)
        engine.close()
    }

    func testTransfersOfAnyRangeRegisterThroughTheCache() throws {
        let engine = try PeerEngine(options: options)
        let l = try link()
        let peer = try engine.add(l.link.a)
        var memory: HostBuffer? = try HostBuffer(count: 1 << 16)
        for i in 0..<memory!.count { memory!.bytes[i] = UInt8(truncatingIfNeeded: i &* 3) }
        let regionsBefore = l.link.finish().a.registeredRegions
        try engine.write(to: peer, from: memory!, range: 100..<5100, remote: l.target.remoteBuffer)
        try engine.write(to: peer, from: memory!, range: 200..<4000, remote: l.target.remoteBuffer, at: 30000)
        try engine.write(to: peer, from: memory!, range: 9000..<20000, remote: l.target.remoteBuffer, at: 9000)
        let cache = try engine.registrationCache(for: peer)
        XCTAssertEqual(cache.misses, 2, "the first and third ranges need pages not registered yet")
        XCTAssertEqual(cache.hits, 1, "the second range lies in the first one's pages")
        XCTAssertEqual(Array(l.target.bytes![0..<5000]), Array(memory!.bytes[100..<5100]))
        XCTAssertEqual(Array(l.target.bytes![30000..<33800]), Array(memory!.bytes[200..<4000]))
        XCTAssertEqual(Array(l.target.bytes![9000..<20000]), Array(memory!.bytes[9000..<20000]))
        XCTAssertEqual(cache.count, 2)
        XCTAssertEqual(l.link.finish().a.registeredRegions, regionsBefore + 2)
        XCTAssertThrowsError(try engine.write(to: peer, from: memory!, range: 60000..<70000, remote: l.target.remoteBuffer)) {
            guard case .outOfBounds = $0 as? TransferError else { return XCTFail("\($0)") }
        }
        // The owner goes: its entries are never handed out again, and are let go of.
        memory = nil
        cache.purge()
        XCTAssertEqual(cache.evictions, 2)
        XCTAssertEqual(cache.count, 0)
        XCTAssertEqual(l.link.finish().a.registeredRegions, regionsBefore)
        engine.close()
    }

    func testClosingLeavesEveryLinkEmpty() throws {
        let engine = try PeerEngine(options: options)
        let links = try (0..<6).map { try link(seed: $0) }
        let peers = try links.map { try engine.add($0.link.a) }
        for (i, l) in links.enumerated() {
            try engine.write(to: peers[i], try l.source.segment(offset: 0, length: 4096), remote: l.target.remoteBuffer)
            try engine.postReceive(from: peers[i], nil)
        }
        links[1].link.hold(.a)
        _ = try engine.postWrite(to: peers[1], try links[1].source.segment(offset: 0, length: 64), remote: links[1].target.remoteBuffer)
        engine.close()
        XCTAssertEqual(engine.peers, [])
        XCTAssertThrowsError(try engine.add(links[0].link.a))
        for l in links {
            let left = l.link.finish().a
            XCTAssertEqual(left.postedReceives, 0, "\(left)")
            XCTAssertEqual(left.unpolledSendCompletions + left.unpolledReceiveCompletions, 0, "\(left)")
            XCTAssertFalse(l.link.a.isConnected)
        }
    }
}
