import Foundation
import Verbs
import XCTest

/// Base of every test that needs RDMA: finds an active port once (through
/// `RDMAEnvironment`) or skips with the reason; inside the fabric
/// (VKVERBS_REQUIRE_RDMA=1) a missing device fails instead.
open class RDMATestCase: XCTestCase {
    public private(set) var env: RDMAEnvironment!
    /// A protection domain on `env`'s device, fresh for each test.
    public private(set) var pd: ProtectionDomain!

    override open func setUpWithError() throws {
        try super.setUpWithError()
        switch RDMAEnvironment.detect() {
        case let .success(found):
            env = found
            pd = try ProtectionDomain(context: found.context)
        case let .failure(why):
            if RDMAEnvironment.isRequired {
                XCTFail("RDMA is required here (VKVERBS_REQUIRE_RDMA=1) but \(why)")
                throw why
            }
            throw XCTSkip("skipped: \(why)")
        }
    }

    override open func tearDown() {
        pd = nil
        env = nil
        super.tearDown()
    }

    /// Resource counts to compare against after a test's work. librdmacm allocates a PD of its
    /// own for a device the first time a cm_id binds to it and keeps it while the device list is
    /// open (for the process' life here), so the baseline is taken after one binding.
    public func baselineCounts() throws -> [String: Int] {
        _ = try? ResolvedRoute.resolve(host: env.address, port: 1, timeout: .seconds(5))
        return try resourceCounts()
    }

    /// Counts of the device's resources from `rdma resource show`, and the memory this process
    /// has pinned for the NIC (`VmPin` in /proc/self/status: registered MRs), for leak checks.
    public func resourceCounts() throws -> [String: Int] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["rdma", "resource", "show", env.context.name]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        var out = ResourceCounts.parse(String(decoding: data, as: UTF8.self))
        XCTAssertFalse(out.isEmpty, "could not parse `rdma resource show`")
        out["pinned_kib"] = processStatusField("VmPin").flatMap { Int($0) }
        XCTAssertNotNil(out["pinned_kib"], "no VmPin in /proc/self/status")
        return out
    }

    /// Asserts that `error` is the VerbsError case `matches` accepts.
    public func assertVerbsError(_ error: any Error, _ what: String, file: StaticString = #filePath, line: UInt = #line,
                          _ matches: (VerbsError) -> Bool) {
        guard let e = error as? VerbsError, matches(e) else {
            return XCTFail("expected \(what), got \(error)", file: file, line: line)
        }
    }
}
