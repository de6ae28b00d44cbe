import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Doctor
import Foundation
import Sharing
import PingPong
import Verbs
import VulkanMemory

extension RDMAOperation: ExpressibleByArgument {}
extension MeasurementKind: ExpressibleByArgument {}
extension MemoryKind: ExpressibleByArgument {}

/// The Vulkan device pingpong allocates GPU memory on: made on first use, kept for the run.
/// The server's session threads may ask at once: the first makes it, the others wait for it.
final class LazyVulkan: Sendable {
    private let device = Locked<VulkanDevice?>(nil)
    let index: Int
    init(index: Int) { self.index = index }
    func get() throws(VulkanError) -> VulkanDevice {
        try device.withLock { (device: inout VulkanDevice?) throws(VulkanError) -> VulkanDevice in
            if let device { return device }
            let made = try VulkanDevice(instance: try VulkanInstance(), deviceIndex: index)
            device = made
            return made
        }
    }
}

struct PingPongCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pingpong",
        abstract: "Latency or bandwidth between two hosts, as perftest measures it (ib_write_lat, ib_write_bw, ...).",
        discussion: """
        Start `vkverbs pingpong --server` on one host, then `vkverbs pingpong --client HOST` on the other. \
        The server serves clients until stopped (Ctrl-C) or --max-clients is reached, at most \
        --max-sessions at once (default 1: one after another); a client beyond the limit is refused at \
        once with "busy". A client whose buffers would exceed --max-memory (what is left of it, \
        default 256M) is refused at once with "over memory budget", before anything is allocated; \
        a client has min(--timeout, 10) seconds to complete its connection handshake, and a \
        half-open one holds up no other client. With --secret-file on both sides, each side proves it knows the key (an \
        HMAC-SHA256 in the connection's private data) before any buffer is used. \
        Latency is half the round trip for write, write-imm and send (perftest's definition) and the whole \
        read for read; t_typical is the median. Ctrl-C on the client stops and prints what was measured.
        """)

    @Flag(help: "Serve clients.") var server = false
    @Option(help: "Measure against the server at HOST.") var client: String?
    @Option(help: "Address to listen on (server).") var bind: String?
    @Option(name: [.long, .customShort("p")], help: "Port (perftest -p).") var port: UInt16 = 18516
    @Option(help: "RDMAOperation: write, write-imm, send, read.") var op: RDMAOperation = .write
    @Option(help: "What to measure: latency or bandwidth.") var measure: MeasurementKind = .latency
    @Option(name: .shortAndLong, help: "Message size in bytes (perftest -s).") var size: Int = 2
    @Flag(name: [.long, .customShort("a"), .customLong("all")], help: "Sweep sizes from 2 B to 8 MiB (perftest -a, --all).") var sweep = false
    @Option(name: [.short, .customShort("n"), .long, .customLong("iters")], help: "Iterations per size (perftest -n, --iters).")
    var iterations: Int = 1000
    @Option(name: [.long, .customShort("D")], help: "Seconds per size instead of a count (iterations is then the cap; perftest -D).")
    var duration: Int?
    @Option(help: "Warm-up iterations, not measured.") var warmup: Int = 100
    @Option(help: "Memory: host, auto, rdma-address, dma-buf, host-import, host-visible, staged.") var memory: MemoryKind = .host
    @Option(name: [.long, .customShort("d"), .customLong("ib-dev")], help: "RDMA device the run must use (default: the one the address is on; perftest -d).")
    var device: String?
    @Option(help: "Vulkan device index for GPU memory.") var vulkanDevice: Int = 0
    @Option(help: "Bandwidth: work requests in flight.") var window: Int = 128
    @Option(name: [.long, .customShort("I"), .customLong("inline_size")],
            help: "Post messages up to this many bytes inline, as perftest -I (default: 220 for latency, 0 for bandwidth; capped by the device).")
    var inline: Int?
    @Option(help: "Seconds any wait for the peer may take.") var timeout: Int = 30
    @Option(help: "Server: stop after this many clients.") var maxClients: Int?
    @Option(help: "Server: sessions served at once; more clients are refused as busy.") var maxSessions: Int = 1
    @Option(help: ArgumentHelp(
        "Server: memory the sessions' buffers may hold, all together and any one of them, e.g. 256M, 1G (K, M, G: powers of 1024).",
        discussion: "A client needs twice its largest message size plus 128 bytes; one asking for more than is left is refused "
            + "with \"over memory budget\" before anything is allocated. The default serves messages up to just under 128 MiB.",
        valueName: "size"))
    var maxMemory: String = "256M"
    @Option(help: "A file holding a shared key (at least 16 bytes) both sides must know.") var secretFile: String?
    @Option(help: "Client: keep retrying this many seconds while no server listens yet.") var retry: Int = 0
    @Flag(help: ArgumentHelp("Client: no progress lines on standard error during long steps.",
                             discussion: "Nothing in a write, write-imm or send latency step's loop then depends on how long the step "
                                 + "runs (make bench-count counts instructions per iteration so)."))
    var noProgress = false
    @Flag(help: "Print JSON instead of the table.") var json = false
    @Flag(help: "Print CSV instead of the table.") var csv = false
    @Flag(name: [.customShort("R"), .customLong("rdma_cm")], help: "Accepted as perftest -R: connections always go through rdma_cm.")
    var rdmaCM = false
    @Flag(name: [.customShort("F"), .customLong("CPU-freq")], help: "Accepted as perftest -F: a CPU frequency warning never stops a run.")
    var ignoreCPUFrequency = false
    @Flag(name: [.customShort("e"), .long],
          help: "Event mode (perftest -e): receive waits sleep on a completion channel instead of busy-polling; latency of --op send and write-imm. On the server: its sessions wait so.")
    var events = false
    @Flag(name: .customLong("report_gbits"), help: "Bandwidth in Gb/sec (perftest --report_gbits): the table and --out_json.")
    var reportGbits = false
    @Flag(name: .customLong("out_json"), help: "Also write the result as perftest's JSON report (perftest --out_json), to --out_json_file.")
    var outJSON = false
    @Option(name: .customLong("out_json_file"), help: ArgumentHelp("The --out_json file (default perftest_out.json in the working directory).",
                                                                   valueName: "file"))
    var outJSONFile: String?

    func validate() throws {
        if server == (client != nil) { throw ValidationError("give exactly one of --server and --client HOST") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
        if json && csv { throw ValidationError("--json and --csv exclude each other") }
        if !sweep && size <= 0 { throw ValidationError("--size must be at least 1 byte, got \(size)") }
        if size > 1 << 30 { throw ValidationError("--size \(size) is above the 1 GiB limit of one buffer") }
        if iterations <= 0 { throw ValidationError("--iterations must be at least 1") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        if maxSessions < 1 { throw ValidationError("--max-sessions must be at least 1") }
        if maxMemoryBytes == nil {
            throw ValidationError("--max-memory \(maxMemory): expected a positive number of bytes with an optional K, M or G, e.g. 256M")
        }
        if let inline, inline < 0 || inline > 1 << 16 { throw ValidationError("--inline must be in 0...65536 bytes, got \(inline)") }
    }

    /// `--max-memory` in bytes; nil when it does not parse or does not fit an Int.
    var maxMemoryBytes: Int? { parseBytes(maxMemory).flatMap { Int(exactly: $0) } }

    func run() throws {
        installInterruptHandler()
        if let device {
            do { _ = try Context.open(name: device) } catch { fail(error) }  // An unknown name is an error up front.
        }
        let vulkan = LazyVulkan(index: vulkanDevice)
        var secret: SharedSecret?
        if let secretFile {
            do { secret = try SharedSecret(contentsOf: secretFile) } catch { fail("--secret-file: \(error)") }
        }
        if server {
            let srv: PingPongServer
            do {
                srv = try PingPongServer(bind: bind, port: port, memory: memory, timeout: .seconds(timeout),
                                         maxSessions: maxSessions, maxMemory: maxMemoryBytes!, secret: secret, events: events,
                                         vulkan: { () throws(VulkanError) in try vulkan.get() },
                                         log: { line in FileHandle.standardError.write(Data("pingpong server: \(line)\n".utf8)) })
            } catch {
                fail(error)
            }
            if let device, let bound = srv.listener.context?.name, bound != device {
                fail("\(bind ?? "*") belongs to \(bound), not --device \(device)")
            }
            // Unbuffered: scripts wait for this line, and a pipe would otherwise hold it back.
            let sessions = (events ? "event mode, " : "") + "up to \(maxSessions) session\(maxSessions == 1 ? "" : "s") at once, "
                + "memory budget \(formatBytes(srv.budget.total))"
            let line = "pingpong server: listening on \(bind ?? "*"):\(srv.listener.port), memory \(memory.rawValue), \(sessions)"
                + (secret == nil ? "" : ", shared secret required")
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
            let failed = srv.serve(maxClients: maxClients)
            if failed > 0 { throw ExitCode(1) }
            return
        }
        var config = PingPongConfiguration()
        config.operation = op
        config.measurement = measure
        config.sizes = sweep ? PingPongConfiguration.sweep : [size]
        config.iterations = iterations
        config.duration = duration.map { .seconds($0) }
        config.warmup = warmup
        config.memory = memory
        config.timeout = .seconds(timeout)
        config.window = window
        config.device = device
        config.inline = inline
        config.events = events
        if noProgress { config.progressInterval = nil }
        let result: PingPongResult
        do {
            result = try PingPongClient.run(host: client!, port: port, config: config, retry: .seconds(retry),
                                            secret: secret, vulkan: { () throws(VulkanError) in try vulkan.get() },
                                            progress: { FileHandle.standardError.write(Data("progress: \($0)\n".utf8)) })
        } catch {
            if case let .verbs(.connection(failure)) = error, failure.isNoListener {
                fail("no vkverbs pingpong server listens on \(client!):\(port) (start `vkverbs pingpong --server` there, or pass --retry SECONDS)")
            }
            fail(error)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else if csv {
            print(Report.csv(result))
        } else {
            print(Report.table(result, gbits: reportGbits))
        }
        if outJSON || outJSONFile != nil {
            let path = outJSONFile ?? "perftest_out.json"
            guard FileManager.default.createFile(atPath: path, contents: Data(Report.perftestJSON(result, gbits: reportGbits).utf8)) else {
                fail("--out_json_file \(path): cannot write the file")
            }
        }
        if result.interrupted { throw ExitCode(130) }
    }
}

/// Ctrl-C sets a flag the measuring loops check, so they stop cleanly and report.
func installInterruptHandler() {
    signal(SIGINT) { _ in
        if stopRequested.exchange(true, ordering: .relaxed) { _exit(130) }  // A second Ctrl-C leaves at once.
    }
}
