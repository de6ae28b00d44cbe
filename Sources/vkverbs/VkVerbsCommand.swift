import ArgumentParser

@main
struct VkVerbsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vkverbs",
        abstract: "Vulkan GPU memory to RDMA NICs: device report, self-test, exchange between hosts.",
        subcommands: [DevicesCommand.self, SelfTestCommand.self, LoopbackCommand.self, GPUExchangeCommand.self, SinkCommand.self, StreamCommand.self, TransferBenchCommand.self, ExchangeCommand.self, PingPongCommand.self, VulkanCommand.self,
                      GPUBenchCommand.self])
}
