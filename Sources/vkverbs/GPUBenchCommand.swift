import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Doctor
import Foundation
import VulkanMemory

// `vkverbs gpu-bench`: how fast the GPU copies between device-local memory and host memory that
// a NIC would register, both ways, timed by GPU timestamps and by the wall clock; and what each
// way of waiting for a submission costs.

/// One destination, one direction, one size.
struct GPUBenchResult: Codable {
    /// host-import, host-visible, host-cached, or staged.
    var destination: String
    /// d2h: device-local -> host memory (what a sender needs); h2d: host memory -> device-local.
    var direction: String
    var memoryType: Int
    var memoryFlags: [String]
    var size: UInt64
    /// Staged only: bytes per bounce copy and bounce buffers in the ring.
    var chunkSize: UInt64?
    var slots: Int?
    /// Single copies: regions the copy was split into (one vkCmdCopyBuffer); nil: one.
    var split: Int? = nil
    /// Single copies: "shader" when a compute shader copied, "two-queues" when two halves ran on
    /// two queues at once (GPU time: the longer half); nil: vkCmdCopyBuffer.
    var copier: String? = nil
    /// The barrier each recording ended with; staged: nil when the ring chose by direction.
    var closingBarrier: String? = nil
    /// The queue family the copies ran on.
    var queueFamily: UInt32? = nil
    /// GPU time from a timestamp before the (first) copy to one after the (last) copy.
    var gpuNanoseconds: [Double]
    /// Submitting and waiting (for staged: the whole ring, every chunk).
    var wallNanoseconds: [Double]
    var gpuBestGBps: Double
    var gpuMedianGBps: Double
    var wallBestGBps: Double
    var wallMedianGBps: Double
    /// The wall clock again over as many copies recorded without the timestamps (and their
    /// query reset): the copy as an application submits it.
    var wallUntimedNanoseconds: [Double]? = nil
    var wallUntimedBestGBps: Double? = nil
    var wallUntimedMedianGBps: Double? = nil
    /// The copied bytes were spot-checked (every 4096th word and the last) after the runs.
    var verified: Bool
}

/// One way of submitting and waiting, at one size: a command buffer recorded once, submitted
/// `iterations` times, each submission waited for before the next.
struct SyncProbeResult: Codable {
    /// fence-block, fence-poll, timeline-block, timeline-poll, timeline-default, or
    /// timeline-default-rerecord (recorded anew each time).
    var method: String
    var size: UInt64
    var iterations: Int
    var medianMicroseconds: Double
    var p10Microseconds: Double
    var p90Microseconds: Double
    /// The barrier the recording ends with (full, copy-to-host, none).
    var closingBarrier: String? = nil
    /// Per phase, medians: recording (rerecord only), the `vkQueueSubmit` call, and from its
    /// return until the host saw the completion (the GPU's start, the copy, the signal, the wake).
    var recordMedianMicroseconds: Double? = nil
    var submitMedianMicroseconds: Double? = nil
    var waitMedianMicroseconds: Double? = nil
    /// Timed methods: the copy by GPU timestamps; the wait less this is launch, signal and wake.
    var gpuMedianMicroseconds: Double? = nil
}

struct GPUBenchReport: Codable {
    var device: String
    var deviceIndex: Int
    var deviceType: String
    var driver: DriverInfo?
    var timestampPeriodNanoseconds: Double
    var timestampValidBits: UInt32
    var sourceMemoryType: Int
    var sourceMemoryFlags: [String]
    var repetitions: Int
    var warmup: Int
    var sizes: [UInt64]
    /// How the copies were submitted and waited for.
    var completion: String
    var spinMicroseconds: Double
    /// The barrier each measured recording ends with.
    var closingBarrier: String
    /// The queue family the copies ran on, why, and what was measured to choose it.
    var copyQueue: CopyQueueChoice? = nil
    /// Staged receiving: when each chunk's copy was submitted (on-release or up-front).
    var receiveSubmission: String? = nil
    var method = "copies on the device's copy queue (copyQueue); single copies: one command buffer recorded once per size and direction, resubmitted; "
        + "staged: StagingRing, every chunk queued up front, timeline semaphores, the host releasing a slot as soon as its copy is seen"
    var results: [GPUBenchResult]
    var syncProbe: [SyncProbeResult]
    /// Destinations that could not be measured, and why.
    var notes: [String]
    /// GB/s here are 10^9 bytes per second.
    var unit = "GB/s = 1e9 bytes/s"
}

struct GPUBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpu-bench",
        abstract: "Bandwidth of GPU copies (vkCmdCopyBuffer) between device-local memory and host memory a NIC would register.",
        discussion: """
        Destinations: host-import (host pages imported with VK_EXT_external_memory_host, the \
        host-import strategy), host-visible (a mapped HOST_VISIBLE|HOST_COHERENT type that is not \
        DEVICE_LOCAL, i.e. system memory), host-cached (the same with HOST_CACHED), and staged (the \
        staged pipeline's GPU side, StagingRing: the size in --chunk pieces through a ring of --slots \
        host-visible bounce buffers, every chunk queued up front and ordered by timeline semaphores, the \
        host releasing each slot as soon as it sees the chunk copied, as if the NIC took no time). \
        Directions: d2h (device-local -> host memory) and h2d (host memory -> device-local). \
        Each size is copied --warmup times unmeasured, then --repetitions times, timed by \
        vkCmdWriteTimestamp (top of pipe before, bottom of pipe after, times timestampPeriod) and by the \
        wall clock around submitting and waiting; single copies use a command buffer recorded once per \
        size and direction. Best and median GB/s (1e9 B/s). --probe-sizes adds the cost of one \
        submission and wait by each completion signal and wait (fence or timeline, blocking or polling).
        """)

    @Option(help: "Smallest size in bytes.") var min: UInt64 = 4 << 10
    @Option(help: "Largest size in bytes.") var max: UInt64 = 1 << 30
    @Option(help: "Each size is the last one times this (2 or 4).") var factor: UInt64 = 4
    @Option(name: .shortAndLong, help: "Measured copies per size.") var repetitions: Int = 20
    @Option(help: "Unmeasured copies per size first.") var warmup: Int = 2
    @Option(help: "Destinations, comma-separated: host-import, host-visible, host-cached, staged.")
    var destinations: String = "host-import,host-visible,host-cached,staged"
    @Option(help: "Directions, comma-separated: d2h, h2d.") var directions: String = "d2h,h2d"
    @Option(help: "Staged: bytes per bounce copy (repeat for several).") var chunk: [UInt64] = [1 << 20, 4 << 20, 16 << 20]
    @Option(help: "Staged: bounce buffers in the ring (repeat for several).") var slots: [Int] = [3]
    @Option(help: "Microseconds the host polls a submission's status before blocking (default: per device type).")
    var spinMicroseconds: Int?
    @Option(help: "Completion signal of single copies: timeline or fence (default: timeline where the device has it).")
    var completion: String?
    @Option(help: "Barrier each copy's recording ends with: full, copy-to-host (d2h only), copy-to-device (h2d only) or none (default: by direction, copy-to-host d2h; h2d none, the check waiting on the copy's semaphore, or copy-to-device with --completion fence).")
    var closingBarrier: String?
    @Option(help: "Single copies: regions per vkCmdCopyBuffer (repeat for several; 1 by default).") var split: [Int] = [1]
    @Option(help: "Single copies: what copies, copy-command (vkCmdCopyBuffer) or shader (a compute shader); repeat for both.")
    var copier: [String] = ["copy-command"]
    @Flag(help: "Single copies: each split in two halves, one on the large-copy queue and one on the copy queue (families that differ), submitted together and both waited for.")
    var twoQueues = false
    @Option(help: "Shader copies: workgroups of 256 invocations.") var shaderGroups: UInt32 = 4096
    @Option(help: "Sizes for the submission probe (repeat; none: no probe).") var probeSizes: [UInt64] = []
    @Option(help: "Submissions per method and size in the probe.") var probeIterations: Int = 2000
    @Option(help: "Queue family the copies run on: auto (measured), main, or a family index (default: \(CopyQueueFamily.environmentVariable), else auto).")
    var copyFamily: String?
    @Option(help: "Staged h2d: when a chunk's copy is submitted, on-release or up-front (default: on-release).")
    var receiveSubmission: String?
    @Option(help: "Vulkan physical device index (default: the first GPU, else device 0).") var device: Int?
    @Option(help: "Seconds each GPU submission may take.") var timeout: Int = 60
    @Flag(help: "Print JSON.") var json = false

    static let knownDestinations = ["host-import", "host-visible", "host-cached", "staged"]
    static let knownDirections = ["d2h", "h2d"]

    var destinationList: [String] { destinations.split(separator: ",").map { String($0) } }
    var directionList: [String] { directions.split(separator: ",").map { String($0) } }

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
        if slots.contains(where: { $0 < 1 }) { throw ValidationError("--slots must be at least 1") }
        if chunk.contains(where: { $0 == 0 || $0 % 4 != 0 }) { throw ValidationError("--chunk must be a positive multiple of 4") }
        if let spin = spinMicroseconds, spin < 0 { throw ValidationError("--spin-microseconds must be >= 0") }
        if let c = closingBarrier, ClosingBarrier(rawValue: c) == nil {
            throw ValidationError("--closing-barrier must be full, copy-to-host, copy-to-device or none")
        }
        if split.contains(where: { $0 < 1 || $0 > 64 }) { throw ValidationError("--split must be 1 ... 64") }
        if copier.contains(where: { $0 != "copy-command" && $0 != "shader" }) {
            throw ValidationError("--copier must be copy-command or shader")
        }
        if copier.contains("shader") && (min % 16 != 0 || shaderGroups < 1) {
            throw ValidationError("--copier shader needs --min a multiple of 16 and --shader-groups >= 1")
        }
        if let f = copyFamily, CopyQueueFamily(f) == nil { throw ValidationError("--copy-family must be auto, main or a queue family index") }
        if let r = receiveSubmission, StagingRing.ReceiveSubmission(rawValue: r) == nil {
            throw ValidationError("--receive-submission must be on-release or up-front")
        }
        if let c = completion, GPUCommandRunner.Completion(rawValue: c) == nil {
            throw ValidationError("--completion must be timeline or fence")
        }
        if probeSizes.contains(where: { $0 == 0 || $0 % 4 != 0 }) || probeIterations < 1 {
            throw ValidationError("--probe-sizes must be positive multiples of 4 and --probe-iterations >= 1")
        }
        for d in destinationList where !Self.knownDestinations.contains(d) {
            throw ValidationError("unknown destination \(d) (known: \(Self.knownDestinations.joined(separator: ", ")))")
        }
        for d in directionList where !Self.knownDirections.contains(d) {
            throw ValidationError("unknown direction \(d) (known: d2h, h2d)")
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
              + "timestamp period \(report.timestampPeriodNanoseconds) ns, \(report.repetitions) runs per size (GB/s = 1e9 B/s), "
              + "\(report.completion), spin \(report.spinMicroseconds) us")
        if let q = report.copyQueue {
            print("copy queue family \(q.family) below \(CopyQueueChoice.largeCopyBytes >> 20) MiB, \(q.largeFamily) from there "
                  + "(main \(q.mainFamily)): \(q.reason)")
            for t in q.timings {
                print("  family \(t.family): " + t.copies.map {
                    "\($0.direction) \(formatBytes($0.bytes)) \(String(format: "%.1f", $0.microseconds)) us"
                }.joined(separator: ", "))
            }
        }
        let header = ["destination", "dir", "type", "size", "GPU best", "GPU median", "wall best", "wall median", "untimed best", "ok"]
        print(header.map { $0.padding(toLength: 13, withPad: " ", startingAt: 0) }.joined())
        for r in report.results {
            let name = r.chunkSize.map { "\(r.destination)/\(formatBytes($0))x\(r.slots ?? 0)" }
                ?? (r.split.map { "\(r.destination)/split\($0)" } ?? (r.copier.map { "\(r.destination)/\($0)" } ?? r.destination))
            let row = [name, r.direction, "\(r.memoryType)", formatBytes(r.size),
                       String(format: "%.2f", r.gpuBestGBps), String(format: "%.2f", r.gpuMedianGBps),
                       String(format: "%.2f", r.wallBestGBps), String(format: "%.2f", r.wallMedianGBps),
                       r.wallUntimedBestGBps.map { String(format: "%.2f", $0) } ?? "-", r.verified ? "yes" : "NO"]
            print(row.map { $0.padding(toLength: 13, withPad: " ", startingAt: 0) }.joined())
        }
        if !report.syncProbe.isEmpty {
            print("")
            print("submission probe (one copy recorded once, submitted and waited for; microseconds per copy):")
            for p in report.syncProbe {
                print("  \(p.method.padding(toLength: 34, withPad: " ", startingAt: 0)) \(formatBytes(p.size).padding(toLength: 9, withPad: " ", startingAt: 0)) "
                      + String(format: "median %8.1f  p10 %8.1f  p90 %8.1f  submit %6.1f  wait %8.1f", p.medianMicroseconds,
                               p.p10Microseconds, p.p90Microseconds, p.submitMedianMicroseconds ?? 0, p.waitMedianMicroseconds ?? 0)
                      + (p.gpuMedianMicroseconds.map { String(format: "  GPU %8.1f", $0) } ?? ""))
            }
        }
        for note in report.notes { print("note: \(note)") }
    }
}

/// The measurement itself.
struct Bench {
    let device: VulkanDevice
    let command: GPUBenchCommand
    /// On the copy queue: every copy below 16 MiB and every fill.
    let runner: GPUCommandRunner
    /// On the queue for larger copies (`VulkanDevice.largeCopyQueue`).
    let largeRunner: GPUCommandRunner
    /// On the main queue: the shader copies (a copy queue may have no compute).
    let shaderRunner: GPUCommandRunner
    let pool: TimestampQueryPool
    /// Timestamps written on the queue for larger copies.
    let largePool: TimestampQueryPool
    let timeout: Duration
    let hostWait: HostWait
    /// The barrier named by --closing-barrier; nil: by direction (`closing(for:)`).
    let closingOverride: ClosingBarrier?
    /// The compute kernel of `--copier shader`, made on first use.
    let kernelBox = KernelBox()
    final class KernelBox { var kernel: ComputeKernel? }

    func copyKernel() throws(VulkanError) -> ComputeKernel {
        if let k = kernelBox.kernel { return k }
        let k = try ComputeKernel(device: device, spirv: CopyShader.spirv, pushConstantSize: CopyShader.pushConstantSize,
                                  storageBuffers: 2)
        kernelBox.kernel = k
        return k
    }

    init(physical: PhysicalDevice, command: GPUBenchCommand) throws(VulkanError) {
        device = try VulkanDevice(physicalDevice: physical, options: .init(copyQueue: command.copyFamily.flatMap(CopyQueueFamily.init)))
        self.command = command
        hostWait = command.spinMicroseconds.map { HostWait(spin: .microseconds($0)) } ?? .default(for: device)
        let completion = command.completion.flatMap(GPUCommandRunner.Completion.init(rawValue:))
        runner = try GPUCommandRunner(device: device, queue: .copy, completion: completion, hostWait: hostWait)
        largeRunner = try GPUCommandRunner(device: device, queue: .largeCopy, completion: completion, hostWait: hostWait)
        shaderRunner = try GPUCommandRunner(device: device, queue: .main, completion: completion, hostWait: hostWait)
        pool = try TimestampQueryPool(device: device, count: 2, queue: .copy)
        largePool = try TimestampQueryPool(device: device, count: 2, queue: .largeCopy)
        timeout = .seconds(command.timeout)
        closingOverride = command.closingBarrier.flatMap(ClosingBarrier.init(rawValue:))
    }

    /// The barrier a single copy ends with: the one named, else what `StagingRing` ends its
    /// chunks with by direction: copy-to-host for d2h (the host or the NIC reads the destination
    /// next; 1.5-2 us less per copy than full on an H200); for h2d none, as for an application
    /// whose GPU work waits on the copy's semaphore (the check here does: `checkLocal`), or with
    /// fence completion (no semaphore to wait on) copy-to-device, full into mapped memory.
    func closing(for direction: String, local: DeviceBuffer) -> ClosingBarrier {
        closingOverride ?? StagingRing.closing(for: direction == "d2h" ? .toSlots : .fromSlots, buffer: local,
                                               readers: runner.completion == .timeline ? .semaphoreWaiters : .any)
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
        let local = try DeviceBuffer(device: device, size: largest, hostVisible: false)
        let typeNames: [UInt32: String] = [0: "other", 1: "integrated-gpu", 2: "discrete-gpu", 3: "virtual-gpu", 4: "cpu"]
        var report = GPUBenchReport(
            device: physical.name, deviceIndex: physical.index,
            deviceType: typeNames[physical.properties.deviceType.rawValue] ?? "\(physical.properties.deviceType.rawValue)",
            driver: try? physical.driverInfo(),
            timestampPeriodNanoseconds: pool.period, timestampValidBits: pool.validBits,
            sourceMemoryType: local.memoryType.index, sourceMemoryFlags: local.memoryType.properties,
            repetitions: command.repetitions, warmup: command.warmup, sizes: sizes,
            completion: runner.completion.rawValue,
            spinMicroseconds: Double(hostWait.spin.components.seconds) * 1e6 + Double(hostWait.spin.components.attoseconds) / 1e12,
            closingBarrier: closingOverride?.rawValue ?? "by direction: copy-to-host d2h; h2d none, its reader waiting on the copy's semaphore",
            copyQueue: device.copyQueueChoice,
            receiveSubmission: command.receiveSubmission ?? StagingRing.ReceiveSubmission.onRelease.rawValue,
            results: [], syncProbe: [], notes: [])
        if !local.memoryType.properties.contains("DEVICE_LOCAL_BIT") {
            report.notes.append("the device-local buffer is not DEVICE_LOCAL (memory type \(local.memoryType.index)): this device has no separate GPU memory")
        }
        if command.twoQueues, largeRunner.queue.family == runner.queue.family {
            report.notes.append("--two-queues: the copy queue and the large-copy queue are of one family (\(runner.queue.family)): single copies ran whole")
        }
        if !command.probeSizes.isEmpty {
            report.syncProbe = try probe(local: local, progress: progress)
        }
        let visible = ["HOST_VISIBLE_BIT", "HOST_COHERENT_BIT"]
        for destination in command.destinationList {
            // Each destination's buffer is made once, at the largest size, and freed before the next.
            let host: DeviceBuffer
            var keepAlive: VulkanAllocation?
            do {
                switch destination {
                case "host-import":
                    let allocation = try device.allocate(size: largest, strategy: .hostPointerImport)
                    keepAlive = allocation
                    host = allocation.buffer
                case "host-visible", "staged":
                    guard let type = try memoryType(required: visible, excluded: ["DEVICE_LOCAL_BIT"], avoid: ["HOST_CACHED_BIT"])
                        ?? memoryType(required: visible, excluded: [])
                    else { throw VulkanError.noMemoryType(needs: "HOST_VISIBLE|HOST_COHERENT", memoryTypeBits: 0) }
                    if destination == "staged" {
                        for chunk in command.chunk {
                            for slots in command.slots {
                                report.results += try measureStaged(local: local, memoryType: type, chunk: chunk, slotCount: slots,
                                                                    sizes: sizes, progress: progress)
                            }
                        }
                        continue
                    }
                    host = try DeviceBuffer(device: device, size: largest, memoryTypeIndex: type.index, map: true)
                default:  // host-cached
                    guard let type = try memoryType(required: visible + ["HOST_CACHED_BIT"], excluded: ["DEVICE_LOCAL_BIT"]) else {
                        report.notes.append("host-cached: no HOST_VISIBLE|HOST_COHERENT|HOST_CACHED type outside DEVICE_LOCAL memory")
                        continue
                    }
                    host = try DeviceBuffer(device: device, size: largest, memoryTypeIndex: type.index, map: true)
                }
            } catch {
                report.notes.append("\(destination): \(error)")
                continue
            }
            for direction in command.directionList {
                for copier in command.copier {
                    for regions in (copier == "shader" ? [1] : command.split) {
                        for size in sizes {
                            let r = try measure(destination, direction: direction, local: local, host: host, size: size, regions: regions,
                                                shader: copier == "shader")
                            report.results.append(r)
                            progress("\(destination)\(regions > 1 ? "/split\(regions)" : "")\(copier == "shader" ? "/shader" : "") "
                                     + "\(direction) \(formatBytes(size)): GPU best \(String(format: "%.2f", r.gpuBestGBps)), "
                                     + "wall best \(String(format: "%.2f", r.wallBestGBps)) GB/s")
                        }
                    }
                }
            }
            _ = keepAlive
        }
        return report
    }

    /// A value for the source that no earlier size left behind.
    private func marker(_ size: UInt64, _ salt: UInt64 = 0) -> UInt32 {
        UInt32(truncatingIfNeeded: (size &* 2_654_435_761) ^ (salt &* 40503) ^ 0x5A00_0000) | 1
    }

    private func fill(_ buffer: DeviceBuffer, size: UInt64, value: UInt32) throws(VulkanError) {
        try runner.run(timeout: timeout) { (r) throws(VulkanError) in try r.fill(buffer, value: value, offset: 0, size: size) }
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

    /// The device-local bytes hold `value`: copied back into `host` (cleared first) and spot-checked
    /// there. `after`: the semaphore value of the copy that wrote them, which the copy back waits
    /// for on the GPU (what makes a copy closed without a barrier visible to it, on any queue).
    private func checkLocal(_ local: DeviceBuffer, through host: DeviceBuffer, size: UInt64, value: UInt32,
                            after: (semaphore: TimelineSemaphore, value: UInt64)? = nil) throws(VulkanError) -> Bool {
        try fill(host, size: size, value: 0)
        try runner.submit(timeout: timeout, waitingFor: after) { (r) throws(VulkanError) in try r.copy(from: local, to: host, size: size) }
        try runner.waitForCompletion(timeout: timeout)
        return spotCheck(host.bytes, size: size, value: value)
    }

    private func measure(_ destination: String, direction: String, local: DeviceBuffer, host: DeviceBuffer, size: UInt64,
                         regions: Int = 1, shader: Bool = false) throws(VulkanError) -> GPUBenchResult
    {
        if command.twoQueues, !shader, regions == 1, size >= 8, largeRunner.queue.family != self.runner.queue.family {
            return try measureTwoQueues(destination, direction: direction, local: local, host: host, size: size)
        }
        let toHost = direction == "d2h"
        let value = marker(size, toHost ? 0 : 1)
        try fill(toHost ? local : host, size: size, value: value)
        if !toHost { try fill(local, size: size, value: 0) }
        var gpu: [Double] = []
        var wall: [Double] = []
        // Recorded once; every run below only submits and waits. The queue by size, as a
        // StagingRing picks it; fills and checks stay on the copy queue, after a host wait.
        let large = device.copyRole(forBytes: size) == .largeCopy
        let runner = shader ? shaderRunner : (large ? largeRunner : self.runner)
        let pool = shader ? self.pool : (large ? largePool : self.pool)
        let closing = closing(for: direction, local: local)
        // The copy itself, recorded once with timestamps around it and once without.
        func recordCopy(_ r: CommandRecorder) throws(VulkanError) {
            if shader {
                let words = size / CopyShader.wordSize
                let groups = UInt32(Swift.min(UInt64(command.shaderGroups), (words + UInt64(CopyShader.localSize) - 1) / UInt64(CopyShader.localSize)))
                try r.dispatch(try copyKernel(), buffers: toHost ? [local, host] : [host, local], groups: groups,
                               pushConstants: [UInt32(words)])
            } else {
                try r.copy(from: toHost ? local : host, to: toHost ? host : local, size: size, regions: regions)
            }
        }
        try runner.record(timeout: timeout, closing: closing) { (r) throws(VulkanError) in
            try r.resetQueries(pool)
            try r.writeTimestamp(pool, index: 0, stage: .top)
            try recordCopy(r)
            try r.writeTimestamp(pool, index: 1, stage: .bottom)
        }
        for n in 0..<(command.warmup + command.repetitions) {
            let start = monotonicSeconds()
            try runner.runRecorded(timeout: timeout)
            let elapsed = (monotonicSeconds() - start) * 1e9
            guard n >= command.warmup else { continue }
            wall.append(elapsed)
            gpu.append(try pool.nanoseconds(from: 0, to: 1))
        }
        // The same copies without the timestamps.
        try runner.record(timeout: timeout, closing: closing) { (r) throws(VulkanError) in try recordCopy(r) }
        var untimed: [Double] = []
        for n in 0..<(command.warmup + command.repetitions) {
            let start = monotonicSeconds()
            try runner.runRecorded(timeout: timeout)
            let elapsed = (monotonicSeconds() - start) * 1e9
            if n >= command.warmup { untimed.append(elapsed) }
        }
        // The reader: the host after a full barrier (it covers every earlier submission on the
        // queue), or for h2d a copy back that waits on the last copy's semaphore.
        let after = toHost ? nil : runner.lastSubmission
        if closing != .full && after == nil { try runner.run(timeout: timeout) { _ in } }
        let verified = toHost ? spotCheck(host.bytes, size: size, value: value)
            : try checkLocal(local, through: host, size: size, value: value, after: after)
        var r = result(destination, direction: direction, type: host.memoryType, size: size, gpu: gpu, wall: wall, verified: verified)
        r.setUntimed(untimed, size: size)
        if regions > 1 { r.split = regions }
        r.closingBarrier = closing.rawValue
        r.queueFamily = runner.queue.family
        if shader { r.copier = "shader" }
        return r
    }

    /// One copy as two halves at once: the first on the large-copy queue, the second on the copy
    /// queue (another family, so another copy engine may take it), each recorded once, both
    /// submitted before either is waited for. GPU time: the longer half by its own queue's timestamps.
    private func measureTwoQueues(_ destination: String, direction: String, local: DeviceBuffer, host: DeviceBuffer,
                                  size: UInt64) throws(VulkanError) -> GPUBenchResult {
        let toHost = direction == "d2h"
        let value = marker(size, toHost ? 0 : 1)
        try fill(toHost ? local : host, size: size, value: value)
        if !toHost { try fill(local, size: size, value: 0) }
        // The check below waits for neither half's semaphore: h2d keeps a barrier here.
        let closing = closingOverride ?? StagingRing.closing(for: toHost ? .toSlots : .fromSlots, buffer: local, readers: .any)
        let half = size / 8 * 4
        let halves: [(runner: GPUCommandRunner, pool: TimestampQueryPool, offset: UInt64, bytes: UInt64)] =
            [(largeRunner, largePool, 0, half), (runner, pool, half, size - half)]
        func record(timed: Bool) throws(VulkanError) {
            for h in halves {
                try h.runner.record(timeout: timeout, closing: closing) { (r) throws(VulkanError) in
                    if timed {
                        try r.resetQueries(h.pool)
                        try r.writeTimestamp(h.pool, index: 0, stage: .top)
                    }
                    try r.copy(from: toHost ? local : host, to: toHost ? host : local, size: h.bytes,
                               sourceOffset: h.offset, destinationOffset: h.offset)
                    if timed { try r.writeTimestamp(h.pool, index: 1, stage: .bottom) }
                }
            }
        }
        func runBoth() throws(VulkanError) -> Double {
            let start = monotonicSeconds()
            for h in halves { try h.runner.submitRecorded(timeout: timeout) }
            for h in halves { try h.runner.waitForCompletion(timeout: timeout) }
            return (monotonicSeconds() - start) * 1e9
        }
        var gpu: [Double] = []
        var wall: [Double] = []
        try record(timed: true)
        for n in 0..<(command.warmup + command.repetitions) {
            let elapsed = try runBoth()
            guard n >= command.warmup else { continue }
            wall.append(elapsed)
            gpu.append(Swift.max(try pool.nanoseconds(from: 0, to: 1), try largePool.nanoseconds(from: 0, to: 1)))
        }
        try record(timed: false)
        var untimed: [Double] = []
        for n in 0..<(command.warmup + command.repetitions) {
            let elapsed = try runBoth()
            if n >= command.warmup { untimed.append(elapsed) }
        }
        // A full barrier on each queue before anything reads.
        for h in halves where closing != .full { try h.runner.run(timeout: timeout) { _ in } }
        let verified = toHost ? spotCheck(host.bytes, size: size, value: value)
            : try checkLocal(local, through: host, size: size, value: value)
        var r = result(destination, direction: direction, type: host.memoryType, size: size, gpu: gpu, wall: wall, verified: verified)
        r.setUntimed(untimed, size: size)
        r.copier = "two-queues"
        r.closingBarrier = closing.rawValue
        r.queueFamily = largeRunner.queue.family
        return r
    }

    /// The staged pipeline's GPU side: `size` bytes in `chunk` pieces through a ring of bounce
    /// buffers, the host standing in for a NIC that takes no time.
    private func measureStaged(local: DeviceBuffer, memoryType: MemoryTypeInfo, chunk: UInt64, slotCount: Int, sizes: [UInt64],
                               progress: (String) -> Void) throws(VulkanError) -> [GPUBenchResult] {
        let slotSize = Swift.min(chunk, sizes.last!)
        var slots: [DeviceBuffer] = []
        for _ in 0..<slotCount {
            slots.append(try DeviceBuffer(device: device, size: slotSize, memoryTypeIndex: memoryType.index, map: true))
        }
        let ring = try StagingRing(device: device, slots: slots, chunkSize: slotSize, hostWait: hostWait)
        if let r = command.receiveSubmission.flatMap(StagingRing.ReceiveSubmission.init(rawValue:)) { ring.receiveSubmission = r }
        // Every reader of a received transfer here is the check's copy back, which waits on the
        // ring's semaphore: no barrier after receiving chunks. The ring's own choice by direction
        // otherwise, unless --closing-barrier names one.
        ring.receiveReaders = .semaphoreWaiters
        if let closingOverride { ring.closing = closingOverride }
        var results: [GPUBenchResult] = []
        for direction in command.directionList {
            let toSlots = direction == "d2h"
            for size in sizes {
                // The ring submits each transfer to the queue for its largest chunk: timestamps of that queue.
                let queue = ring.queue(forLength: size)
                let pool = queue === device.largeCopyQueue && device.largeCopyQueue !== device.copyQueue ? largePool : self.pool
                let value = marker(size, chunk &+ (toSlots ? 0 : 1))
                if toSlots {
                    try fill(local, size: size, value: value)
                } else {
                    for slot in slots { try fill(slot, size: slotSize, value: value) }
                    try fill(local, size: size, value: 0)
                }
                var gpu: [Double] = []
                var wall: [Double] = []
                var untimed: [Double] = []
                // Timed (timestamps in the first and last chunk), then again without them.
                for n in 0..<(2 * (command.warmup + command.repetitions)) {
                    let timed = n < command.warmup + command.repetitions
                    ring.timestamps = timed ? pool : nil
                    let start = monotonicSeconds()
                    do {
                        let chunks = try ring.begin(toSlots ? .toSlots : .fromSlots, buffer: local, length: size)
                        if toSlots {
                            // The "NIC write" of chunk k is done the moment the copy is seen.
                            for k in 0..<chunks {
                                try ring.waitCopied(k, timeout: timeout)
                                try ring.release(k)
                            }
                        } else {
                            // Each slot "arrives" filled once its last copy is done.
                            for k in 0..<Swift.min(slotCount, chunks) { try ring.release(k) }
                            for k in 0..<chunks {
                                try ring.waitCopied(k, timeout: timeout)
                                if k + slotCount < chunks { try ring.release(k + slotCount) }
                            }
                        }
                        try ring.finish(timeout: timeout)
                    } catch {
                        ring.abort(timeout: timeout)
                        throw error
                    }
                    let elapsed = (monotonicSeconds() - start) * 1e9
                    let m = n % (command.warmup + command.repetitions)
                    guard m >= command.warmup else { continue }
                    if timed {
                        wall.append(elapsed)
                        gpu.append(try pool.nanoseconds(from: 0, to: 1))
                    } else {
                        untimed.append(elapsed)
                    }
                }
                ring.timestamps = pool
                let chunks = Int((size + chunk - 1) / chunk)
                let closing = ring.closingBarrier(for: toSlots ? .toSlots : .fromSlots, buffer: local)
                if toSlots && closing != .full { try runner.run(timeout: timeout) { _ in } }
                let verified: Bool
                if toSlots {
                    verified = spotCheck(slots[(chunks - 1) % slotCount].bytes,
                                         size: Swift.min(chunk, size - UInt64(chunks - 1) * chunk), value: value)
                } else {
                    // The whole device-local range, read back a slot at a time.
                    var ok = true
                    var offset: UInt64 = 0
                    while ok && offset < size {
                        let n = Swift.min(slotSize, size - offset)
                        try fill(slots[0], size: n, value: 0)
                        // Each copy back waits on the ring's semaphore, as an application's reader does.
                        try runner.submit(timeout: timeout, waitingFor: ring.completion) { (r) throws(VulkanError) in
                            try r.copy(from: local, to: slots[0], size: n, sourceOffset: offset)
                        }
                        try runner.waitForCompletion(timeout: timeout)
                        ok = spotCheck(slots[0].bytes, size: n, value: value)
                        offset += n
                    }
                    verified = ok
                }
                var r = result("staged", direction: direction, type: memoryType, size: size, gpu: gpu, wall: wall, verified: verified)
                r.setUntimed(untimed, size: size)
                r.chunkSize = chunk
                r.slots = slotCount
                r.closingBarrier = closing.rawValue
                r.queueFamily = queue.family
                results.append(r)
                progress("staged/\(formatBytes(chunk))x\(slotCount) \(direction) \(formatBytes(size)): GPU best "
                         + "\(String(format: "%.2f", r.gpuBestGBps)), wall best \(String(format: "%.2f", r.wallBestGBps)) GB/s")
            }
        }
        return results
    }

    /// One copy device-local -> host-visible memory per size, submitted and waited for
    /// `probeIterations` times by each completion signal, wait and closing barrier; each phase
    /// (recording, `vkQueueSubmit`, waiting) timed apart, and the copy by GPU timestamps in the
    /// `-timed` methods.
    private func probe(local: DeviceBuffer, progress: (String) -> Void) throws(VulkanError) -> [SyncProbeResult] {
        let largest = command.probeSizes.max()!
        guard largest <= local.size else { throw .invalidArgument("--probe-sizes must not exceed --max") }
        let host = try DeviceBuffer(device: device, size: largest, hostVisible: true)
        let poll = HostWait(spin: .seconds(1))  // Polls for as long as any copy here takes.
        struct Method {
            var name: String
            var completion: GPUCommandRunner.Completion
            var wait: HostWait
            var rerecord = false
            var closing = ClosingBarrier.full
            var timed = false
            var toHost = true
        }
        var methods = [Method(name: "fence-block", completion: .fence, wait: .blocking),
                       Method(name: "fence-poll", completion: .fence, wait: poll)]
        if device.timelineSemaphoreEnabled {
            methods += [
                Method(name: "timeline-block", completion: .timeline, wait: .blocking),
                Method(name: "timeline-poll", completion: .timeline, wait: poll),
                Method(name: "timeline-default", completion: .timeline, wait: hostWait),
                Method(name: "timeline-default-rerecord", completion: .timeline, wait: hostWait, rerecord: true),
                Method(name: "timeline-poll-copy-to-host", completion: .timeline, wait: poll, closing: .copyToHost),
                Method(name: "timeline-poll-no-barrier", completion: .timeline, wait: poll, closing: .none),
                Method(name: "timeline-poll-timed", completion: .timeline, wait: poll, timed: true),
                Method(name: "timeline-poll-copy-to-host-timed", completion: .timeline, wait: poll, closing: .copyToHost, timed: true),
                Method(name: "h2d-timeline-poll", completion: .timeline, wait: poll, toHost: false),
                Method(name: "h2d-timeline-poll-no-barrier", completion: .timeline, wait: poll, closing: .none, toHost: false),
            ]
        }
        var out: [SyncProbeResult] = []
        for size in command.probeSizes {
            for m in methods {
                let probeRunner = try GPUCommandRunner(device: device, queue: .copy, completion: m.completion, hostWait: m.wait)
                func record() throws(VulkanError) {
                    try probeRunner.record(timeout: timeout, closing: m.closing) { (r) throws(VulkanError) in
                        if m.timed {
                            try r.resetQueries(pool)
                            try r.writeTimestamp(pool, index: 0, stage: .top)
                        }
                        try r.copy(from: m.toHost ? local : host, to: m.toHost ? host : local, size: size)
                        if m.timed { try r.writeTimestamp(pool, index: 1, stage: .bottom) }
                    }
                }
                try record()
                var total: [Double] = [], recording: [Double] = [], submitting: [Double] = [], waiting: [Double] = [], gpu: [Double] = []
                total.reserveCapacity(command.probeIterations)
                submitting.reserveCapacity(command.probeIterations)
                waiting.reserveCapacity(command.probeIterations)
                for n in 0..<(command.probeIterations + 20) {
                    let t0 = monotonicNanoseconds()
                    if m.rerecord { try record() }
                    let t1 = monotonicNanoseconds()
                    try probeRunner.submitRecorded(timeout: timeout)
                    let t2 = monotonicNanoseconds()
                    try probeRunner.waitForCompletion(timeout: timeout)
                    let t3 = monotonicNanoseconds()
                    guard n >= 20 else { continue }
                    total.append(Double(t3 - t0) / 1e3)
                    if m.rerecord { recording.append(Double(t1 - t0) / 1e3) }
                    submitting.append(Double(t2 - t1) / 1e3)
                    waiting.append(Double(t3 - t2) / 1e3)
                    if m.timed { gpu.append(try pool.nanoseconds(from: 0, to: 1) / 1e3) }
                }
                total.sort()
                func at(_ q: Double) -> Double { total[Swift.min(total.count - 1, Int(Double(total.count) * q))] }
                func median(_ values: [Double]) -> Double? {
                    values.isEmpty ? nil : values.sorted()[values.count / 2]
                }
                out.append(SyncProbeResult(method: m.name, size: size, iterations: command.probeIterations,
                                           medianMicroseconds: at(0.5), p10Microseconds: at(0.1), p90Microseconds: at(0.9),
                                           closingBarrier: m.closing.rawValue, recordMedianMicroseconds: median(recording),
                                           submitMedianMicroseconds: median(submitting), waitMedianMicroseconds: median(waiting),
                                           gpuMedianMicroseconds: median(gpu)))
                progress("probe \(m.name) \(formatBytes(size)): median \(String(format: "%.1f", at(0.5))) us (submit "
                         + "\(String(format: "%.1f", median(submitting) ?? 0)), wait \(String(format: "%.1f", median(waiting) ?? 0)), "
                         + "GPU \(String(format: "%.1f", median(gpu) ?? 0)))")
            }
        }
        return out
    }

    private func result(_ destination: String, direction: String, type: MemoryTypeInfo, size: UInt64, gpu: [Double], wall: [Double],
                        verified: Bool) -> GPUBenchResult {
        func rate(_ ns: Double) -> Double { ns > 0 ? Double(size) / ns : 0 }  // bytes per ns = GB/s
        func median(_ values: [Double]) -> Double {
            let s = values.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        return GPUBenchResult(
            destination: destination, direction: direction, memoryType: type.index, memoryFlags: type.properties, size: size,
            chunkSize: nil, slots: nil, gpuNanoseconds: gpu, wallNanoseconds: wall,
            gpuBestGBps: rate(gpu.min() ?? 0), gpuMedianGBps: rate(median(gpu)),
            wallBestGBps: rate(wall.min() ?? 0), wallMedianGBps: rate(median(wall)), verified: verified)
    }
}

extension GPUBenchResult {
    /// Records the untimed wall clock samples and their best and median GB/s.
    mutating func setUntimed(_ samples: [Double], size: UInt64) {
        guard !samples.isEmpty else { return }
        let sorted = samples.sorted()
        let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        wallUntimedNanoseconds = samples
        wallUntimedBestGBps = sorted[0] > 0 ? Double(size) / sorted[0] : 0
        wallUntimedMedianGBps = median > 0 ? Double(size) / median : 0
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
private func monotonicNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
}
