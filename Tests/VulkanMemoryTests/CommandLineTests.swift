import Foundation
import VulkanMemory
import XCTest

/// `vkverbs devices`, `vkverbs vulkan check` and `vkverbs gpu-bench`, run as the built CLI (next to
/// the test executable) on lavapipe, which CI has. The checks that need an NVIDIA GPU are skipped here
/// with the reason: scripts/nvidia-remote runs them on the accelerator machine (docs/nvidia-results.md),
/// where there is no Swift toolchain to run this test binary.
final class CommandLineTests: XCTestCase {
    private var vkverbs: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("vkverbs")
    }

    private func requireCLI() throws {
        guard FileManager.default.isExecutableFile(atPath: vkverbs.path) else {
            throw XCTSkip("skipped: vkverbs is not built next to the tests (\(vkverbs.path)); swift build --build-tests builds it")
        }
    }

    /// Runs the CLI with `environment` added; stdout and stderr separately.
    private func run(_ args: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        let p = Process()
        p.executableURL = vkverbs
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        // stderr into a file, so neither stream can fill up and stall the child while the other is read.
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("vkverbs-cli-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).err")
        _ = FileManager.default.createFile(atPath: errPath.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errPath) }
        let err = try FileHandle(forWritingTo: errPath)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try err.close()
        let errData = try Data(contentsOf: errPath)
        return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    private func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    /// The index of lavapipe among the loader's devices (the CLI's default prefers a GPU).
    private func lavapipeIndex() throws -> Int {
        guard let device = try VulkanInstance().physicalDevices().first(where: { $0.name.hasPrefix("llvmpipe") }) else {
            throw XCTSkip("lavapipe (mesa-vulkan-drivers) is not installed")
        }
        return device.index
    }

    /// The emulation layer's manifest in a temporary directory, for VK_ADD_LAYER_PATH.
    private func layerDirectory() throws -> String {
        let library = vkverbs.deletingLastPathComponent().appendingPathComponent("libVkLayerRDMA.so").path
        guard FileManager.default.fileExists(atPath: library) else {
            throw XCTSkip("skipped: \(library) is not built (swift build --product VkLayerRDMA)")
        }
        let template = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/VkLayerRDMA/manifest/VkLayer_vkverbs_rdma.json.in").standardized
        let manifest = try String(contentsOf: template, encoding: .utf8).replacingOccurrences(of: "@LIBRARY_PATH@", with: library)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vkverbs-cli-layer-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try manifest.write(to: dir.appendingPathComponent("VkLayer_vkverbs_rdma.json"), atomically: true, encoding: .utf8)
        return dir.path
    }

    private func checks(_ report: [String: Any]) -> [String: [String: Any]] {
        let list = report["checks"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: list.map { ($0["strategy"] as? String ?? "?", $0) })
    }

    func testVulkanCheckOnLavapipeUnderValidation() throws {
        try requireCLI()
        let device = try lavapipeIndex()
        let r = try run(["vulkan", "check", "--size", "65540", "--device", "\(device)", "--json"],
                        environment: ["VKVERBS_VULKAN_VALIDATION": "1", "VKVERBS_RDMA_LAYER": "0"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let report = try json(r.stdout)
        let byStrategy = checks(report)
        for strategy in ["hostPointerImport", "hostVisible", "staged"] {
            XCTAssertEqual(byStrategy[strategy]?["status"] as? String, "ok", "\(strategy): \(byStrategy[strategy] ?? [:])")
            XCTAssertEqual(byStrategy[strategy]?["passed"] as? [String], ["fill", "compute shader", "host->GPU"], strategy)
        }
        XCTAssertEqual(byStrategy["rdmaAddress"]?["status"] as? String, "unsupported")
        XCTAssertTrue((byStrategy["rdmaAddress"]?["detail"] as? String ?? "").contains("VK_NV_external_memory_rdma"))
        XCTAssertEqual(byStrategy["dmaBuf"]?["status"] as? String, "unsupported")
        XCTAssertEqual(report["validationMessages"] as? [String], [])
    }

    func testNamedUnsupportedStrategyFailsAndSizeIsChecked() throws {
        try requireCLI()
        let device = try lavapipeIndex()
        var r = try run(["vulkan", "check", "--strategy", "dma-buf", "--device", "\(device)"], environment: ["VKVERBS_RDMA_LAYER": "0"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("dma-buf       unsupported  extension VK_EXT_external_memory_dma_buf"), r.stdout)
        r = try run(["vulkan", "check", "--size", "6"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("multiple of 4"), r.stderr)
        r = try run(["vulkan", "check", "--strategy", "nonsense"])
        XCTAssertNotEqual(r.status, 0)
    }

    /// --layer: the NV path runs through VK_LAYER_VKVERBS_rdma_emulation and the bytes are read at the address.
    func testVulkanCheckNVPathThroughTheLayer() throws {
        try requireCLI()
        let device = try lavapipeIndex()
        let layers = try layerDirectory()
        let r = try run(["vulkan", "check", "--layer", "--strategy", "rdma-address", "--size", "65536", "--device", "\(device)", "--json"],
                        environment: ["VK_ADD_LAYER_PATH": layers, "VKVERBS_VULKAN_VALIDATION": "1"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let report = try json(r.stdout)
        XCTAssertEqual(report["externalMemoryRDMASource"] as? String, "vkverbs-layer")
        let nv = try XCTUnwrap(checks(report)["rdmaAddress"])
        XCTAssertEqual(nv["status"] as? String, "ok", "\(nv)")
        XCTAssertTrue((nv["detail"] as? String ?? "").contains("vkGetMemoryRemoteAddressNV"), "\(nv)")
        XCTAssertEqual(report["validationMessages"] as? [String], [])

        let devices = try run(["devices", "--layer", "--json"], environment: ["VK_ADD_LAYER_PATH": layers])
        XCTAssertEqual(devices.status, 0, devices.stderr)
        let vulkan = try XCTUnwrap(try json(devices.stdout)["vulkan"] as? [String: Any])
        let lavapipe = try XCTUnwrap((vulkan["devices"] as? [[String: Any]])?.first {
            (($0["report"] as? [String: Any])?["deviceName"] as? String ?? "").hasPrefix("llvmpipe")
        })
        XCTAssertEqual((lavapipe["report"] as? [String: Any])?["externalMemoryRDMASource"] as? String, "vkverbs-layer")
        XCTAssertEqual((lavapipe["automaticChoice"] as? [String: Any])?["strategy"] as? String, "rdmaAddress")
    }

    func testDevicesReportsTheAutomaticChoiceAndItsReasons() throws {
        try requireCLI()
        _ = try lavapipeIndex()
        let r = try run(["devices", "--json"], environment: ["VKVERBS_RDMA_LAYER": "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try json(r.stdout)
        XCTAssertNotNil(report["rdmaDevices"] as? [Any])
        let vulkan = try XCTUnwrap(report["vulkan"] as? [String: Any])
        XCTAssertEqual(vulkan["available"] as? Bool, true)
        let lavapipe = try XCTUnwrap((vulkan["devices"] as? [[String: Any]])?.first {
            (($0["report"] as? [String: Any])?["deviceName"] as? String ?? "").hasPrefix("llvmpipe")
        })
        let choice = try XCTUnwrap(lavapipe["automaticChoice"] as? [String: Any])
        XCTAssertEqual(choice["strategy"] as? String, "hostPointerImport")
        let rejected = try XCTUnwrap(choice["rejected"] as? [[String: Any]])
        XCTAssertEqual(rejected.map { $0["strategy"] as? String }, ["rdmaAddress", "dmaBuf"])
        let text = try run(["devices"], environment: ["VKVERBS_RDMA_LAYER": "0"])
        XCTAssertEqual(text.status, 0)
        XCTAssertTrue(text.stdout.contains("automatic choice for 64 KiB"), text.stdout)
        XCTAssertTrue(text.stdout.contains("not rdma-address: extension VK_NV_external_memory_rdma"), text.stdout)
    }

    /// No Vulkan driver for the loader: said, and still exit 0.
    func testDevicesWithoutAVulkanDriver() throws {
        try requireCLI()
        let environment = ["VK_DRIVER_FILES": "/nonexistent/vkverbs_no_icd.json", "VK_ICD_FILENAMES": "/nonexistent/vkverbs_no_icd.json"]
        let r = try run(["devices", "--json"], environment: environment)
        XCTAssertEqual(r.status, 0, r.stderr)
        let vulkan = try XCTUnwrap(try json(r.stdout)["vulkan"] as? [String: Any])
        XCTAssertEqual(vulkan["available"] as? Bool, false)
        XCTAssertTrue((vulkan["note"] as? String ?? "").contains("no Vulkan driver"), "\(vulkan)")
        let text = try run(["devices"], environment: environment)
        XCTAssertEqual(text.status, 0)
        XCTAssertTrue(text.stdout.contains("no Vulkan driver"), text.stdout)
        let check = try run(["vulkan", "check"], environment: environment)
        XCTAssertEqual(check.status, 1)
        XCTAssertTrue(check.stderr.contains("no Vulkan driver"), check.stderr)
    }

    /// A copy queue family the device lacks, or a word that is none, is refused with a message.
    func testGPUBenchRefusesACopyFamilyTheDeviceLacks() throws {
        try requireCLI()
        let device = try lavapipeIndex()
        let missing = try run(["gpu-bench", "--max", "4096", "--repetitions", "1", "--copy-family", "7", "--device", "\(device)"])
        XCTAssertNotEqual(missing.status, 0, missing.stdout)
        XCTAssertTrue(missing.stderr.contains("copy queue family 7"), missing.stderr)
        let bogus = try run(["gpu-bench", "--max", "4096", "--copy-family", "fast", "--device", "\(device)"])
        XCTAssertNotEqual(bogus.status, 0, bogus.stdout)
        XCTAssertTrue(bogus.stderr.contains("--copy-family must be auto, main or a queue family index"), bogus.stderr)
    }

    func testGPUBenchMeasuresAndVerifiesEachDestination() throws {
        try requireCLI()
        let device = try lavapipeIndex()
        let r = try run(["gpu-bench", "--max", "65536", "--repetitions", "2", "--warmup", "1", "--chunk", "16384",
                         "--probe-sizes", "4096", "--probe-iterations", "3",
                         "--device", "\(device)", "--json"], environment: ["VKVERBS_VULKAN_VALIDATION": "1"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let report = try json(r.stdout)
        XCTAssertEqual(report["sizes"] as? [Int], [4096, 16384, 65536])
        let results = try XCTUnwrap(report["results"] as? [[String: Any]])
        XCTAssertEqual(Set(results.compactMap { $0["destination"] as? String }), ["host-import", "host-visible", "staged"])
        XCTAssertEqual(Set(results.compactMap { $0["direction"] as? String }), ["d2h", "h2d"])
        XCTAssertEqual(results.count, 18)
        for result in results {
            XCTAssertEqual(result["verified"] as? Bool, true, "\(result)")
            XCTAssertEqual((result["gpuNanoseconds"] as? [Double])?.count, 2)
            XCTAssertGreaterThan(result["gpuBestGBps"] as? Double ?? 0, 0, "\(result)")
            XCTAssertGreaterThan(result["wallMedianGBps"] as? Double ?? 0, 0, "\(result)")
            XCTAssertEqual((result["wallUntimedNanoseconds"] as? [Double])?.count, 2, "\(result)")
            XCTAssertGreaterThan(result["wallUntimedBestGBps"] as? Double ?? 0, 0, "\(result)")
        }
        // lavapipe has one queue family: the copies run on it, unmeasured.
        let copyQueue = try XCTUnwrap(report["copyQueue"] as? [String: Any])
        XCTAssertEqual(copyQueue["family"] as? Int, copyQueue["mainFamily"] as? Int)
        XCTAssertEqual(copyQueue["largeFamily"] as? Int, copyQueue["mainFamily"] as? Int)
        XCTAssertEqual((copyQueue["timings"] as? [Any])?.count, 0)
        XCTAssertEqual(report["receiveSubmission"] as? String, "on-release")
        let probe = try XCTUnwrap(report["syncProbe"] as? [[String: Any]])
        XCTAssertEqual(Set(probe.compactMap { $0["method"] as? String }),
                       ["fence-block", "fence-poll", "timeline-block", "timeline-poll", "timeline-default", "timeline-default-rerecord",
                        "timeline-poll-copy-to-host", "timeline-poll-no-barrier", "timeline-poll-timed",
                        "timeline-poll-copy-to-host-timed", "h2d-timeline-poll", "h2d-timeline-poll-no-barrier"])
        for p in probe { XCTAssertGreaterThan(p["medianMicroseconds"] as? Double ?? 0, 0, "\(p)") }
        XCTAssertFalse(r.stderr.contains("validation"), r.stderr)
    }

    /// Needs an NVIDIA GPU: never on CI. On the accelerator machine scripts/nvidia-remote runs the same
    /// commands with the release binary (there is no Swift toolchain there to run this test binary).
    func testEveryStrategyTheNVIDIADriverOffersChecksOut() throws {
        try requireCLI()
        guard let nvidia = try? VulkanInstance().physicalDevices().first(where: { $0.properties.vendorID == 0x10DE }) else {
            throw XCTSkip("skipped: needs an NVIDIA GPU; scripts/nvidia-remote runs `vkverbs vulkan check` and "
                          + "`vkverbs gpu-bench` on the accelerator machine (docs/nvidia-results.md)")
        }
        let r = try run(["vulkan", "check", "--device", "\(nvidia.index)", "--json"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let byStrategy = checks(try json(r.stdout))
        for strategy in ["hostPointerImport", "hostVisible", "staged"] {
            XCTAssertEqual(byStrategy[strategy]?["status"] as? String, "ok", strategy)
        }
    }
}
