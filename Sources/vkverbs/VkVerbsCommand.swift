import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SelfTest
import Verbs

@main
struct VkVerbsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vkverbs",
        abstract: "Vulkan GPU memory to RDMA NICs: device report, self-test, exchange between hosts.",
        subcommands: [Devices.self, SelfTestCommand.self, LoopbackCommand.self, GPUExchangeCommand.self, SinkCommand.self, StreamCommand.self, TransferBenchCommand.self, ExchangeCommand.self, PingPongCommand.self, VulkanCommand.self,
                      GPUBenchCommand.self])
}

/// Prints a message for a typed error and exits non-zero.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("vkverbs: error: \(message)\n".utf8))
    exit(1)
}

func fail(_ error: any Error) -> Never {
    FileHandle.standardError.write(Data("vkverbs: error: \(error)\n".utf8))
    exit(1)
}

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List RDMA devices (ports, GIDs) and Vulkan devices (RDMA capability report, automatic strategy).",
        discussion: """
        The Vulkan part is each physical device's capability report (VK_NV_external_memory_rdma and who \
        provides it, external memory handle types, heaps and budgets, memory types) and the memory strategy \
        the automatic choice takes for a small allocation, with why each better one was not taken; with an \
        RDMA device the NIC side (peer-memory client, dma-buf MRs) is taken into account. No RDMA device or \
        no Vulkan driver is reported, not an error.
        """)

    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Enable the emulation layer VK_LAYER_VKVERBS_rdma_emulation for the Vulkan report.") var layer = false

    /// `--json`: both halves.
    struct Report: Encodable {
        var rdmaDevices: [DeviceInfo]
        /// Why the list is empty, when it is.
        var rdmaNote: String?
        var vulkan: VulkanSurvey
    }

    func run() throws {
        let names = Verbs.Devices.names()
        var infos: [DeviceInfo] = []
        for name in names {
            do { infos.append(try Context.open(name: name).info()) } catch { fail(error) }
        }
        // The first RDMA device's protection domain lets the Vulkan report check the NIC side.
        let pd = names.first.flatMap { name in (try? Context.open(name: name)).flatMap { try? ProtectionDomain(context: $0) } }
        let vulkan = VulkanSurvey.collect(layer: layer, nic: pd)
        let noRDMA = "no RDMA devices (the kernel has no RDMA driver loaded, or /dev/infiniband is missing)"
        if json {
            try printJSON(Report(rdmaDevices: infos, rdmaNote: infos.isEmpty ? noRDMA : nil, vulkan: vulkan))
            return
        }
        print("RDMA:")
        if infos.isEmpty { print("  \(noRDMA)") }
        for info in infos {
            print("  \(info.name): fw \(info.attributes.firmwareVersion), max MR \(info.attributes.maxMRSize) B, dma-buf MRs \(info.dmaBuf)")
            for port in info.ports {
                print("    port \(port.number): \(port.state.rawValue), \(port.linkLayer.rawValue), MTU \(port.activeMTU?.bytes ?? 0), max message \(port.maxMessageSize) B")
                for gid in port.gids { print("      gid[\(gid.index)] \(gid.type.rawValue) \(gid.address)") }
            }
        }
        vulkan.printText()
    }
}

struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Connect to this host through rdmacm and verify send/recv, RDMA write and RDMA read.")

    @Option(help: "Local address of the RDMA device (default: VKVERBS_FABRIC_ADDR, else the device's RoCE v2 address).")
    var address: String?
    @Option(help: "Seconds each step may take.") var timeout: Int = 60

    func run() throws {
        let env: RDMAEnvironment
        switch RDMAEnvironment.detect() {
        case let .success(e): env = e
        case let .failure(reason): fail(reason)
        }
        let address = self.address ?? env.address
        print("selftest: device \(env.context.name) port \(env.port.number) (\(env.port.state.rawValue), MTU \(env.port.activeMTU?.bytes ?? 0)), address \(address)")
        let options = ExchangeOptions(stepTimeout: .seconds(timeout))
        do {
            let (server, client) = try Loopback.run(address: address, options: options)
            printReport(server)
            printReport(client)
            let failed = server.failures + client.failures
            print("selftest: \(server.checks.count + client.checks.count - failed) passed, \(failed) failed")
            if failed > 0 { throw ExitCode(1) }
        } catch let error as VerbsError {
            fail(error)
        }
    }
}

func printReport(_ report: ExchangeReport) {
    print("[\(report.role)] device \(report.device), peer \(report.peer)")
    for check in report.checks { print("[\(report.role)]   \(check)") }
}

struct ExchangeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exchange",
        abstract: "Verify send/recv, RDMA write and read between two hosts: one --server, one --client HOST.")

    @Flag(help: "Wait for one client and serve the exchange.") var server = false
    @Option(help: "Connect to the server at HOST.") var client: String?
    @Option(help: "Address to listen on (server).") var bind: String?
    @Option(help: "Port.") var port: UInt16 = 18515
    @Option(help: "Seconds each step may take (the client also retries connecting this long).") var timeout: Int = 60

    func validate() throws {
        if server == (client != nil) { throw ValidationError("give exactly one of --server and --client HOST") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        let options = ExchangeOptions(stepTimeout: .seconds(timeout))
        do {
            let report: ExchangeReport
            if server {
                let listener = try Listener(address: bind, port: port)
                print("exchange: listening on \(bind ?? "*"):\(listener.port)")
                report = try Exchange.serve(listener: listener, options: options)
            } else {
                report = try Exchange.connect(host: client!, port: port, options: options, retryFor: .seconds(timeout))
            }
            printReport(report)
            print("exchange[\(report.role)]: \(report.checks.count - report.failures) passed, \(report.failures) failed")
            if !report.passed { throw ExitCode(1) }
        } catch let error as VerbsError {
            fail(error)
        }
    }
}
