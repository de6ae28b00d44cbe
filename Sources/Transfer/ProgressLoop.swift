#if canImport(Glibc)
import Glibc
#endif
import Sharing
import Verbs

/// The one thread of a `PeerEngine`: it polls every peer's queues, resumes whoever waits, and
/// when a few rounds find nothing it sleeps (`ProgressWake`): spin, then block. The spin is
/// adaptive: when work came within the spin, the next spin is longer (up to `maxSpin` rounds);
/// when spinning found nothing, shorter (down to 4). While work is outstanding the sleep is
/// bounded: peers without a completion channel are looked at again after 1 ms (the backoff
/// grows from 20 us to 1 ms, but poll(2) counts milliseconds), all others after 50 ms at most
/// (their channels wake it sooner), never later than the nearest deadline. With nothing
/// outstanding it lasts until a caller wakes it.
final class ProgressLoop: Sendable {
    let state = Locked(PeerEngineState())
    let wake: ProgressWake
    private let maxSpin: Int
    private let thread = Locked<pthread_t?>(nil)
    private let named = Locked(false)
    /// The name the thread carries (`top -H`, `gdb`, /proc/PID/task/TID/comm); at most 15 bytes.
    static let threadName = "vkv-progress"

    init(maxSpin: Int) throws(TransferError) {
        wake = try ProgressWake()
        self.maxSpin = max(4, maxSpin)
    }

    /// Starts the thread (once).
    func start() throws(TransferError) {
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { raw in
            let loop = Unmanaged<ProgressLoop>.fromOpaque(raw!).takeRetainedValue()
            ProgressLoop.nameThisThread()
            loop.named.withLock { $0 = true }
            loop.run()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw TransferError.verbs(.system(verb: "pthread_create", errno: rc))
        }
        thread.withLock { $0 = t }
        // Return once the thread carries its name, so whoever looks right after start() finds it
        // (it names itself first thing, before any work).
        while !named.withLock({ $0 }) { usleep(50) }
    }

    /// Names the calling thread (Glibc's `pthread_setname_np` needs `_GNU_SOURCE`, which Swift's
    /// import lacks; the kernel's per-thread file does the same). Best effort: a failure only
    /// leaves the inherited name.
    private static func nameThisThread() {
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = threadName.withCString { write(fd, $0, strlen($0)) }
    }

    /// Stops the thread and waits for it (the state must be closed first).
    func stop() {
        wake.signal()
        guard let t = thread.withLock({ v -> pthread_t? in defer { v = nil }; return v }) else { return }
        if pthread_equal(t, pthread_self()) != 0 { pthread_detach(t); return }
        pthread_join(t, nil)
    }

    /// Runs resumptions collected under the lock, after it is released.
    static func run(_ resumes: PeerEngineState.Resumes) { for r in resumes { r() } }

    private func run() {
        var spin = min(64, maxSpin)
        var idle = 0
        var backoff = Duration.microseconds(20)
        var sinceEvents = 0
        while true {
            sinceEvents += 1
            let readEvents = sinceEvents >= 64
            if readEvents { sinceEvents = 0 }
            let (resumes, progressed, busy, closed) = state.withLock { s in
                let r = s.round(now: .now, readEvents: readEvents)
                return (r.resumes, r.progressed, r.busy, s.closed)
            }
            Self.run(resumes)
            if closed && !busy { return }
            if progressed {
                if idle > 0 && idle < spin { spin = min(maxSpin, spin * 2) }
                idle = 0
                backoff = .microseconds(20)
                continue
            }
            idle += 1
            if idle < spin {
                sched_yield()
                continue
            }
            if idle == spin { spin = max(4, spin / 2) }
            // Block: arm the queues that have channels, look once more (a completion between
            // the last poll and arming raised no event), then sleep.
            let (channels, allChannelled, deadline, ready, events) = state.withLock { s in
                let (channels, all) = s.peers.values.contains(where: \.hasWork) ? s.router.arm() : ([], true)
                let r = s.round(now: .now, readEvents: true)
                s.sleeps += 1
                return (channels, all, s.nearestDeadline, r, s.connectionEventDescriptors())
            }
            Self.run(ready.resumes)
            if ready.progressed { idle = 0; continue }
            var limit: Duration?
            if ready.busy { limit = allChannelled ? .milliseconds(50) : backoff }
            if let deadline {
                let left = deadline - .now
                limit = min(limit ?? left, left)
            }
            if closed && ready.busy { limit = min(limit ?? .milliseconds(1), .milliseconds(1)) }
            // Every peer's connection events wake it too: an idle peer is not polled, and a
            // disconnect from its side must be answered now (the other side waits for it).
            let readable = wake.sleep(channels: channels, events: events.map(\.descriptor), limit: limit)
            if !readable.isEmpty {
                state.withLock { s in s.readConnectionEvents(of: readable.map { events[$0].peer }) }
            }
            backoff = min(backoff * 2, .milliseconds(1))
            sinceEvents = 64
        }
    }
}
