#if canImport(Glibc)
import Glibc
#endif
import CVerbs
import Verbs
import VulkanMemory

/// The measuring side of `vkverbs pingpong`.
public enum PingPongClient {
    /// Connects to `host`:`port` and measures every size of `config`. `progress` gets a line
    /// now and then on long runs; Ctrl-C (`stopRequested`) ends the run with what was measured.
    /// While nothing listens yet, the connect is retried for `retry` (a server still starting).
    /// With `secret`, the handshake carries an HMAC the server checks, and the server's answer must
    /// carry one too (bound to this request) before its buffer is used.
    public static func run(host: String, port: UInt16, config: PingPongConfiguration, retry: Duration = .zero,
                           secret: SharedSecret? = nil, vulkan: () throws(VulkanError) -> VulkanDevice,
                           progress: (String) -> Void = { _ in }) throws(PingPongError) -> PingPongResult {
        let deadline = ContinuousClock.now + retry
        while true {
            do {
                return try runOnce(host: host, port: port, config: config, secret: secret, vulkan: vulkan, progress: progress)
            } catch let error {
                if case let .verbs(.connection(failure)) = error, failure.reason == .rejected, let text = failure.peerMessage {
                    throw .rejected(text)
                }
                guard case let .verbs(.connection(failure)) = error, failure.isNoListener, ContinuousClock.now < deadline,
                      !stopRequested.load(ordering: .relaxed) else { throw error }
                usleep(250_000)
            }
        }
    }

    static func runOnce(host: String, port: UInt16, config: PingPongConfiguration, secret: SharedSecret?,
                        vulkan: () throws(VulkanError) -> VulkanDevice,
                        progress: (String) -> Void) throws(PingPongError) -> PingPongResult {
        try v { () throws(VerbsError) in try config.validate() }
        let route: ResolvedRoute
        do { route = try ResolvedRoute.resolve(host: host, port: port, timeout: config.timeout) } catch { throw .verbs(error) }
        if let wanted = config.device, route.context.name != wanted {
            throw .verbs(.invalidArgument("\(host) is reached through \(route.context.name), not --device \(wanted)"))
        }
        let r = try Resources.make(context: route.context, config: config.memory, bufferSize: config.bufferSize,
                                   access: Resources.clientAccess(config), window: config.window, events: config.events, vulkan: vulkan)
        if config.operation == .write && config.measurement == .latency && r.memory.hostBytes == nil {
            throw .protocolError("write latency spins on the buffer's last byte, which the host cannot see in \(r.memory.description); use --op write-imm")
        }
        let deviceName = route.context.name
        let request = Handshake.request(config, buffer: r.memory.region.remoteBuffer, mailbox: r.mailbox.remoteBuffer, secret: secret)
        let connection: Connection
        var granted = 0
        do {
            let prepared = try route.prepare(pd: r.pd, sendCQ: r.send, receiveCQ: r.receive,
                                             capabilities: Resources.capabilities(window: config.window, inline: config.inlineLimit))
            granted = Int(prepared.queuePair.capabilities.maxInlineData)
            if config.operation == .send || config.operation == .writeImm {
                for _ in 0..<Peer.receiveDepth {
                    try prepared.queuePair.postReceive(id: 0, segment: try r.memory.region.segment(offset: 0, length: config.bufferSize))
                }
            }
            connection = try prepared.connect(privateData: request, timeout: config.timeout)
        } catch {
            throw .verbs(error)
        }
        defer { try? connection.disconnect(timeout: .seconds(2)) }
        let peer = try Peer(endpoint: connection, memory: r.memory, mailbox: r.mailbox, outbox: r.outbox, timeout: config.timeout)
        if config.events { peer.eventQueue = r.receive }
        let answer = try v { () throws(VerbsError) in try Handshake.decodeAnswer(connection.peerPrivateData) }
        if let secret { try Handshake.verifyAnswer(connection.peerPrivateData, request: request, secret: secret) }
        peer.peerBuffer = answer.buffer
        peer.peerMailbox = answer.mailbox
        if config.operation == .send || config.operation == .writeImm { peer.postedReceives = Peer.receiveDepth }
        peer.inlineLimit = r.memory.canInline ? min(config.inlineLimit, granted) : 0
        if let asked = config.inline, asked > granted {
            progress("inline: the device grants \(granted) bytes of inline data, not the \(asked) asked")
        }
        return try measure(peer, config, device: deviceName, progress: progress)
    }

    /// Measures every size of `config` over `peer`, which is connected and knows the server's
    /// buffer and mailbox (`peerBuffer`, `peerMailbox`) and what it may inline (`inlineLimit`),
    /// then says bye. Posts the receives a send or write-with-immediate step needs, where they
    /// are not posted yet. Ctrl-C (`stopRequested`) ends it with what was measured; every wait is
    /// bounded by the peer's timeout.
    static func measure(_ peer: Peer, _ config: PingPongConfiguration, device: String,
                        progress: (String) -> Void) throws(PingPongError) -> PingPongResult {
        if config.operation == .write && config.measurement == .latency && peer.memory.hostBytes == nil {
            throw .protocolError("write latency spins on the buffer's last byte, which the host cannot see in \(peer.memory.description)")
        }
        if config.operation == .send || config.operation == .writeImm { try peer.postReceives() }
        var result = PingPongResult(operation: config.operation, measurement: config.measurement,
                                    memory: peer.memory.description, device: device)
        result.inlineBytes = config.operation == .read ? 0 : peer.inlineLimit
        for size in config.sizes {
            do throws(PingPongError) {
                if config.measurement == .latency {
                    var stopped = false
                    let samples = try latency(peer, config, size: size, stopped: &stopped, progress: progress)
                    // What an interrupted step measured is reported too, as perftest's table would be.
                    if let stats = LatencyStatistics(bytes: size, samples: consume samples, halve: config.operation.halvesRoundTrip,
                                                     nanosecondsPerSample: CycleClock.nanosecondsPerTick) {
                        result.latency.append(stats)
                    }
                    if stopped {
                        result.interrupted = true
                        return result
                    }
                } else {
                    let points = try bandwidth(peer, config, size: size, progress: progress)
                    if let stats = BandwidthStatistics(bytes: size, checkpoints: points) { result.bandwidth.append(stats) }
                }
            } catch .interrupted {
                result.interrupted = true
                return result
            }
        }
        try? peer.sendControl(.bye)
        return result
    }

    /// How many iterations to run after the warm-up: the count asked, or as many as fit the duration.
    private static func measuredCount(_ config: PingPongConfiguration, warmupNanoseconds: UInt64) -> Int {
        guard let duration = config.duration else { return config.iterations }
        let perIteration = max(1, warmupNanoseconds / UInt64(max(1, config.warmup)))
        let wanted = UInt64(duration.components.seconds) * 1_000_000_000 / perIteration
        return max(1, min(config.iterations, Int(clamping: wanted)))
    }

    private static func startStep(_ peer: Peer, size: Int, total: Int) throws(PingPongError) {
        if let bytes = peer.memory.hostBytes { memset(bytes, 0, size) }
        // The high half tells the server how much it may inline in its answers.
        let words = StepRequest.words(size: size, total: total, inline: peer.inlineLimit)
        try peer.sendControl(.start, words.a, words.b)
        _ = try peer.receiveControl(.ready, what: "waiting for the server to get ready")
    }

    private static func finishStep(_ peer: Peer, count: Int) throws(PingPongError) {
        try peer.sendControl(.done, UInt64(count))
        _ = try peer.receiveControl(.done, what: "waiting for the server to finish the step")
    }

    /// The step's round trips (single reads for read), in cycle-counter ticks (`CycleClock`).
    static func latency(_ peer: Peer, _ config: PingPongConfiguration, size: Int, stopped: inout Bool,
                        progress: (String) -> Void) throws(PingPongError) -> [UInt64] {
        try startStep(peer, size: size, total: config.warmup + config.iterations)
        let prepared = try peer.prepare(config.operation, size: size)
        // On verbs the request is a PreparedSend: the loop specialized for it posts it without a
        // dynamic call (the post is inlined from Verbs or called directly).
        if let direct = prepared as? PreparedSend {
            return try latencyLoop(peer, direct, config, size: size, stopped: &stopped, progress: progress)
        }
        return try latencyLoop(peer, prepared, config, size: size, stopped: &stopped, progress: progress)
    }

    /// How often a read latency step tells the server it is alive: the server hears nothing
    /// else from us until the step's end. (A write or send step's server hears every iteration.)
    static let heartbeatNanoseconds: UInt64 = 2_000_000_000

    /// `latency`'s loop for one prepared request. What runs every iteration is the post, the
    /// wait for the answer, the receive's repost and the sample; everything time-based (progress
    /// lines, a read step's heartbeats) sits behind one comparison with the cycle counter that
    /// is never true when there is none of it to do (`progressInterval` nil, not a read).
    private static func latencyLoop<P: PreparedPost>(_ peer: Peer, _ prepared: P, _ config: PingPongConfiguration, size: Int,
                                                    stopped: inout Bool, progress: (String) -> Void) throws(PingPongError) -> [UInt64] {
        let operation = config.operation
        let warmup = config.warmup
        var measured = config.iterations
        let answered = operation == .send || operation == .writeImm
        let receivePost = peer.receivePost
        // write: where our answer's tag goes out from, and where the server's lands.
        var outTag: UnsafeMutableRawPointer?
        var inTag: UnsafeMutableRawPointer?
        if operation == .write {
            guard let bytes = peer.memory.hostBytes else {
                throw .protocolError("write latency spins on the buffer's last byte, which the host cannot see in \(peer.memory.description)")
            }
            outTag = bytes + peer.half + size - 1
            inTag = bytes + size - 1
        }
        // Samples stay in cycle-counter ticks (see CycleClock): the statistics scale them. They go
        // into a buffer made at its full size once (`measured` never grows past it: measuredCount),
        // through a pointer, so an iteration pays no copy-on-write check of an array; the array is
        // made from it at the end.
        let capacity = measured
        let buffer = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: capacity)  // only what was written is read
        defer { buffer.deallocate() }
        func samples(_ count: Int) -> [UInt64] { Array(buffer[..<Swift.min(Swift.max(0, count), capacity)]) }
        let reportTicks = config.progressInterval.map { CycleClock.ticks(nanoseconds: nanoseconds($0)) }
        let beatTicks = operation == .read ? CycleClock.ticks(nanoseconds: heartbeatNanoseconds) : nil
        let checkTicks = min(reportTicks ?? .max, beatTicks ?? .max)
        let warmupStart = vkv_cycles()
        var lastCheck = warmupStart, lastReport = warmupStart, lastBeat = warmupStart
        var t: UInt8 = 0  // tag(i), kept rolling: 1, 2, ..., 255, 1, ...
        var i = 0
        while i < warmup + measured {
            if stopRequested.load(ordering: .relaxed) {
                try? peer.waitSend("draining the send queue")
                try? finishStep(peer, count: i)
                stopped = true
                return samples(i - warmup)
            }
            if i == warmup && config.duration != nil {
                let warmupTicks = vkv_cycles() - warmupStart
                measured = measuredCount(config, warmupNanoseconds: UInt64(Double(warmupTicks) * CycleClock.nanosecondsPerTick))
            }
            t = t == 255 ? 1 : t &+ 1
            let t0 = vkv_cycles()
            switch operation {
            case .write:
                outTag!.storeBytes(of: t, as: UInt8.self)
                try peer.post(prepared)
                _ = try peer.waitByte(inTag!, tag: t, "waiting for the server's write")
            case .writeImm:
                try peer.post(prepared, immediate: UInt32(truncatingIfNeeded: i))
                guard try peer.waitReceive("waiting for the server's write with immediate") else { throw .protocolError("server ended the step") }
            case .send:
                try peer.post(prepared)
                guard try peer.waitReceive("waiting for the server's reply") else { throw .protocolError("server ended the step") }
            case .read:
                try peer.post(prepared, signaled: true)
                try peer.waitSend("waiting for the read")
            }
            let t1 = vkv_cycles()
            if answered { try peer.postReceives(through: receivePost) }
            try peer.reapSends()
            // A counter that went backwards (a migration between CPUs whose counters disagree)
            // gives a 0 sample, visible as t_min, rather than a wrapped one that ruins the average.
            if i >= warmup { buffer[i - warmup] = t1 > t0 ? t1 - t0 : 0 }
            i += 1
            if t1 &- lastCheck > checkTicks {
                lastCheck = t1
                if let reportTicks, t1 &- lastReport > reportTicks {
                    progress(i <= warmup ? "\(formatBytes(size)): warm-up, \(i)/\(warmup) iterations"
                                         : "\(formatBytes(size)): \(i - warmup)/\(measured) iterations")
                    lastReport = t1
                }
                if let beatTicks, t1 &- lastBeat > beatTicks {
                    try peer.sendHeartbeat()
                    lastBeat = t1
                }
            }
        }
        try peer.waitSend("draining the send queue")
        try finishStep(peer, count: i)
        return samples(measured)
    }

    /// A duration in nanoseconds, 0 for a negative one and UInt64.max for one beyond it.
    static func nanoseconds(_ d: Duration) -> UInt64 {
        let c = d.components
        guard c.seconds >= 0 else { return 0 }
        let (whole, overflow) = UInt64(c.seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, over) = whole.addingReportingOverflow(UInt64(clamping: c.attoseconds / 1_000_000_000))
        return overflow || over ? .max : sum
    }

    static func bandwidth(_ peer: Peer, _ config: PingPongConfiguration, size: Int,
                          progress: (String) -> Void) throws(PingPongError) -> [(count: Int, nanoseconds: UInt64)] {
        try startStep(peer, size: size, total: config.warmup + config.iterations)
        let request = try peer.request(config.operation, size: size)
        do throws(PingPongError) {
            var measured = config.iterations
            if config.warmup > 0 {
                let warm = try stream(peer, request, count: config.warmup, window: config.window, label: nil,
                                      reportEvery: .max, progress: progress)
                if config.duration != nil, let last = warm.last { measured = measuredCount(config, warmupNanoseconds: max(1, last.nanoseconds)) }
            }
            let points = try stream(peer, request, count: measured, window: config.window,
                                    label: config.progressInterval == nil ? nil : formatBytes(size),
                                    reportEvery: config.progressInterval.map(nanoseconds) ?? .max, progress: progress)
            try finishStep(peer, count: config.warmup + measured)
            return points
        } catch .interrupted {
            try? finishStep(peer, count: 0)
            throw .interrupted
        }
    }

    /// Posts `count` messages keeping `window` in flight, every `moderation`-th and the last one
    /// signaled, and returns (messages done, nanoseconds) at each signaled completion. A line
    /// with `label` goes to `progress` every `reportEvery` nanoseconds; the server gets a
    /// heartbeat every `heartbeatNanoseconds` (it waits for our "done" the whole step).
    private static func stream(_ peer: Peer, _ request: SendRequest, count: Int, window: Int, label: String?,
                               reportEvery: UInt64, progress: (String) -> Void) throws(PingPongError) -> [(count: Int, nanoseconds: UInt64)] {
        let moderation = max(1, min(64, window / 2))
        let endpoint = peer.endpoint
        var checkpoints: [(count: Int, nanoseconds: UInt64)] = []
        checkpoints.reserveCapacity(count / moderation + 2)
        var posted = 0, completed = 0
        let start = vkv_monotonic_ns()
        var lastProgress = start, lastReport = start, lastBeat = start
        while completed < count {
            if stopRequested.load(ordering: .relaxed) { throw .interrupted }
            while posted < count && posted - completed < window {
                let signaled = (posted + 1) % moderation == 0 || posted + 1 == count
                try v { () throws(VerbsError) in
                    try endpoint.postSend(SendRequest(id: UInt64(posted + 1), operation: request.operation, segment: request.segment,
                                                signaled: signaled, inline: request.inline))
                }
                posted += 1
            }
            var failure: WorkCompletion?
            let n = try v { () throws(VerbsError) in
                try peer.pollSends { wc in
                    if !wc.isSuccess { if failure == nil { failure = wc }; return }
                    completed = Int(clamping: wc.workRequestID)
                    checkpoints.append((completed, vkv_monotonic_ns() - start))
                }
            }
            if let failure { do { try failure.check() } catch { throw .verbs(error) } }
            let now = vkv_monotonic_ns()
            if n > 0 {
                lastProgress = now
            } else {
                if now - lastProgress > peer.timeoutNanoseconds { throw .timedOut("waiting for completions (\(completed) of \(count))") }
                try peer.checkAliveEvery(4096)
            }
            if let label, now - lastReport > reportEvery {
                progress("\(label): \(completed)/\(count) messages")
                lastReport = now
            }
            if now - lastBeat > heartbeatNanoseconds {
                try peer.sendHeartbeat()
                lastBeat = now
            }
        }
        return checkpoints
    }
}

extension Peer {
    /// `checkAlive` costs a system call; spin loops call it every `n`-th time.
    func checkAliveEvery(_ n: Int) throws(PingPongError) {
        aliveCounter += 1
        if aliveCounter % n == 0 { try checkAlive("waiting for completions") }
    }
}

public func formatBytes(_ n: Int) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
    return "\(n) B"
}
