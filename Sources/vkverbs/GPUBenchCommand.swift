import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Doctor
import Foundation
import VulkanMemory

// `vkverbs gpu-bench`: how fast the GPU copies device-local memory into host memory
// that a NIC would register, timed by GPU timestamps and by the wall clock.

/// One destination at one size.
struct GPUBenchResult: Codable {
    /// host-import, host-visible, host-cached, or staged.
    var destination: String
    var memoryType: Int
    var memoryFlags: [String]
    var size: UInt64
    /// Staged only: bytes per bounce copy and bounce buffers in the ring.
    var chunkSize: UInt64?
    var slots: Int?
    /// GPU time from a timestamp before the (first) copy to one after the (last) copy.
    var gpuNanoseconds: [Double]
    /// Recording, vkQueueSubmit and the fence wait (for staged: every chunk's).
    var wallNanoseconds: [Double]
    var gpuBestGBps: Double
    var gpuMedianGBps: Double
    var wallBestGBps: Double
    var wallMedianGBps: Double
    /// The copied bytes were spot-checked (every 4096th word and the last) after the runs.
    var verified: Bool
}

struct GPUBenchReport: Codable {
    var device: String
    var deviceIndex: Int
    var driver: DriverInfo?
    var timestampPeriodNanoseconds: Double
    var timestampValidBits: UInt32
    var sourceMemoryType: Int
    var sourceMemoryFlags: [String]
    var repetitions: Int
    var warmup: Int
    var sizes: [UInt64]
    var results: [GPUBenchResult]
    /// Destinations that could not be measured, and why.
    var notes: [String]
    /// GB/s here are 10^9 bytes per second.
    var unit = "GB/s = 1e9 bytes/s"
}

struct GPUBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpu-bench",
        abstract: "Bandwidth of GPU copies (vkCmdCopyBuffer) from device-local memory into host memory a NIC would register.",
        discussion: """
        Destinations: host-import (host pages imported with VK_EXT_external_memory_host, the \
        host-import strategy), host-visible (a mapped HOST_VISIBLE|HOST_COHERENT type that is not \
        DEVICE_LOCAL, i.e. system memory), host-cached (the same with HOST_CACHED), and staged (the \
        staged pipeline's GPU side: the size copied in --chunk pieces into a ring of --slots host-visible \
        bounce buffers, each chunk its own submission, as Transfer.StagedPipeline does, without the NIC). \
        Each size is copied --warmup times unmeasured, then --repetitions times, each one submission timed \
        by vkCmdWriteTimestamp (top of pipe before, bottom of pipe after, times timestampPeriod) and by the \
        wall clock around recording, vkQueueSubmit and the fence wait. Best and median GB/s (1e9 B/s).
        """)

    @Option(help: "Smallest size in bytes.") var min: UInt64 = 4 << 10
    @Option(help: "Largest size in bytes.") var max: UInt64 = 1 << 30
    @Option(help: "Each size is the last one times this (2 or 4).") var factor: UInt64 = 4
    @Option(name: .shortAndLong, help: "Measured copies per size.") var repetitions: Int = 20
    @Option(help: "Unmeasured copies per size first.") var warmup: Int = 2
    @Option(help: "Destinations, comma-separated: host-import, host-visible, host-cached, staged.")
    var destinations: String = "host-import,host-visible,host-cached,staged"
    @Option(help: "Staged: bytes per bounce copy (repeat for several).") var chunk: [UInt64] = [1 << 20, 4 << 20]
    @Option(help: "Staged: bounce buffers in the ring.") var slots: Int = 3
    @Option(help: "Vulkan physical device index (default: the first GPU, else device 0).") var device: Int?
    @Option(help: "Seconds each GPU submission may take.") var timeout: Int = 60
    @Flag(help: "Print JSON.") var json = false

    static let knownDestinations = ["host-import", "host-visible", "host-cached", "staged"]

    var destinationList: [String] { destinations.split(separator: ",").map { String($0) } }

    var sizes: [UInt64] {
        var list: [UInt64] = []
        var size = min
        while size <= max {
            list.append(size)
            size *= factor
        }
        return list
    }

    func validate() throws {
        if min < 4 || min % 4 != 0 { throw ValidationError("--min must be a multiple of 4, at least 4") }
        if max < min { throw ValidationError("--max must be at least --min") }
        if factor < 2 { throw ValidationError("--factor must be at least 2") }
        if repetitions < 1 || warmup < 0 { throw ValidationError("--repetitions must be >= 1 and --warmup >= 0") }
        if slots < 1 { throw ValidationError("--slots must be at least 1") }
        if chunk.contains(where: { $0 == 0 || $0 % 4 != 0 }) { throw ValidationError("--chunk must be a positive multiple of 4") }
        for d in destinationList where !Self.knownDestinations.contains(d) {
            throw ValidationError("unknown destination \(d) (known: \(Self.knownDestinations.joined(separator: ", ")))")
        }
    }

    func run() throws {
        let instance: VulkanInstance
        let physical: PhysicalDevice
        do {
            instance = try makeVulkanInstance(layer: false)
            physical = try pickPhysicalDevice(instance, index: device)
        } catch {
            if case .noSuchDevice(_, 0) = error { fail("no Vulkan driver: the loader lists no physical device") }
            if case .instanceCreation = error { fail(describeInstanceFailure(error)) }
            fail(error)
        }
        do {
            let bench = try Bench(physical: physical, command: self)
            let report = try bench.run(progress: { FileHandle.standardError.write(Data("gpu-bench: \($0)\n".utf8)) })
            if json { try printJSON(report) } else { printTable(report) }
            if let log = instance.validationLog, !log.messages.isEmpty {
                FileHandle.standardError.write(Data(("validation:\n" + log.messages.map { "  \($0)" }.joined(separator: "\n") + "\n").utf8))
                if log.messages.contains(where: { $0.severity == .error }) { throw ExitCode(1) }
            }
        } catch let error as VulkanError {
            fail(error)
        }
    }

    func printTable(_ report: GPUBenchReport) {
        print("")
        print("gpu-bench: \(report.device), driver \(report.driver.map { [$0.name, $0.info].compactMap { $0 }.joined(separator: " ") } ?? "?"), "
              + "timestamp period \(report.timestampPeriodNanoseconds) ns, \(report.repetitions) runs per size (GB/s = 1e9 B/s)")
        let header = ["destination", "type", "size", "GPU best", "GPU median", "wall best", "wall median", "ok"]
        print(header.map { $0.padding(toLength: 13, withPad: " ", startingAt: 0) }.joined())
        for r in report.results {
            let name = r.chunkSize.map { "\(r.destination)/\(formatBytes($0))" } ?? r.destination
            let row = [name, "\(r.memoryType)", formatBytes(r.size),
                       String(format: "%.2f", r.gpuBestGBps), String(format: "%.2f", r.gpuMedianGBps),
                       String(format: "%.2f", r.wallBestGBps), String(format: "%.2f", r.wallMedianGBps),
                       r.verified ? "yes" : "NO"]
            print(row.map { $0.padding(toLength: 13, withPad: " ", startingAt: 0) }.joined())
        }
        for note in report.notes { print("note: \(note)") }
    }
}

/// The measurement itself.
struct Bench {
    let device: VulkanDevice
    let command: GPUBenchCommand
    let runner: GPUCommandRunner
    let pool: TimestampQueryPool
    let timeout: Duration

    init(physical: PhysicalDevice, command: GPUBenchCommand) throws(VulkanError) {
        device = try VulkanDevice(physicalDevice: physical)
        self.command = command
        runner = try GPUCommandRunner(device: device)
        pool = try TimestampQueryPool(device: device, count: 2)
        timeout = .seconds(command.timeout)
    }

    /// A memory type with all of `required` and none of `excluded`, preferring one without `avoid`.
    func memoryType(required: [String], excluded: [String], avoid: [String] = []) throws(VulkanError) -> MemoryTypeInfo? {
        let types = try device.physicalDevice.memorySnapshot().types.filter { type in
            required.allSatisfy(type.properties.contains) && !excluded.contains(where: type.properties.contains)
        }
        return types.first { !avoid.contains(where: $0.properties.contains) } ?? types.first
    }

    func run(progress: (String) -> Void) throws(VulkanError) -> GPUBenchReport {
        let sizes = command.sizes
        let largest = sizes.last!
        let physical = device.physicalDevice
        let source = try DeviceBuffer(device: device, size: largest, hostVisible: false)
        var report = GPUBenchReport(
            device: physical.name, deviceIndex: physical.index, driver: try? physical.driverInfo(),
            timestampPeriodNanoseconds: pool.period, timestampValidBits: pool.validBits,
            sourceMemoryType: source.memoryType.index, sourceMemoryFlags: source.memoryType.properties,
            repetitions: command.repetitions, warmup: command.warmup, sizes: sizes, results: [], notes: [])
        if !source.memoryType.properties.contains("DEVICE_LOCAL_BIT") {
            report.notes.append("the source buffer is not DEVICE_LOCAL (memory type \(source.memoryType.index)): this device has no separate GPU memory")
        }
        let visible = ["HOST_VISIBLE_BIT", "HOST_COHERENT_BIT"]
        for destination in command.destinationList {
            // Each destination's buffer is made once, at the largest size, and freed before the next.
            let target: DeviceBuffer
            var keepAlive: VulkanAllocation?
            do {
                switch destination {
                case "host-import":
                    let allocation = try device.allocate(size: largest, strategy: .hostPointerImport)
                    keepAlive = allocation
                    target = allocation.buffer
                case "host-visible", "staged":
                    guard let type = try memoryType(required: visible, excluded: ["DEVICE_LOCAL_BIT"], avoid: ["HOST_CACHED_BIT"])
                        ?? memoryType(required: visible, excluded: [])
                    else { throw VulkanError.noMemoryType(needs: "HOST_VISIBLE|HOST_COHERENT", memoryTypeBits: 0) }
                    if destination == "staged" {
                        for chunk in command.chunk {
                            report.results += try measureStaged(source: source, memoryType: type, chunk: chunk,
                                                                sizes: sizes, progress: progress)
                        }
                        continue
                    }
                    target = try DeviceBuffer(device: device, size: largest, memoryTypeIndex: type.index, map: true)
                default:  // host-cached
                    guard let type = try memoryType(required: visible + ["HOST_CACHED_BIT"], excluded: ["DEVICE_LOCAL_BIT"]) else {
                        report.notes.append("host-cached: no HOST_VISIBLE|HOST_COHERENT|HOST_CACHED type outside DEVICE_LOCAL memory")
                        continue
                    }
                    target = try DeviceBuffer(device: device, size: largest, memoryTypeIndex: type.index, map: true)
                }
            } catch {
                report.notes.append("\(destination): \(error)")
                continue
            }
            for size in sizes {
                report.results.append(try measure(destination, source: source, target: target, size: size))
                progress("\(destination) \(formatBytes(size)): GPU best \(String(format: "%.2f", report.results.last!.gpuBestGBps)) GB/s")
            }
            _ = keepAlive
        }
        return report
    }

    /// A value for the source that no earlier size left behind.
    private func marker(_ size: UInt64, _ salt: UInt64 = 0) -> UInt32 {
        UInt32(truncatingIfNeeded: (size &* 2_654_435_761) ^ (salt &* 40503) ^ 0x5A00_0000) | 1
    }

    private func fillSource(_ source: DeviceBuffer, size: UInt64, value: UInt32) throws(VulkanError) {
        try runner.run(timeout: timeout) { (r) throws(VulkanError) in try r.fill(source, value: value, offset: 0, size: size) }
    }

    /// Every 4096th word and the last word of `bytes[0..<size]` hold `value`.
    private func spotCheck(_ bytes: UnsafeMutableRawBufferPointer?, size: UInt64, value: UInt32) -> Bool {
        guard let bytes, bytes.count >= Int(size) else { return false }
        let words = Int(size / 4)
        var i = 0
        while i < words {
            if bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) != value { return false }
            i += 4096
        }
        return bytes.loadUnaligned(fromByteOffset: (words - 1) * 4, as: UInt32.self) == value
    }

    private func measure(_ destination: String, source: DeviceBuffer, target: DeviceBuffer, size: UInt64)
        throws(VulkanError) -> GPUBenchResult
    {
        let value = marker(size)
        try fillSource(source, size: size, value: value)
        var gpu: [Double] = []
        var wall: [Double] = []
        for n in 0..<(command.warmup + command.repetitions) {
            let start = monotonicSeconds()
            try runner.run(timeout: timeout) { (r) throws(VulkanError) in
                try r.resetQueries(pool)
                try r.writeTimestamp(pool, index: 0, stage: .top)
                try r.copy(from: source, to: target, size: size)
                try r.writeTimestamp(pool, index: 1, stage: .bottom)
            }
            let elapsed = (monotonicSeconds() - start) * 1e9
            guard n >= command.warmup else { continue }
            wall.append(elapsed)
            gpu.append(try pool.nanoseconds(from: 0, to: 1))
        }
        return result(destination, type: target.memoryType, size: size, gpu: gpu, wall: wall,
                      verified: spotCheck(target.bytes, size: size, value: value))
    }

    /// The staged pipeline's GPU side: `size` bytes in `chunk` pieces into a ring of bounce buffers.
    private func measureStaged(source: DeviceBuffer, memoryType: MemoryTypeInfo, chunk: UInt64, sizes: [UInt64],
                               progress: (String) -> Void) throws(VulkanError) -> [GPUBenchResult] {
        let slotCount = command.slots
        let slotSize = Swift.min(chunk, sizes.last!)
        var slots: [(buffer: DeviceBuffer, runner: GPUCommandRunner)] = []
        for _ in 0..<slotCount {
            slots.append((try DeviceBuffer(device: device, size: slotSize, memoryTypeIndex: memoryType.index, map: true),
                          try GPUCommandRunner(device: device)))
        }
        var results: [GPUBenchResult] = []
        for size in sizes {
            let value = marker(size, chunk)
            try fillSource(source, size: size, value: value)
            let chunks = Int((size + chunk - 1) / chunk)
            var gpu: [Double] = []
            var wall: [Double] = []
            for n in 0..<(command.warmup + command.repetitions) {
                let start = monotonicSeconds()
                for k in 0..<chunks {
                    let slot = slots[k % slotCount]
                    let offset = UInt64(k) * chunk
                    let length = Swift.min(chunk, size - offset)
                    // submit waits for the slot's previous copy before reusing its command buffer.
                    try slot.runner.submit(timeout: timeout) { (r) throws(VulkanError) in
                        if k == 0 {
                            try r.resetQueries(pool)
                            try r.writeTimestamp(pool, index: 0, stage: .top)
                        }
                        try r.copy(from: source, to: slot.buffer, size: length, sourceOffset: offset)
                        if k == chunks - 1 { try r.writeTimestamp(pool, index: 1, stage: .bottom) }
                    }
                }
                for slot in slots { try slot.runner.waitForCompletion(timeout: timeout) }
                let elapsed = (monotonicSeconds() - start) * 1e9
                guard n >= command.warmup else { continue }
                wall.append(elapsed)
                gpu.append(try pool.nanoseconds(from: 0, to: 1))
            }
            var r = result("staged", type: memoryType, size: size, gpu: gpu, wall: wall,
                           verified: spotCheck(slots[(chunks - 1) % slotCount].buffer.bytes,
                                               size: Swift.min(chunk, size - UInt64(chunks - 1) * chunk), value: value))
            r.chunkSize = chunk
            r.slots = slotCount
            results.append(r)
            progress("staged/\(formatBytes(chunk)) \(formatBytes(size)): GPU best \(String(format: "%.2f", r.gpuBestGBps)) GB/s")
        }
        return results
    }

    private func result(_ destination: String, type: MemoryTypeInfo, size: UInt64, gpu: [Double], wall: [Double],
                        verified: Bool) -> GPUBenchResult {
        func rate(_ ns: Double) -> Double { ns > 0 ? Double(size) / ns : 0 }  // bytes per ns = GB/s
        func median(_ values: [Double]) -> Double {
            let s = values.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        return GPUBenchResult(
            destination: destination, memoryType: type.index, memoryFlags: type.properties, size: size,
            chunkSize: nil, slots: nil, gpuNanoseconds: gpu, wallNanoseconds: wall,
            gpuBestGBps: rate(gpu.min() ?? 0), gpuMedianGBps: rate(median(gpu)),
            wallBestGBps: rate(wall.min() ?? 0), wallMedianGBps: rate(median(wall)), verified: verified)
    }
}
