import Foundation
@testable import PingPong
import RDMATestSupport
import XCTest

/// What a script written for `ib_write_lat --out_json` reads: `results` with perftest's keys as
/// numbers. The same reader reads perftest's file and vkverbs's. Current perftest writes strict
/// JSON; perftest 4.5 (Debian 12's) writes the same keys unquoted, string values bare and commas
/// before closing braces, which no strict parser takes: the reader accepts both, one key per line,
/// as such a script must.
struct PerftestReport {
    static let latencyKeys = ["MsgSize", "n_iterations", "t_min", "t_max", "t_typical", "t_avg", "t_stdev", "percentile_99", "percentile_99.9"]
    static let bandwidthKeys = ["MsgSize", "n_iterations", "BW_peak", "BW_average", "MsgRate"]

    var test: String
    var results: [String: Double]

    init(_ data: Data, keys: [String]) throws {
        let parsed = try (try? JSONSerialization.jsonObject(with: data)) ?? JSONSerialization.jsonObject(with: Self.relaxed(data))
        let top = try XCTUnwrap(parsed as? [String: Any], String(decoding: data, as: UTF8.self))
        test = try XCTUnwrap((top["test_info"] as? [String: Any])?["test"] as? String)
        let results = try XCTUnwrap(top["results"] as? [String: Any])
        var values: [String: Double] = [:]
        for key in keys { values[key] = try XCTUnwrap((results[key] as? NSNumber)?.doubleValue, "results.\(key) in \(results)") }
        self.results = values
    }

    /// perftest 4.5's relaxed form made strict: each `key: value` line gets its key (and a value
    /// that is neither a number, an object, an array, true nor a string) quoted; a comma before `}` goes.
    static func relaxed(_ data: Data) -> Data {
        var lines: [String] = []
        for raw in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if let colon = line.firstIndex(of: ":"), !line.hasPrefix("{"), !line.hasPrefix("}") {
                let key = line[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
                var value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                let comma = value.hasSuffix(",")
                if comma { value.removeLast() }
                if !(value.hasPrefix("{") || value.hasPrefix("[") || value.hasPrefix("\"") || Double(value) != nil || value == "true") { value = "\"\(value)\"" }
                line = "\"\(key)\": \(value)" + (comma ? "," : "")
            }
            lines.append(line)
        }
        let joined = lines.joined(separator: "\n")
        let strict = joined.replacingOccurrences(of: ",\\s*\\}", with: "}", options: .regularExpression)
        return Data(strict.utf8)
    }
}

final class PerftestJSONTests: XCTestCase {
    func latencyResult(sizes: [Int]) throws -> PingPongResult {
        var r = PingPongResult(operation: .write, measurement: .latency, memory: "host", device: "rxe0")
        r.inlineBytes = 220
        for size in sizes {
            let samples = (1...1000).map { UInt64($0 * 100 + size) }
            r.latency.append(try XCTUnwrap(LatencyStatistics(bytes: size, samples: samples, halve: true)))
        }
        return r
    }

    func testLatencyReportReadsAsPerftest() throws {
        let r = try latencyResult(sizes: [2, 4096])
        let text = Report.perftestJSON(r)
        let report = try PerftestReport(Data(text.utf8), keys: PerftestReport.latencyKeys)
        XCTAssertEqual(report.test, "RDMA_Write_Latency_Test")
        // perftest keeps the last size of a sweep in `results`.
        let last = r.latency[1]
        XCTAssertEqual(report.results["MsgSize"], 4096)
        XCTAssertEqual(report.results["n_iterations"], 1000)
        XCTAssertEqual(report.results["t_typical"] ?? 0, last.typical, accuracy: 0.005)
        XCTAssertEqual(report.results["t_min"] ?? 0, last.min, accuracy: 0.005)
        XCTAssertEqual(report.results["percentile_99.9"] ?? 0, last.p999, accuracy: 0.005)
        let top = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let all = try XCTUnwrap(top["vkverbs_results"] as? [[String: Any]])
        XCTAssertEqual(all.map { ($0["MsgSize"] as? NSNumber)?.intValue }, [2, 4096])
        XCTAssertEqual((top["test_info"] as? [String: Any])?["Max_inline_data"] as? Int, 220)
    }

    /// perftest 4.5's file as ib_write_lat wrote it in the fabric (abridged), and ours, through one reader.
    func testOneReaderReadsPerftest45AndOurs() throws {
        let perftest45 = """
        {
        test_info: {
        test: RDMA_Write_Latency_Test,
        Device: "rxe0",
        TX_depth : 1,
        Mtu: 1024,
        Data_ex_method: rdma_cm,
        },
        results: {
        MsgSize: 2,
        n_iterations: 200,
        t_min: 21.68,
        t_max: 69281.62,
        t_typical: 39.14,
        t_avg: 1855.37,
        t_stdev: 3670.75,
        percentile_99: 18914.56,
        percentile_99.9: 69281.62,
        },
        }
        """
        XCTAssertThrowsError(try JSONSerialization.jsonObject(with: Data(perftest45.utf8)))
        let theirs = try PerftestReport(Data(perftest45.utf8), keys: PerftestReport.latencyKeys)
        XCTAssertEqual(theirs.test, "RDMA_Write_Latency_Test")
        XCTAssertEqual(theirs.results["t_typical"], 39.14)
        XCTAssertEqual(theirs.results["percentile_99.9"], 69281.62)
        let ours = Report.perftestJSON(try latencyResult(sizes: [2]))
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(ours.utf8)))  // strict JSON, as current perftest
        let strict = try PerftestReport(Data(ours.utf8), keys: PerftestReport.latencyKeys)
        let relaxed = try PerftestReport(PerftestReport.relaxed(Data(ours.utf8)), keys: PerftestReport.latencyKeys)
        XCTAssertEqual(strict.results, relaxed.results)
        XCTAssertEqual(Set(strict.results.keys), Set(theirs.results.keys))
    }

    func testBandwidthUnitsArePerftests() throws {
        var r = PingPongResult(operation: .send, measurement: .bandwidth, memory: "host", device: "mlx5_0")
        // 1000 messages of 1 MiB in one second.
        r.bandwidth = [try XCTUnwrap(BandwidthStatistics(bytes: 1 << 20, checkpoints: [(count: 1000, nanoseconds: 1_000_000_000)]))]
        let mb = try PerftestReport(Data(Report.perftestJSON(r).utf8), keys: PerftestReport.bandwidthKeys)
        XCTAssertEqual(mb.test, "Send_BW_Test")
        XCTAssertEqual(mb.results["BW_average"] ?? 0, 1000, accuracy: 0.01)  // MB/sec of 2^20 bytes, as perftest
        XCTAssertEqual(mb.results["MsgRate"] ?? 0, 0.001, accuracy: 1e-6)
        let gb = try PerftestReport(Data(Report.perftestJSON(r, gbits: true).utf8), keys: PerftestReport.bandwidthKeys)
        XCTAssertEqual(gb.results["BW_average"] ?? 0, 8.39, accuracy: 0.01)  // 2^30 bytes * 8 / 10^9
        XCTAssertTrue(Report.table(r, gbits: true).contains("BW average[Gb/sec]"))
        XCTAssertFalse(Report.table(r, gbits: true).contains("MB/sec"))
    }

    func testStringsAreEscaped() throws {
        let r = PingPongResult(operation: .read, measurement: .latency, memory: "a\"b\\c\n", device: "d")
        let top = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(Report.perftestJSON(r).utf8)) as? [String: Any])
        XCTAssertEqual((top["test_info"] as? [String: Any])?["vkverbs_memory"] as? String, "a\"b\\c\n")
        XCTAssertNil(top["results"])  // Nothing measured: no results, as perftest writes none.
    }

    // MARK: the command line

    var vkverbs: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("vkverbs")
    }

    func requireCLI() throws {
        guard FileManager.default.isExecutableFile(atPath: vkverbs.path) else {
            throw XCTSkip("skipped: vkverbs is not built next to the tests (\(vkverbs.path))")
        }
    }

    func testUnsupportedPerftestFlagsNameTheNearestEquivalent() throws {
        try requireCLI()
        for (flag, nearest) in [("-t", "--window"), ("--tx-depth=64", "--window"), ("-x", "rdma_cm picks the GID"),
                                ("--use_cuda", "--memory"), ("-q", "--max-sessions"), ("--write_with_imm", "--op write-imm")] {
            let r = try runProcess(vkverbs, ["pingpong", "--client", "127.0.0.1", flag], timeout: 30)
            XCTAssertEqual(r.status, 1, r.output)
            XCTAssertTrue(r.output.contains("perftest's"), r.output)
            XCTAssertTrue(r.output.contains(flag.split(separator: "=")[0]), r.output)
            XCTAssertTrue(r.output.contains(nearest), r.output)
        }
    }

    /// -e parses (perftest's event mode) and is refused, with the reason, where no completion answers.
    func testEventModeFlagParsesAndIsRefusedForWrite() throws {
        try requireCLI()
        let r = try runProcess(vkverbs, ["pingpong", "--client", "127.0.0.1", "-e", "--op", "write", "--timeout", "2"], timeout: 30)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("event mode (-e) needs --op send or --op write-imm"), r.output)
        let bw = try runProcess(vkverbs, ["pingpong", "--client", "127.0.0.1", "--events", "--op", "send", "--measure", "bandwidth"], timeout: 30)
        XCTAssertEqual(bw.status, 1, bw.output)
        XCTAssertTrue(bw.output.contains("event mode (-e) measures latency"), bw.output)
    }

    func testPerftestFlagsThatMeanTheSameAreAccepted() throws {
        try requireCLI()
        let help = try runProcess(vkverbs, ["pingpong", "--help"], timeout: 30).output
        for flag in ["-s", "-n", "-a", "-D", "-I", "-R", "-d", "-p", "--report_gbits", "--out_json", "--out_json_file", "--iters", "--all"] {
            XCTAssertTrue(help.contains(flag), "\(flag) in \(help)")
        }
        // Parsed as options (no usage error, exit 64): the run itself then fails on the missing server or device.
        let r = try runProcess(vkverbs, ["pingpong", "--client", "127.0.0.1", "-R", "-F", "-n", "5", "-s", "8", "-I", "0",
                                         "--report_gbits", "--out_json", "--timeout", "2"], timeout: 30)
        XCTAssertNotEqual(r.status, 64, r.output)
        XCTAssertFalse(r.output.contains("Unknown option"), r.output)
        XCTAssertFalse(r.output.contains("Usage:"), r.output)
    }
}

/// Inside the fabric: `ib_write_lat --out_json` and `vkverbs pingpong --out_json` on the same rxe
/// device, both read by `PerftestReport`.
final class PerftestFabricTests: RDMATestCase {
    func tool(_ name: String) throws -> URL {
        for dir in ["/usr/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return URL(fileURLWithPath: "\(dir)/\(name)")
        }
        if RDMAEnvironment.isRequired { XCTFail("\(name) is not installed (scripts/install-deps installs perftest)") }
        throw XCTSkip("skipped: \(name) is not installed")
    }

    func testOneReaderForPerftestAndVkverbs() throws {
        let perftest = try tool("ib_write_lat")
        let vkverbs = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("vkverbs")
        guard FileManager.default.isExecutableFile(atPath: vkverbs.path) else { return XCTFail("\(vkverbs.path) is not built") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("perftest-json-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let common = ["-d", env.context.name, "-R", "-F", "-s", "2", "-n", "200"]

        // perftest: a server, then its client; the client writes the file.
        let theirs = dir.appendingPathComponent("perftest.json").path
        var read: PerftestReport?
        for attempt in 1...3 where read == nil {
            let server = Process()
            server.executableURL = perftest
            server.arguments = common + ["-p", "18641"]
            server.standardOutput = FileHandle.nullDevice
            server.standardError = FileHandle.nullDevice
            try server.run()
            Thread.sleep(forTimeInterval: Double(attempt))
            let client = try runProcess(perftest, common + ["-p", "18641", "--out_json", "--out_json_file=\(theirs)", env.address], timeout: 120)
            if server.isRunning { server.terminate() }
            server.waitUntilExit()
            if client.status == 0, let data = FileManager.default.contents(atPath: theirs) {
                read = try PerftestReport(data, keys: PerftestReport.latencyKeys)
            }
        }
        let perftestReport = try XCTUnwrap(read, "ib_write_lat wrote no JSON report")

        // vkverbs: the same flags where perftest's mean the same.
        let ours = dir.appendingPathComponent("vkverbs.json").path
        let server = Process()
        server.executableURL = vkverbs
        server.arguments = ["pingpong", "--server", "--bind", env.address, "-p", "18642", "--max-clients", "1"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }
        let client = try runProcess(vkverbs, ["pingpong", "--client", env.address, "--retry", "30"] + common
                                        + ["-p", "18642", "--out_json", "--out_json_file=\(ours)"], timeout: 180)
        XCTAssertEqual(client.status, 0, client.output)
        let vkverbsReport = try PerftestReport(try XCTUnwrap(FileManager.default.contents(atPath: ours)), keys: PerftestReport.latencyKeys)

        XCTAssertEqual(perftestReport.test, vkverbsReport.test)
        for report in [perftestReport, vkverbsReport] {
            XCTAssertEqual(report.results["MsgSize"], 2)
            XCTAssertEqual(report.results["n_iterations"], 200)
            XCTAssertGreaterThan(report.results["t_typical"] ?? 0, 0)
            XCTAssertLessThanOrEqual(report.results["t_min"] ?? 0, report.results["t_typical"] ?? 0)
        }
        print("perftest t_typical \(perftestReport.results["t_typical"]!) us, vkverbs \(vkverbsReport.results["t_typical"]!) us")
    }
}
