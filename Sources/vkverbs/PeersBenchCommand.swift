import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SelfTest
import Transfer
import Verbs

/// One `PeerEngine` writing to many peers against the same engine writing to one, on the same
/// link, in paired rounds: the many-peers measurement (docs/many-peers.md, make bench-peers).
///
/// `--serve` (on the receiving hosts) accepts `--peers` connections and exposes a buffer on
/// each (its descriptor in the accept's private data); it stays until every peer disconnected.
/// `--target HOST:PORT` (repeatable, on the sending host; a target named twice is two peers)
/// connects to every target through `RDMAGroupTransport` (one protection domain, the group's
/// completion queues), adds them all to one engine and runs `--rounds` paired rounds: the same
/// bytes to one peer, then split over all of them, posted from one thread in turn (ABBA order
/// across rounds). One CSV line per measurement:
///   peers-bench,ROUND,PEERS,BYTES,SECONDS,MBPS,THREADS
/// then the thread counts and the device's resource counts before and after the engine closed.
struct PeersBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peers-bench",
        abstract: "One engine writing to many peers against one peer on the same link (paired rounds).",
        shouldDisplay: false)

    @Flag(help: "Receive: accept --peers connections and expose a buffer on each.") var serve = false
    @Option(help: "Address to listen on (--serve).") var bind: String?
    @Option(help: "Port to listen on (--serve).") var port: UInt16 = 18540
    @Option(help: "Connections to accept (--serve).") var peers: Int = 8
    @Option(help: ArgumentHelp("A peer to write to, HOST:PORT (repeatable; twice: two peers).", valueName: "host:port"))
    var target: [String] = []
    @Option(help: "Message size in bytes.") var size: Int = 65536
    @Option(help: "Bytes per measurement (split over the peers).") var volume: Int = 32 << 20
    @Option(help: "Paired rounds.") var rounds: Int = 5
    @Option(help: "Seconds to wait for connections and transfers.") var timeout: Int = 300
    @Option(help: "RDMA device whose resources are counted (default: the device of the first target's route).")
    var device: String?

    func validate() throws {
        if size <= 0 || size > 1 << 30 { throw ValidationError("--size must be in 1...1 GiB") }
        if volume < size { throw ValidationError("--volume must be at least --size") }
        if rounds <= 0 { throw ValidationError("--rounds must be positive") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
        if serve {
            if bind == nil { throw ValidationError("--serve needs --bind ADDR") }
            if peers <= 0 || peers > 64 { throw ValidationError("--peers must be in 1...64") }
        } else {
            if target.isEmpty { throw ValidationError("give --serve, or at least one --target HOST:PORT") }
            if target.count > 64 { throw ValidationError("at most 64 targets") }
        }
    }

    func run() throws {
        do {
            if serve { try runServer() } else { try runDriver() }
        } catch {
            fail(error)
        }
    }

    // MARK: Receiving side

    private func runServer() throws {
        let listener = try Listener(address: bind!, port: port, backlog: Int32(peers))
        print("peers-bench: listening on \(bind!):\(listener.port) for \(peers) peers")
        fflush(nil)
        var connections: [Connection] = []
        var keep: [AnyObject] = []
        for _ in 0..<peers {
            let request = try listener.accept(timeout: .seconds(timeout))
            let pd = try ProtectionDomain(context: request.context)
            let buffer = try pd.register(try HostBuffer(count: size), access: .remote)
            let cq = try CompletionQueue(context: request.context, capacity: 16)
            connections.append(try request.prepare(pd: pd, sendCQ: cq, receiveCQ: cq)
                .accept(privateData: buffer.remoteBuffer.encoded, timeout: .seconds(timeout)))
            keep.append(buffer)
        }
        print("peers-bench: \(peers) peers connected")
        fflush(nil)
        for c in connections { _ = try c.waitForPeerDisconnect(timeout: .seconds(timeout)) }
        print("peers-bench: every peer disconnected")
        withExtendedLifetime(keep) {}
    }

    // MARK: Sending side

    private struct Peer {
        let id: PeerID
        let remote: RemoteBuffer
    }

    private func runDriver() throws {
        let end = ContinuousClock.now.advanced(by: .seconds(timeout))
        let first = try parse(target[0])
        let context = try ResolvedRoute.resolve(host: first.host, port: first.port, timeout: .seconds(timeout)).context
        let counted = device ?? context.name
        // Descriptors are compared as sets taken in one listing each (a count taken apart from the
        // names could see a descriptor the runtime opened in between, and disagree with them).
        let baseline = (threads: Self.threadNames(), fds: Self.fileDescriptorTargets(), rdma: Self.resourceCounts(counted))
        let maxThreads: Int
        do {
            let pd = try ProtectionDomain(context: context)
            let transport = try RDMAGroupTransport(pd: pd, address: "0.0.0.0")
            let engine = try PeerEngine(options: .init(timeout: .seconds(timeout)))
            defer { engine.close() }
            let source = try pd.register(try HostBuffer(count: size), access: .local)
            var all: [Peer] = []
            for (i, t) in target.enumerated() {
                let left = end - .now
                guard left > .zero else { throw TransferError.timedOut(operation: "connecting to the targets", after: .seconds(timeout)) }
                let endpoint = try transport.dial(Array(t.utf8), hello: [], timeout: left)
                guard let connection = endpoint as? Connection else { throw TransferError.invalidArgument("not a verbs connection") }
                let remote = try RemoteBuffer(decoding: connection.peerPrivateData)
                guard remote.length >= UInt64(size) else {
                    throw TransferError.outOfBounds("target \(t) exposes \(remote.length) bytes, less than --size \(size)")
                }
                all.append(Peer(id: try engine.add(endpoint, name: "target \(i) (\(t))"), remote: remote))
            }
            print("peers-bench: \(all.count) peers on one engine, \(formatSize(size)) writes, \(formatSize(volume)) per measurement,"
                  + " threads: \(baseline.threads.count) before, \(Self.threadCount()) with the engine and its peers")
            print("peers-bench,round,peers,bytes,seconds,mbps,threads")
            var most = 0
            for r in 1...rounds {
                let one = [all[(r - 1) % all.count]]
                let order = r % 2 == 1 ? [one, all] : [all, one]
                for set in order {
                    let (seconds, bytes, threads) = try measure(engine, set, source: try source.segment())
                    most = max(most, threads)
                    print(String(format: "peers-bench,%d,%d,%d,%.6f,%.2f,%d", r, set.count, bytes, seconds,
                                 Double(bytes) / seconds / 1e6, threads))
                    fflush(nil)
                }
            }
            maxThreads = most
            for p in all { try engine.remove(p.id, timeout: .seconds(10)) }
        }
        // Everything made above is released here: the engine closed, the connections, queues,
        // registration and protection domain gone with their last references.
        // The kernel may take a moment to tear down what the last references released.
        // Threads: none may be new but the runtime's dispatch workers, which its pool starts and
        // ends on its own (their names carry the queue's QoS); the count may drop for the same reason.
        func newThreads() -> [String] {
            Self.threadNames().subtracting(baseline.threads).filter { !$0.contains("qos") }.sorted()
        }
        var after = (threads: Self.threadCount(), fds: Self.fileDescriptorTargets(), rdma: Self.resourceCounts(counted))
        var extra = newThreads()
        for _ in 0..<50 where !extra.isEmpty || after.fds != baseline.fds || after.rdma != baseline.rdma {
            usleep(100_000)
            after = (threads: Self.threadCount(), fds: Self.fileDescriptorTargets(), rdma: Self.resourceCounts(counted))
            extra = newThreads()
        }
        print("peers-bench: threads before \(baseline.threads.count), at most \(maxThreads) while writing, after close \(after.threads)")
        print("peers-bench: file descriptors before \(baseline.fds.count), after close \(after.fds.count)")
        let keys = ResourceCounts.keys
        print("peers-bench: \(counted) before: " + keys.map { "\($0) \(baseline.rdma[$0].map(String.init) ?? "?")" }.joined(separator: " ")
              + "; after close: " + keys.map { "\($0) \(after.rdma[$0].map(String.init) ?? "?")" }.joined(separator: " "))
        let back = extra.isEmpty && after.fds == baseline.fds && keys.allSatisfy { after.rdma[$0] == baseline.rdma[$0] }
        print("peers-bench: resources \(back ? "back to the baseline" : "NOT back to the baseline")"
              + " (no new thread but the runtime's dispatch workers, the same descriptors and device counts)")
        let workers = Self.threadNames().subtracting(baseline.threads).filter { $0.contains("qos") }
        if !workers.isEmpty { print("peers-bench: the runtime's dispatch workers started since: " + workers.sorted().joined(separator: ", ")) }
        if !back {
            // Name what is left over, so a leak can be told from a runtime's lazily started pool.
            let fds = after.fds.subtracting(baseline.fds), gone = baseline.fds.subtracting(after.fds)
            print("peers-bench: threads not there before: " + (extra.isEmpty ? "none" : extra.joined(separator: ", ")))
            print("peers-bench: file descriptors not there before: " + (fds.isEmpty ? "none" : fds.sorted().joined(separator: ", "))
                  + "; gone since: " + (gone.isEmpty ? "none" : gone.sorted().joined(separator: ", ")))
        }
        if !back { throw TransferError.invalidArgument("resources not back to the baseline after the engine closed") }
    }

    /// Writes `volume` bytes in `size` messages to `peers` in turn (one thread posts; a peer whose
    /// window is full parks it until the loop retires some), then waits for each peer's last.
    private func measure(_ engine: PeerEngine, _ peers: [Peer], source: LocalSegment) throws -> (Double, Int, Int) {
        let messages = max(peers.count, volume / size)
        var last: [PeerTicket?] = Array(repeating: nil, count: peers.count)
        var threads = 0
        let t0 = monotonicSeconds()
        for m in 0..<messages {
            let k = m % peers.count
            last[k] = try engine.postWrite(to: peers[k].id, source, remote: peers[k].remote)
            if m == messages / 2 { threads = Self.threadCount() }
        }
        for t in last.compactMap({ $0 }) { try engine.wait(for: t) }
        return (monotonicSeconds() - t0, messages * size, threads)
    }

    private func parse(_ t: String) throws -> (host: String, port: UInt16) {
        guard let colon = t.lastIndex(of: ":"), let port = UInt16(t[t.index(after: colon)...]), !t[..<colon].isEmpty else {
            throw ValidationError("--target takes HOST:PORT, got \(t)")
        }
        return (String(t[..<colon]), port)
    }

    static func threadCount() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1 }
    /// "TID name" of each thread of this process.
    static func threadNames() -> Set<String> {
        let tids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return Set(tids.map { tid in
            let name = (try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)) ?? "?"
            return "\(tid) \(name.trimmingCharacters(in: .whitespacesAndNewlines))"
        })
    }
    /// "FD -> target" of each open file descriptor of this process.
    static func fileDescriptorTargets() -> Set<String> {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return Set(fds.map { fd in
            "\(fd) -> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? "?")
        })
    }

    /// `rdma resource show DEVICE`: "0: rxe0: pd 2 cq 4 qp 1 cm_id 0 mr 3 ctx 1 srq 0".
    /// Spawned with posix_spawn and read through a pipe on this thread: Foundation's `Process`
    /// starts threads and a run loop's timer descriptor of its own, which the check would count.
    static func resourceCounts(_ device: String) -> [String: Int] {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return [:] }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)  // dup2 onto 1 in the child clears it there
        defer { close(fds[0]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let args = ["rdma", "resource", "show", device].map { a in a.withCString { strdup($0) } }
        defer { args.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, "rdma", &actions, nil, args + [nil], environ)
        close(fds[1])
        guard rc == 0 else { return [:] }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while output.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n > 0 { output += chunk[..<n] } else if n < 0 && errno == EINTR { continue } else { break }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return ResourceCounts.parse(String(decoding: output, as: UTF8.self))
    }
}
