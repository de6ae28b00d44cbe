import ArgumentParser
import Foundation
import SelfTest
import Verbs
import VulkanMemory

struct GPUExchangeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpu-exchange",
        abstract: "Vulkan memory from one host's GPU into another's through the transfer engine, every strategy, verified on both sides.")

    @Flag(help: "Serve one client.") var server = false
    @Option(help: "Connect to the server at HOST.") var client: String?
    @Option(help: "Address to listen on (server).") var bind: String?
    @Option(help: "Port.") var port: UInt16 = 18540
    @Option(help: "Sizes in bytes (default 1, 4095, 1 MiB, 64 MiB + 1); both sides must give the same.") var size: [Int] = []
    @Option(help: "Strategies (default: all); both sides must give the same.") var strategy: [String] = []
    @Flag(help: "Enable the VK_NV_external_memory_rdma emulation layer.") var layer = false
    @Option(help: "Seconds any wait may take.") var timeout: Int = 120

    func validate() throws {
        if server == (client != nil) { throw ValidationError("give exactly one of --server and --client HOST") }
        for s in size where s <= 0 { throw ValidationError("--size must be at least 1 byte, got \(s)") }
        for s in strategy where MemoryStrategy(rawValue: s) == nil { throw ValidationError("unknown strategy \(s)") }
    }

    func run() throws {
        let strategies = strategy.isEmpty ? MemoryStrategy.allCases : strategy.compactMap(MemoryStrategy.init(rawValue:))
        let items = GPUExchange.items(strategies: strategies, sizes: size.isEmpty ? [1, 4095, 1 << 20, (64 << 20) + 1] : size)
        let role = server ? "server" : "client"
        let checks: [LoopbackCheck]
        do {
            let device = try VulkanDevice(instance: try makeVulkanInstance(layer: layer), deviceIndex: 0)
            if server {
                let listener = try Listener(address: bind, port: port)
                print("gpu-exchange: listening on \(bind ?? "*"):\(listener.port), Vulkan \(device.physicalDevice.name)")
                checks = try GPUExchange.serve(listener: listener, device: device, items: items, timeout: .seconds(timeout))
            } else {
                checks = try GPUExchange.connect(host: client!, port: port, device: device, items: items,
                                                 timeout: .seconds(timeout), retryFor: .seconds(timeout))
            }
        } catch {
            fail(error)
        }
        for check in checks { print("gpu-exchange[\(role)]: \(check)") }
        let ran = checks.filter { !$0.unsupported }
        let failed = ran.filter { !$0.passed }.count
        print("gpu-exchange[\(role)]: \(ran.count - failed) passed, \(failed) failed, \(checks.count - ran.count) not available")
        if failed > 0 || ran.isEmpty { throw ExitCode(1) }
    }
}
