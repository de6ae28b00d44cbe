#if canImport(Glibc)
import Glibc
#endif

/// A monotonic deadline, so loops that retry keep to the caller's overall timeout.
struct Deadline {
    let end: ContinuousClock.Instant
    let total: Duration

    init(after timeout: Duration) {
        total = timeout
        end = ContinuousClock.now.advanced(by: timeout)
    }

    var remaining: Duration { max(.zero, ContinuousClock.now.duration(to: end)) }
    var expired: Bool { ContinuousClock.now >= end }

    /// Remaining time in whole milliseconds for poll(2), rounded up so a short
    /// remainder does not turn into a busy loop.
    var remainingMilliseconds: Int32 {
        let r = remaining.components
        let ms = r.seconds * 1000 + (r.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: ms)
    }
}

extension Duration {
    var milliseconds: Int {
        let c = components
        return Int(c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000)
    }
}

/// Waits until `fd` is readable or the deadline passes. EINTR restarts the wait
/// with what is left of the deadline.
func waitReadable(_ fd: Int32, deadline: Deadline, operation: String) throws(VerbsError) {
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let rc = poll(&pfd, 1, deadline.remainingMilliseconds)
        if rc > 0 { return }
        if rc == 0 { throw VerbsError.timedOut(operation: operation, after: deadline.total) }
        let code = Glibc.errno
        if code != EINTR { throw VerbsError.fromErrno("poll", code) }
    }
}

/// Waits until any of `fds` is readable; returns the indices of the readable ones.
func waitReadable(_ fds: [Int32], deadline: Deadline, operation: String) throws(VerbsError) -> Set<Int> {
    var pfds = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    while true {
        let rc = poll(&pfds, nfds_t(pfds.count), deadline.remainingMilliseconds)
        if rc > 0 { return Set(pfds.indices.filter { pfds[$0].revents != 0 }) }
        if rc == 0 { throw VerbsError.timedOut(operation: operation, after: deadline.total) }
        let code = Glibc.errno
        if code != EINTR { throw VerbsError.fromErrno("poll", code) }
    }
}

func setNonBlocking(_ fd: Int32, verb: String) throws(VerbsError) {
    let flags = fcntl(fd, F_GETFL)
    if flags < 0 { throw VerbsError.fromErrno(verb, Glibc.errno) }
    if fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 { throw VerbsError.fromErrno(verb, Glibc.errno) }
}
