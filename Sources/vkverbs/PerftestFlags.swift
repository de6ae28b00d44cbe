/// perftest's options that `vkverbs pingpong` does not take, each with what comes nearest.
/// Those that mean the same are options of the command itself (-s -n -a -D -I -R -d -p -F -e
/// --report_gbits --out_json --out_json_file); `-i` is the iteration count here (perftest's
/// --ib-port), as the scripts have always used it.
enum PerftestFlags {
    /// (short, long, nearest equivalent)
    static let unsupported: [(short: String?, long: String, nearest: String)] = [
        ("-c", "--connection", "none: the transport is always RC"),
        ("-m", "--mtu", "the port's active MTU is used; `vkverbs doctor` shows it and how to raise it"),
        ("-x", "--gid-index", "rdma_cm picks the GID from the address: --bind on the server, the address given to --client"),
        ("-t", "--tx-depth", "--window N (bandwidth: work requests in flight)"),
        ("-r", "--rx-depth", "--window N"),
        ("-l", "--post_list", "--window N"),
        ("-Q", "--cq-mod", "--window N"),
        ("-q", "--qp", "none: one queue pair; run several clients against a server with --max-sessions"),
        ("-b", "--bidirectional", "none: one direction"),
        ("-H", "--report-histogram", "--json (t_typical, p99 and p99.9 per size) or --csv"),
        ("-U", "--report-unsorted", "--json or --csv"),
        ("-C", "--report-cycles", "none: latency is reported in microseconds"),
        ("-N", "--noPeak", "none: BW_peak is always computed"),
        ("-o", "--outs", "none"),
        ("-u", "--qp-timeout", "--timeout SECONDS (every wait for the peer)"),
        ("-S", "--sl", "none"),
        ("-T", "--tos", "none"),
        ("-w", "--limit_bw", "none"),
        ("-y", "--limit_msgrate", "none"),
        ("-A", "--atomic_type", "none: write, write-imm, send and read (--op)"),
        ("-X", "--vector", "none"),
        ("-z", "--comm_rdma_cm", "none needed: the handshake always travels in rdma_cm's private data"),
        ("-g", "--mcg", "none"),
        ("-M", "--MGID", "none"),
        (nil, "--write_with_imm", "--op write-imm"),
        (nil, "--use_cuda", "--memory rdma-address|dma-buf|host-import|host-visible|staged (Vulkan memory)"),
        (nil, "--use_cuda_dmabuf", "--memory dma-buf"),
        (nil, "--use_rocm", "--memory auto (Vulkan memory on any GPU)"),
        (nil, "--odp", "none yet: memory is registered pinned"),
        (nil, "--run_infinitely", "--duration SECONDS"),
        (nil, "--output", "--csv"),
        (nil, "--use_hugepages", "none"),
        (nil, "--cpu_util", "none"),
        (nil, "--dont_xchg_versions", "none"),
        (nil, "--ipv6", "give an IPv6 address to --bind and --client"),
    ]

    /// The message for the first unsupported perftest flag among `arguments` (those after
    /// `pingpong`), or nil.
    static func message(_ arguments: [String]) -> String? {
        for argument in arguments {
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if let hit = unsupported.first(where: { $0.short == name || $0.long == name }) {
                let names = [hit.short, hit.long].compactMap { $0 }.joined(separator: "/")
                return "pingpong does not support perftest's \(names) (\(name)); nearest equivalent: \(hit.nearest)"
            }
        }
        return nil
    }
}
