import ArgumentParser

@main
struct VkVerbsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vkverbs",
        abstract: "Vulkan GPU memory to RDMA NICs: device report, self-test, exchange between hosts.",
        subcommands: [DevicesCommand.self, DoctorCommand.self, SelfTestCommand.self, LoopbackCommand.self, GPUExchangeCommand.self, SinkCommand.self, StreamCommand.self, FramesCommand.self, TransferBenchCommand.self, PeersBenchCommand.self, ExchangeCommand.self, PingPongCommand.self, VulkanCommand.self,
                      GPUBenchCommand.self])

    /// perftest's flags that pingpong lacks get their own message before parsing, naming the
    /// nearest equivalent, instead of a bare "unknown option".
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "pingpong", let message = PerftestFlags.message(Array(arguments.dropFirst())) {
            fail(message)
        }
        main(nil)
    }
}
