import Foundation
import RDMATestSupport
import SelfTest
import Transfer
import Verbs
import XCTest

/// Transfer-engine tests over an in-process rdmacm pair; skipped without RDMA, failed
/// without it inside the fabric (VKVERBS_REQUIRE_RDMA=1).
final class TransferTests: RDMATestCase {

    private func pair(window: Int = 64, signalInterval: Int = 16, maxChunk: Int? = nil)
        throws -> (pair: ConnectedPair, client: TransferEngine, server: TransferEngine) {
        let pair = try ConnectedPair(address: env.address)
        let options = TransferOptions(window: window, signalInterval: signalInterval, maxChunk: maxChunk, timeout: .seconds(60))
        return (pair, try TransferEngine(connection: pair.client, options: options),
                try TransferEngine(connection: pair.server, options: options))
    }

    func testWriteWithImmediateReadAndSendOfEverySize() throws {
        let (p, client, server) = try pair()
        for (i, size) in [1, 4095, 1 << 20, (64 << 20) + 1].enumerated() {
            let seed = UInt64(100 + i)
            let src = try p.client.pd.register(HostBuffer(count: size), access: .local)
            let back = try p.client.pd.register(HostBuffer(count: size), access: .local)
            let dst = try p.server.pd.register(HostBuffer(count: size), access: .remote)
            Pattern.fill(src.bytes!, count: size, seed: seed)

            _ = try server.postReceive(nil)
            try client.write(try src.segment(), to: dst.remoteBuffer, immediate: UInt32(size))
            let arrival = try server.nextArrival()
            XCTAssertEqual(arrival.immediate, UInt32(size), "the immediate comes once, after all chunks")
            XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(dst.bytes!), count: size, seed: seed), "write \(size)")

            try client.read(into: try back.segment(), from: dst.remoteBuffer)
            XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(back.bytes!), count: size, seed: seed), "read \(size)")

            if size <= client.maxChunk {
                Pattern.fill(src.bytes!, count: size, seed: seed + 50)
                _ = try server.postReceive(try dst.segment())
                try client.send(try src.segment(), immediate: 7)
                let got = try server.nextArrival()
                XCTAssertEqual(got.byteCount, size)
                XCTAssertEqual(got.immediate, 7)
                XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(dst.bytes!), count: size, seed: seed + 50), "send \(size)")
            }
        }
    }

    func testSmallChunksSmallWindowSelectiveSignaling() throws {
        let (p, client, _) = try pair(window: 4, signalInterval: 3, maxChunk: 4096)
        let size = (1 << 20) + 3
        let src = try p.client.pd.register(HostBuffer(count: size), access: .local)
        let dst = try p.server.pd.register(HostBuffer(count: size), access: .remote)
        Pattern.fill(src.bytes!, count: size, seed: 9)
        try client.write(try src.segment(), to: dst.remoteBuffer)
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(dst.bytes!), count: size, seed: 9))
    }

    func testPollingModeWithManyOutstandingOperations() throws {
        let (p, client, _) = try pair(window: 16, signalInterval: 4)
        let src = try p.client.pd.register(HostBuffer(count: 64 * 1024), access: .local)
        let dst = try p.server.pd.register(HostBuffer(count: 64 * 1024), access: .remote)
        Pattern.fill(src.bytes!, count: 64 * 1024, seed: 3)
        var pending = Set<Ticket>()
        for k in 0..<64 {
            pending.insert(try client.postWrite(try src.segment(offset: k * 1024, length: 1024), to: dst.remoteBuffer, at: UInt64(k * 1024)))
        }
        let deadline = ContinuousClock.now + .seconds(30)
        var finishedOps = 0
        while finishedOps < 64 && ContinuousClock.now < deadline { finishedOps += try client.progress().count }
        try client.drain()
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(dst.bytes!), count: 64 * 1024, seed: 3))
    }

    func testAsyncWrite() async throws {
        let (p, client, _) = try pair()
        let src = try p.client.pd.register(HostBuffer(count: 8192), access: .local)
        let dst = try p.server.pd.register(HostBuffer(count: 8192), access: .remote)
        Pattern.fill(src.bytes!, count: 8192, seed: 77)
        try await client.write(try src.segment(), to: dst.remoteBuffer)
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(dst.bytes!), count: 8192, seed: 77))
    }

    func testRemoteRangeBeyondDescriptorFailsBeforePosting() throws {
        let (p, client, _) = try pair()
        let src = try p.client.pd.register(HostBuffer(count: 8192), access: .local)
        let dst = try p.server.pd.register(HostBuffer(count: 4096), access: .remote)
        XCTAssertThrowsError(try client.postWrite(try src.segment(), to: dst.remoteBuffer)) { error in
            guard case TransferError.outOfBounds = error else { return XCTFail("got \(error)") }
        }
        XCTAssertThrowsError(try client.postWrite(try src.segment(offset: 0, length: 10), to: dst.remoteBuffer, at: 4090))
        let localOnly = try p.client.pd.register(HostBuffer(count: 64), access: [])
        XCTAssertThrowsError(try client.postRead(into: try localOnly.segment(), from: dst.remoteBuffer)) { error in
            guard case TransferError.accessDenied = error else { return XCTFail("got \(error)") }
        }
        XCTAssertEqual(try client.progress(), [], "nothing was posted")
    }

    func testWrongRKeyIsATypedRemoteAccessError() throws {
        let (p, client, _) = try pair()
        let src = try p.client.pd.register(HostBuffer(count: 64), access: .local)
        let dst = try p.server.pd.register(HostBuffer(count: 64), access: .remote)
        var wrong = dst.remoteBuffer
        wrong.rkey &+= 0x100
        XCTAssertThrowsError(try client.write(try src.segment(), to: wrong)) { error in
            XCTAssertEqual(error as? TransferError,
                           .failed(operation: "RDMA write", status: .remoteAccessError, vendorError: (error as? TransferError).flatMap {
                               if case let .failed(_, _, v) = $0 { return v }; return nil } ?? 0))
        }
        XCTAssertThrowsError(try client.write(try src.segment(), to: dst.remoteBuffer), "the engine stays failed")
    }

    func testPeerDisconnectFailsPendingOperationsPromptly() throws {
        let (p, client, _) = try pair()
        _ = try client.postReceive(nil)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) { try? p.server.disconnect() }
        let start = ContinuousClock.now
        XCTAssertThrowsError(try client.nextArrival(timeout: .seconds(20))) { error in
            XCTAssertEqual(error as? TransferError, .disconnected(operation: "receive"))
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(10))
        let src = try p.client.pd.register(HostBuffer(count: 64), access: .local)
        XCTAssertThrowsError(try client.postSend(try src.segment())) { error in
            guard case TransferError.disconnected = error else { return XCTFail("got \(error)") }
        }
    }

    func testRegistrationCacheReusesCoversAndInvalidates() throws {
        let pd = try ProtectionDomain(context: env.context)
        let cache = RegistrationCache(pd: pd, maxIdleEntries: 2)
        var buffer: HostBuffer? = try HostBuffer(count: 3 * 4096)
        do {
            let r1 = try cache.register(buffer!, access: .remote)
            let r2 = try cache.register(address: buffer!.pointer + 100, length: 500, access: .local, owner: buffer)
            XCTAssertTrue(r1.region === r2.region, "a covered range with fewer rights reuses the entry")
            XCTAssertEqual(r2.offset, 100)
            XCTAssertEqual(r2.remoteBuffer.address, r1.region.address + 100)
            XCTAssertEqual(cache.hits, 1)
            XCTAssertEqual(cache.misses, 1)
        }
        XCTAssertEqual(cache.count, 1, "idle entries stay cached")
        buffer = nil
        cache.purge()
        XCTAssertEqual(cache.count, 0, "an entry whose owner was freed is dropped, never reused")

        let raw = try HostBuffer(count: 4096)
        _ = try cache.register(address: raw.pointer, length: 4096, access: .local, owner: nil)
        XCTAssertEqual(cache.count, 1)
        cache.invalidate(address: raw.pointer, length: 4096)
        XCTAssertEqual(cache.count, 0)
        for _ in 0..<4 { _ = try cache.register(try HostBuffer(count: 4096), access: .local) }
        XCTAssertLessThanOrEqual(cache.count, 2, "idle entries beyond the limit are deregistered")
    }
}
