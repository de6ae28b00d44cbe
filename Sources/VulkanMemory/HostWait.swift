#if canImport(Glibc)
import Glibc
#endif
import CVulkan

/// How the host waits for submitted GPU work: it polls the completion status (a fence's or a
/// timeline semaphore's counter) for at most `spin`, then blocks in the driver for the rest of
/// the timeout. On NVIDIA a blocking wait costs 20-25 us per submission on top of the copy;
/// polling sees the completion within about a microsecond but keeps a core busy, so the spin is
/// bounded and every wait still ends at its timeout.
public struct HostWait: Sendable, Hashable, Codable {
    /// Longest time the status is polled before the wait blocks; zero blocks at once.
    public var spin: Duration

    public init(spin: Duration) { self.spin = spin }

    /// Blocks at once (`vkWaitForFences` / `vkWaitSemaphores`).
    public static let blocking = HostWait(spin: .zero)

    /// The default for `device`: polls up to 2 ms on a GPU, where a copy of up to about 64 MiB
    /// finishes inside the spin (measured on an H200, docs/nvidia-results.md), and blocks at once
    /// on a CPU driver (lavapipe), whose copies run on the cores a spinning host would take.
    public static func `default`(for device: VulkanDevice) -> HostWait {
        device.physicalDevice.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? .blocking : HostWait(spin: .milliseconds(2))
    }

    /// Polls `done` until it is true or `spin` (capped at `timeout`) has passed, then calls
    /// `block` with the nanoseconds left. Throws `.timedOut(operation:after:)` when `block`
    /// returns `VK_TIMEOUT`, the typed error of `function` when it fails.
    func wait(timeout: Duration, operation: @autoclosure () -> String, function: String,
              done: () throws(VulkanError) -> Bool, block: (UInt64) -> VkResult) throws(VulkanError) {
        let start = monotonicNanoseconds()
        let total = timeout.vulkanNanoseconds
        let spinFor = min(spin.vulkanNanoseconds, total)
        if spinFor > 0 {
            var polls = 0
            while true {
                if try done() { return }
                polls += 1
                // The clock is read every few polls: both calls cost tens of nanoseconds.
                if polls & 7 == 0, monotonicNanoseconds() &- start >= spinFor { break }
            }
        }
        let spent = monotonicNanoseconds() &- start
        let left = total > spent ? total - spent : 0
        let result = block(left)
        if result == VK_TIMEOUT { throw .timedOut(operation: operation(), after: timeout) }
        try check(result, function, VulkanError.submission)
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
}
