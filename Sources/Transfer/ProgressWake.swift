#if canImport(Glibc)
import Glibc
#endif
import Verbs

/// Where the peer engine's progress loop sleeps once spinning found nothing: a pipe that a
/// post, a new waiter or `close` writes to, beside the completion channels of the peers' queues
/// (armed before the sleep), so a completion or a caller wakes it at once. Without a channel
/// (the in-memory twin, or queues made without one) the sleep is bounded by the loop's backoff.
final class ProgressWake: Sendable {
    /// The pipe's read end (polled) and write end (signalled); both non-blocking.
    private let fd: Int32
    private let writeEnd: Int32

    init() throws(TransferError) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw TransferError.verbs(.system(verb: "pipe", errno: errno)) }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        fd = ends[0]
        writeEnd = ends[1]
    }

    deinit {
        close(fd)
        close(writeEnd)
    }

    /// Wakes the loop (or makes its next sleep return at once). A full pipe already wakes it.
    func signal() {
        var one: UInt8 = 1
        _ = write(writeEnd, &one, 1)
    }

    /// Sleeps until a signal, until one of `channels` or `events` (connection-event
    /// descriptors) is readable, or for `limit` (nil: no limit); then takes the signal and the
    /// channels' events. Returns the indices into `events` that are readable (their events are
    /// left for the caller to read).
    @discardableResult
    func sleep(channels: [CompletionChannel], events: [Int32] = [], limit: Duration?) -> [Int] {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        for channel in channels { fds.append(pollfd(fd: channel.fileDescriptor, events: Int16(POLLIN), revents: 0)) }
        for descriptor in events { fds.append(pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)) }
        // poll(2) counts milliseconds: a shorter limit sleeps one (a post or a channel still
        // wakes it at once).
        var ms: Int32 = -1
        if let limit {
            let (seconds, attoseconds) = max(limit, .zero).components
            let total = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
            ms = Int32(clamping: max(limit > .zero ? 1 : 0, total))
        }
        let n = poll(&fds, nfds_t(fds.count), ms)
        var drained = [UInt8](repeating: 0, count: 64)
        while read(fd, &drained, 64) == 64 {}
        for channel in channels { channel.takeEvents() }
        guard n > 0, !events.isEmpty else { return [] }
        let first = 1 + channels.count
        return events.indices.filter { fds[first + $0].revents != 0 }
    }
}
