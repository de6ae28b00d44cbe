import ArgumentParser
import CVerbs
import Foundation
import SelfTest
import Transfer
import Verbs
import VulkanMemory
import VulkanRegistration

/// The engine's throughput from each memory strategy, and the staged
/// pipeline's overlap efficiency = pipeline throughput / min(GPU copy, link) measured in the same run.
struct TransferBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transfer-bench",
        abstract: "Transfer-engine throughput per memory strategy, and the staged pipeline's overlap efficiency (over a local RDMA device).")

    @Option(help: "Sizes in bytes (default 4 KiB, 64 KiB, 1 MiB, 16 MiB, 64 MiB).") var size: [Int] = []
    @Option(help: "Bytes moved per measurement (at least one message).") var volume: Int = 64 << 20
    @Option(help: "Staged pipeline: chunk size.") var chunk: Int = 1 << 20
    @Option(help: "Staged pipeline: bounce buffers.") var slots: Int = 3
    @Option(help: "Staged pipeline: bytes per transfer.") var stagedSize: Int = 64 << 20
    @Option(help: "Vulkan device index.") var vulkanDevice: Int = 0
    @OptionGroup var rdma: RDMAPortOptions
    @Flag(help: "Print JSON.") var json = false

    struct Row: Codable { var strategy: String; var bytes: Int; var messages: Int; var mbps: Double }
    struct Overlap: Codable {
        var bytes: Int; var chunk: Int; var slots: Int
        var gpuCopyMBps: Double; var linkMBps: Double; var pipelineMBps: Double; var efficiency: Double
    }
    struct Output: Codable { var device: String; var vulkan: String; var rows: [Row]; var overlap: Overlap? }

    func run() throws {
        let local = rdma.localPort()
        do {
            let vk = try VulkanDevice(instance: try makeVulkanInstance(layer: false), deviceIndex: vulkanDevice)
            let pair = try ConnectedPair(address: local.address)
            let engine = try TransferEngine(connection: pair.client, options: .init(timeout: .seconds(300)))
            let sizes = size.isEmpty ? [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20] : size
            let target = try pair.server.pd.register(HostBuffer(count: max(sizes.max()!, stagedSize)), access: .remote)
            var out = Output(device: local.context.name, vulkan: vk.physicalDevice.name, rows: [], overlap: nil)
            let nic = NICCapabilities.probe(pd: pair.client.pd)
            for strategy in MemoryStrategy.allCases {
                for bytes in sizes {
                    guard let allocation = try? vk.allocate(size: UInt64(bytes), strategy: strategy, nic: nic) else { break }
                    let source = try allocation.registrable.register(with: pair.client.pd, access: .local)
                    let messages = max(1, volume / bytes)
                    let t0 = vkv_monotonic_ns()
                    for _ in 0..<messages { _ = try engine.postWrite(try source.segment(), to: target.remoteBuffer) }
                    try engine.drain()
                    let mbps = Double(bytes * messages) / (Double(vkv_monotonic_ns() - t0) / 1e9) / 1e6
                    out.rows.append(Row(strategy: strategy.rawValue, bytes: bytes, messages: messages, mbps: mbps))
                    if !json { print("transfer-bench: \(strategy.rawValue.padded(18)) \(formatSize(bytes).padded(8)) x\(messages): \(String(format: "%.1f", mbps)) MB/s") }
                }
            }
            out.overlap = try overlap(vk: vk, engine: engine, pd: pair.client.pd, remote: target.remoteBuffer)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(out), as: UTF8.self))
            } else if let o = out.overlap {
                print(String(format: "transfer-bench: staged %@ in %@ chunks x%d slots: GPU copy %.1f MB/s, link %.1f MB/s, pipeline %.1f MB/s, overlap efficiency %.2f (target >= 0.85)",
                             formatSize(o.bytes), formatSize(o.chunk), o.slots, o.gpuCopyMBps, o.linkMBps, o.pipelineMBps, o.efficiency))
            }
        } catch {
            fail(error)
        }
    }

    /// GPU copy alone, link alone and the pipeline, over the same bytes in the same chunks.
    private func overlap(vk: VulkanDevice, engine: TransferEngine, pd: ProtectionDomain, remote: RemoteBuffer) throws -> Overlap {
        let source = try DeviceBuffer(device: vk, size: UInt64(stagedSize), hostVisible: false)
        let bounce = try DeviceBuffer(device: vk, size: UInt64(chunk), hostVisible: true)
        let runner = try GPUCommandRunner(device: vk)
        let chunks = (stagedSize + chunk - 1) / chunk
        func piece(_ k: Int) -> Int { min(chunk, stagedSize - k * chunk) }
        // GPU: each chunk copied into a host-visible buffer, one submission per chunk as the pipeline does.
        var t0 = vkv_monotonic_ns()
        for k in 0..<chunks {
            try runner.copy(from: source, to: bounce, size: UInt64(piece(k)), timeout: .seconds(60))
        }
        let gpu = Double(stagedSize) / (Double(vkv_monotonic_ns() - t0) / 1e9) / 1e6
        // Link: the same chunks from registered host memory.
        let host = try pd.register(HostBuffer(count: chunk), access: .local)
        t0 = vkv_monotonic_ns()
        for k in 0..<chunks {
            _ = try engine.postWrite(try host.segment(offset: 0, length: piece(k)), to: remote, at: UInt64(k * chunk))
        }
        try engine.drain()
        let link = Double(stagedSize) / (Double(vkv_monotonic_ns() - t0) / 1e9) / 1e6
        // Both at once, overlapped.
        let pipeline = try StagedPipeline(engine: engine, device: vk, chunkSize: chunk, slotCount: slots)
        t0 = vkv_monotonic_ns()
        try pipeline.write(from: source, to: remote)
        let both = Double(stagedSize) / (Double(vkv_monotonic_ns() - t0) / 1e9) / 1e6
        return Overlap(bytes: stagedSize, chunk: chunk, slots: slots, gpuCopyMBps: gpu, linkMBps: link,
                       pipelineMBps: both, efficiency: both / min(gpu, link))
    }
}
