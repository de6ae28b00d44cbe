import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Doctor
import Foundation

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check each link from Vulkan memory to the wire; name the cause and the fix of each failure.",
        discussion: """
        Checks the RDMA devices, their ports, GIDs (link-local only?) and MTU, rdma_cm, the locked-memory \
        limit, on-demand paging, the GPU peer-memory client, dma-buf memory regions, the Vulkan devices \
        and their extensions, RDMA-capable memory types and budget, the BAR, the memory strategy the \
        automatic choice takes with the NIC considered, and the emulation layer. Every probe is bounded \
        by --probe-timeout: one that does not answer is reported as hung. \
        Exit status: 0 the best path works (Vulkan memory registered with the NIC without copies); \
        2 RDMA works but Vulkan memory only through host memory or staged copies (or there is no Vulkan \
        device); 3 no RDMA path; 1 the doctor itself could not run.
        """)

    @Flag(help: "Print JSON: the verdict, the checks and the facts they were judged from.") var json = false
    @Flag(help: "Enable the emulation layer VK_LAYER_VKVERBS_rdma_emulation for the Vulkan checks.") var layer = false
    @Option(help: ArgumentHelp("Seconds each probe (RDMA, Vulkan) may take before it counts as hung.", valueName: "seconds"))
    var probeTimeout: Double = 30

    /// `--json`.
    struct Report: Encodable {
        var verdict: DoctorVerdict
        var exitStatus: Int32
        var summary: String
        var checks: [DoctorCheck]
        var facts: DoctorFacts
    }

    func validate() throws {
        guard probeTimeout > 0, probeTimeout <= 600 else { throw ValidationError("--probe-timeout must be in (0, 600] seconds") }
    }

    func run() throws {
        let bound = probeTimeout
        var timedOut: [String] = []
        let rdma = bounded(bound) { DoctorProbe.rdma() }
        if rdma == nil { timedOut.append("rdma") }
        let pd = rdma?.pd
        let useLayer = layer
        let vulkan = bounded(bound) { DoctorProbe.vulkan(layer: useLayer, nic: pd) }
        if vulkan == nil { timedOut.append("vulkan") }
        let facts = DoctorFacts(
            rdma: rdma?.facts ?? RDMAFacts(kernelCore: false), memlock: DoctorProbe.memlock(),
            vulkan: vulkan ?? VulkanFacts(available: false, note: "the probe did not answer"),
            timedOut: timedOut, probeTimeout: bound)
        let diagnosis = Diagnosis.diagnose(facts)
        if json {
            try printJSON(Report(verdict: diagnosis.verdict, exitStatus: diagnosis.exitStatus, summary: diagnosis.summary,
                                 checks: diagnosis.checks, facts: facts))
        } else {
            print(diagnosis.text)
        }
        if !timedOut.isEmpty {
            // A hung probe's thread may hold locks that an orderly exit would wait on.
            fflush(nil)  // every output stream
            _exit(diagnosis.exitStatus)
        }
        if diagnosis.exitStatus != 0 { throw ExitCode(diagnosis.exitStatus) }
    }
}
