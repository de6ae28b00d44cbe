import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FrameStream
import Foundation
import NumberedStream
import Verbs

/// A frame stream between two hosts (or over loopback): the receiver's ring of slots, credits,
/// a policy for a consumer that falls behind; prints fps, Gb/s, per-frame latency and drops.
struct FramesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frames",
        abstract: "Stream frames into a ring of receiver slots with credits; report fps, Gb/s, latency and drops.",
        discussion: """
        Start `vkverbs frames --server` on one host and `vkverbs frames --client HOST` on the other. The \
        receiver exposes --slots slots of --frame-size bytes (host memory) and hands each arrival to its \
        consumer, which verifies the frame (its number, length and the sender's checksum) and releases \
        the slot; the credit goes back to the sender by RDMA write. --policy block makes the sender wait \
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
    @Option(help: "Memory of the receiver's ring (server): host. (Vulkan memory: see docs/frame-stream.md.)") var memory: String = "host"
    @Option(help: "Seconds any wait for the peer may take.") var timeout: Int = 10
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func validate() throws {
        if server == (client != nil) { throw ValidationError("give exactly one of --server and --client HOST") }
        guard let size = parseBytes(frameSize), size <= UInt64(FrameStream.maxFrameSize) else {
            throw ValidationError("--frame-size \(frameSize): expected 1 byte to \(FrameStream.maxFrameSize >> 20) MiB")
        }
        _ = size
        if slots < 1 || slots > FrameStream.maxSlots { throw ValidationError("--slots must be 1 to \(FrameStream.maxSlots)") }
        if FrameStream.Policy(rawValue: policy) == nil { throw ValidationError("--policy must be block, drop-oldest or latest-wins") }
        if FrameStream.Visibility(rawValue: visibility) == nil { throw ValidationError("--visibility must be none or read-after-write") }
        if memory != "host" { throw ValidationError("--memory \(memory): only host memory is wired into the CLI so far") }
        if timeout <= 0 || rate < 0 || frames == 0 || consumeMicroseconds < 0 { throw ValidationError("--timeout, --frames positive; --rate, --consume-microseconds not negative") }
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
    }

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
        do {
            let acceptor = try RDMAStreamAcceptor(bind: bind, port: port)
            if !json { FileHandle.standardOutput.write(Data("frames receiver: listening on \(bind ?? "*"):\(acceptor.listener.port)\n".utf8)) }
            let receiver = try FrameReceiver.accept(acceptor: acceptor, options: options, wait: .seconds(max(timeout, 600)))
            defer { receiver.close() }
            var started: ContinuousClock.Instant?
            var verified: UInt64 = 0
            while let frame = try receiver.next() {
                if started == nil { started = .now }
                // Every frame is checked: its checksum by the receiver on arrival, its number and length here.
                guard frame.checksum != nil, let bytes = receiver.bytes(of: frame), bytes.count == frame.length else {
                    throw FrameStream.FrameError.corrupted(frame: frame.number)
                }
                verified += 1
                if consumeMicroseconds > 0 { usleep(UInt32(consumeMicroseconds)) }
                try receiver.release(frame)
            }
            let s = receiver.statistics
            let seconds = started.map { FrameSender.seconds(since: $0) } ?? 0
            report(Report(role: "receiver", frames: s.delivered, bytes: s.bytes, seconds: seconds,
                          fps: seconds > 0 ? Double(s.arrived) / seconds : 0, gbps: seconds > 0 ? Double(s.bytes) * 8 / seconds / 1e9 : 0,
                          dropped: s.dropped, delivered: verified, creditWaits: nil, creditWrites: s.creditWrites,
                          latencyMicroseconds: s.latency.summary, policy: policy, slots: slots, frameSize: size))
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
        do {
            let sender = try FrameSender.connect(dialer: RDMAStreamDialer(host: client!, port: port), options: options)
            let start = ContinuousClock.now
            let interval: Duration? = rate > 0 ? .nanoseconds(Int64(1e9 / rate)) : nil
            for f in 0..<frames {
                if let interval {
                    let wait = start.advanced(by: interval * Int(f)) - .now
                    if wait > .zero { usleep(UInt32(clamping: wait.components.seconds * 1_000_000 + wait.components.attoseconds / 1_000_000_000_000)) }
                }
                try sender.send(length: size) { fill($0, frame: f) }
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
        if let w = r.creditWaits { line += ", \(w) credit waits" }
        if let l = r.latencyMicroseconds {
            line += String(format: "; latency us p50 %.1f p99 %.1f p99.9 %.1f max %.1f", l.p50, l.p99, l.p999, l.max)
        }
        print(line)
    }
}
