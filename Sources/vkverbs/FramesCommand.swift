import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FrameStream
import Foundation
import NumberedStream
import PingPong
import Verbs
import VulkanMemory

/// A frame stream between two hosts (or over loopback): the receiver's ring of slots, credits,
/// a policy for a consumer that falls behind; prints fps, Gb/s, per-frame latency and drops.
struct FramesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frames",
        abstract: "Stream frames into a ring of receiver slots with credits; report fps, Gb/s, latency and drops.",
        discussion: """
        Start `vkverbs frames --server` on one host and `vkverbs frames --client HOST` on the other. The \
        receiver exposes --slots slots of --frame-size bytes (--memory: host memory, or a Vulkan allocation \
        of the named strategy or the automatic choice, registered for RDMA) and hands each arrival to its \
        consumer, which verifies the frame (its number, its length, and the sender's checksum over the \
        slot's bytes: computed by a compute shader on the GPU for Vulkan memory, by the CPU for host \
        memory; --checksum chooses) and releases the slot; a frame that fails the checksum is counted and \
        the run exits 1. The credit goes back to the sender by RDMA write. --policy block makes the sender wait \
        for a slow consumer; drop-oldest and latest-wins drop at the receiver and count what they drop. \
        Latency runs from the sender's wall-clock timestamp to the consumer's release: across hosts it is \
        only as good as their clock sync. Each side serves one stream and exits; any error exits 1.
        """)

    @Flag(help: "Receive one stream.") var server = false
    @Option(help: "Send to the receiver at HOST.") var client: String?
    @Option(help: "Address to listen on (server).") var bind: String?
    @Option(help: "Port.") var port: UInt16 = 18541
    @Option(help: "Bytes of a frame (client) or of a slot (server), e.g. 1M.") var frameSize: String = "1M"
    @Option(help: "Frames to send (client).") var frames: UInt64 = 10000
    @Option(help: "Frames per second (client); 0: as fast as credit allows.") var rate: Double = 0
    @Option(help: "Slots of the receiver's ring (server).") var slots: Int = 16
    @Option(help: "block, drop-oldest or latest-wins (server).") var policy: String = "block"
    @Option(help: "Drop-oldest: frames that may wait for the consumer (server; default half the slots).") var readyLimit: Int?
    @Option(help: "Microseconds the consumer spends on each frame (server), to show the policies at work.") var consumeMicroseconds: Int = 0
    @Option(help: "none or read-after-write (client): how the bytes are made visible before the frame is announced.")
    var visibility: String = "none"
    @Option(help: "Memory of the receiver's ring (server): host, auto, rdma-address, dma-buf, host-import, host-visible, staged.")
    var memory: MemoryKind = .host
    @Option(help: "Vulkan device index for the ring (server; default: the first GPU, else the first device).") var vulkanDevice: Int?
    @Option(help: "Where the receiver computes each frame's checksum: gpu (Vulkan memory; the default there) or cpu (host-visible memory; the default for host); none (both roles, for benchmarks): the sender sends no checksum and writes each slot's pattern once, the receiver checks numbers and lengths only.")
    var checksum: String?
    @Option(help: "Frames the receiver releases before it returns a credit (server; default a quarter of the slots).") var creditBatch: Int?
    @Option(help: "Fault injection (client): send frame FRAME with a checksum that does not match its bytes; repeatable. The receiver must count it and exit 1.")
    var falseChecksum: [UInt64] = []
    @Option(help: "Client: keep retrying the connect this many seconds while no receiver listens yet.") var retry: Int = 0
    @Option(help: "Seconds any wait for the peer may take.") var timeout: Int = 10
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func validate() throws {
        if server == (client != nil) { throw ValidationError("give exactly one of --server and --client HOST") }
        guard let size = parseBytes(frameSize), size <= UInt64(FrameStream.maxFrameSize) else {
            throw ValidationError("--frame-size \(frameSize): expected 1 byte to \(FrameStream.maxFrameSize >> 20) MiB")
        }
        if slots < 1 || slots > FrameStream.maxSlots { throw ValidationError("--slots must be 1 to \(FrameStream.maxSlots)") }
        if FrameStream.Policy(rawValue: policy) == nil { throw ValidationError("--policy must be block, drop-oldest or latest-wins") }
        if FrameStream.Visibility(rawValue: visibility) == nil { throw ValidationError("--visibility must be none or read-after-write") }
        if server, !falseChecksum.isEmpty { throw ValidationError("--false-checksum is the sender's (--client)") }
        if let checksum, checksum != "gpu", checksum != "cpu", checksum != "none" { throw ValidationError("--checksum must be gpu, cpu or none") }
        if !server, let checksum, checksum != "none" { throw ValidationError("--checksum gpu|cpu is the receiver's (--server); a sender takes only none") }
        if let b = creditBatch, b < 1 || b > slots { throw ValidationError("--credit-batch must be 1 to --slots (\(slots))") }
        if checksumOnGPU, !memory.isVulkan { throw ValidationError("--checksum gpu needs Vulkan memory (--memory auto or a strategy)") }
        if checksumOnGPU, size % 4 != 0 { throw ValidationError("--checksum gpu needs a --frame-size (the slot size) that is a multiple of 4") }
        if timeout <= 0 || rate < 0 || frames == 0 || consumeMicroseconds < 0 { throw ValidationError("--timeout, --frames positive; --rate, --consume-microseconds not negative") }
        if retry < 0 { throw ValidationError("--retry must not be negative") }
        if server, retry > 0 { throw ValidationError("--retry is the sender's (--client)") }
    }

    struct Report: Encodable {
        var role: String
        var frames: UInt64
        var bytes: UInt64
        var seconds: Double
        var fps: Double
        var gbps: Double
        var dropped: UInt64?
        var delivered: UInt64?
        var creditWaits: UInt64?
        var creditWrites: UInt64?
        var latencyMicroseconds: LatencyHistogram.Summary?
        var policy: String?
        var slots: Int
        var frameSize: Int
        /// The receiver's ring: "host", or the Vulkan strategy used (CLI name) and its device.
        var memory: String?
        var vulkanDevice: String?
        /// Where the receiver computed the checksums (gpu or cpu), and how many frames failed it.
        var checksum: String?
        var corrupted: UInt64?
        /// The consumer's own count: frame numbers it never saw (must equal `dropped`), and frames
        /// that came again or out of order (must be 0).
        var skipped: UInt64?
        var reordered: UInt64?
    }

    /// Whether the receiver checks frames on the GPU.
    var checksumOnGPU: Bool { (checksum ?? (memory.isVulkan ? "gpu" : "cpu")) == "gpu" }
    /// Whether checksums are off (a benchmark's transport-only run).
    var checksumOff: Bool { checksum == "none" }

    func run() throws {
        let size = Int(parseBytes(frameSize)!)
        if server { serve(size) } else { send(size) }
    }

    private func serve(_ size: Int) {
        var options = FrameReceiver.Options()
        options.slots = slots
        options.slotSize = size
        options.policy = FrameStream.Policy(rawValue: policy)!
        options.readyLimit = readyLimit
        options.timeout = .seconds(timeout)
        options.creditBatch = creditBatch
        // The consumer below checks every frame (on the GPU or the CPU), counting what fails.
        options.verifyChecksums = false
        do {
            // Listening first: a sender that comes while Vulkan starts (seconds under emulation) waits in the backlog.
            let acceptor = try RDMAStreamAcceptor(bind: bind, port: port)
            if !json { FileHandle.standardOutput.write(Data("frames receiver: listening on \(bind ?? "*"):\(acceptor.listener.port)\n".utf8)) }
            var vulkanRing: VulkanFrameRing?
            var timeline: TimelineSemaphore?
            if memory.isVulkan {
                let instance: VulkanInstance
                do { instance = try makeVulkanInstance(layer: false) } catch { fail(describeInstanceFailure(error)) }
                let device = try VulkanDevice(physicalDevice: try pickPhysicalDevice(instance, index: vulkanDevice))
                let ring = VulkanFrameRing(device: device, strategy: memory.strategy)
                options.ringMemory = ring.memory
                if checksumOnGPU, device.timelineSemaphoreEnabled {
                    timeline = try TimelineSemaphore(device: device)
                    options.timeline = timeline
                }
                vulkanRing = ring
            }
            let receiver = try FrameReceiver.accept(acceptor: acceptor, options: options, wait: .seconds(max(timeout, 600)))
            defer { receiver.close() }
            let allocation = vulkanRing?.allocation
            if let allocation, !json {
                let refused = allocation.rejected.isEmpty ? "" : " (not: " + allocation.rejected.map { "\($0.strategy.cliName): \($0.reason)" }.joined(separator: "; ") + ")"
                print("frames receiver: \(slots) slots in Vulkan \(allocation.strategy.cliName) memory on \(allocation.device.physicalDevice.name)\(refused)")
            }
            var gpu: GPUFrameChecksum?
            if checksumOnGPU, let allocation {
                gpu = try GPUFrameChecksum(ring: allocation, timeline: timeline, timeout: .seconds(timeout))
            } else if !checksumOff, let allocation, allocation.hostBytes == nil {
                fail("--checksum cpu: the host cannot see \(allocation.strategy.cliName) memory; use --checksum gpu")
            }
            var started: ContinuousClock.Instant?
            var verified: UInt64 = 0, corrupted: UInt64 = 0, skipped: UInt64 = 0, reordered: UInt64 = 0
            var nextNumber: UInt64 = 0
            while let frame = try receiver.next() {
                if started == nil { started = .now }
                // The consumer's own account: every number once, in order; the gaps are what the policy dropped.
                if frame.number < nextNumber { reordered += 1 } else { skipped += frame.number - nextNumber }
                nextNumber = max(nextNumber, frame.number + 1)
                // Every frame is checked: its number and length by the receiver, its bytes against the sender's checksum here.
                let expected = frame.checksum
                if !checksumOff, expected == nil { throw FrameStream.FrameError.protocolError("frame \(frame.number) carries no checksum") }
                do {
                    if checksumOff {
                        // Numbers and lengths only (the receiver checked them): a transport benchmark.
                    } else if checksumOnGPU, let gpu {
                        try gpu.verify(frame)
                    } else {
                        guard let bytes = receiver.bytes(of: frame), bytes.count == frame.length else {
                            throw FrameStream.FrameError.protocolError("frame \(frame.number)'s bytes are not visible to the host")
                        }
                        guard FrameStream.checksum(bytes, frame: frame.number) == expected else { throw FrameStream.FrameError.corrupted(frame: frame.number) }
                    }
                    verified += 1
                } catch FrameStream.FrameError.corrupted(let number) {
                    corrupted += 1
                    FileHandle.standardError.write(Data("vkverbs: frame \(number): checksum mismatch\n".utf8))
                }
                if consumeMicroseconds > 0 { usleep(UInt32(clamping: consumeMicroseconds)) }
                try receiver.release(frame)
            }
            let s = receiver.statistics
            skipped += s.arrived - min(s.arrived, nextNumber)
            let seconds = started.map { FrameSender.seconds(since: $0) } ?? 0
            report(Report(role: "receiver", frames: s.delivered, bytes: s.bytes, seconds: seconds,
                          fps: seconds > 0 ? Double(s.arrived) / seconds : 0, gbps: seconds > 0 ? Double(s.bytes) * 8 / seconds / 1e9 : 0,
                          dropped: s.dropped, delivered: verified + corrupted, creditWaits: nil, creditWrites: s.creditWrites,
                          latencyMicroseconds: s.latency.summary, policy: policy, slots: slots, frameSize: size,
                          memory: allocation?.strategy.cliName ?? "host", vulkanDevice: allocation?.device.physicalDevice.name,
                          checksum: checksumOff ? "none" : checksumOnGPU ? "gpu" : "cpu", corrupted: corrupted,
                          skipped: skipped, reordered: reordered))
            if skipped != s.dropped || reordered != 0 {
                fail("the consumer saw \(skipped) frame numbers missing (\(s.dropped) dropped) and \(reordered) out of order or repeated")
            }
            if corrupted > 0 { fail("\(corrupted) of \(verified + corrupted) frames failed their checksum") }
        } catch {
            fail(error)
        }
    }

    private func send(_ size: Int) {
        var options = FrameSender.Options()
        options.frameSize = size
        options.maxSlots = FrameStream.maxSlots / 4
        options.timeout = .seconds(timeout)
        options.visibility = FrameStream.Visibility(rawValue: visibility)!
        options.falseChecksums = Set(falseChecksum)
        options.checksum = !checksumOff
        options.connectRetry = .seconds(retry)
        do {
            let sender = try FrameSender.connect(dialer: RDMAStreamDialer(host: client!, port: port), options: options)
            let start = ContinuousClock.now
            let interval: Duration? = rate > 0 ? .nanoseconds(Int64(1e9 / rate)) : nil
            for f in 0..<frames {
                if let interval {
                    let wait = start.advanced(by: interval * Int(f)) - .now
                    if wait > .zero { usleep(UInt32(clamping: wait.components.seconds * 1_000_000 + wait.components.attoseconds / 1_000_000_000_000)) }
                }
                // Without checksums (a benchmark) each staging slot gets its pattern once, as perftest's buffer.
                try sender.send(length: size) { if !checksumOff || f < UInt64(sender.slots) { fill($0, frame: f) } }
            }
            let sent = try sender.finish()
            let seconds = FrameSender.seconds(since: start)
            report(Report(role: "sender", frames: sent.frames, bytes: sent.bytes, seconds: seconds, fps: Double(sent.frames) / seconds,
                          gbps: Double(sent.bytes) * 8 / seconds / 1e9, creditWaits: sent.creditWaits, slots: sender.slots, frameSize: size))
        } catch {
            fail(error)
        }
    }

    /// The frame's bytes: a word pattern seeded by the frame number, cheap to write at line rate.
    private func fill(_ p: UnsafeMutableRawBufferPointer, frame: UInt64) {
        let words = p.count / 8
        let base = p.baseAddress!
        for i in 0..<words { base.storeBytes(of: frame &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(i), toByteOffset: i * 8, as: UInt64.self) }
        for i in words * 8..<p.count { p[i] = UInt8(truncatingIfNeeded: frame &+ UInt64(i)) }
    }

    private func report(_ r: Report) {
        if json {
            do { try printJSON(r) } catch { fail(error) }
            return
        }
        var line = String(format: "frames %@: %llu frames, %.1f fps, %.3f Gb/s in %.2f s", r.role, r.frames, r.fps, r.gbps, r.seconds)
        if let d = r.dropped { line += ", \(d) dropped (\(r.policy ?? ""))" }
        if let m = r.memory { line += ", \(m == "host" ? "host memory" : "Vulkan \(m) memory")" }
        if let c = r.checksum, let bad = r.corrupted { line += ", checksums on the \(c.uppercased()): \(bad) mismatched" }
        if let w = r.creditWaits { line += ", \(w) credit waits" }
        if let l = r.latencyMicroseconds {
            line += String(format: "; latency us p50 %.1f p99 %.1f p99.9 %.1f max %.1f", l.p50, l.p99, l.p999, l.max)
        }
        print(line)
    }
}
