/// The barrier a recording ends with, before its completion is signalled.
///
/// A fence or semaphore signal makes the device's writes available but not visible to the host:
/// a host read of copied bytes needs a barrier into the host stage (the fence section of the
/// Vulkan spec says so). How wide that barrier is may cost GPU time per submission; `gpu-bench
/// --probe-sizes` measures each one.
public enum ClosingBarrier: String, Sendable, Codable, CaseIterable {
    /// Every earlier write visible to every later command and to the host (any work).
    case full
    /// Transfer writes visible to host reads only: enough for copies the host reads next.
    case copyToHost = "copy-to-host"
    /// Transfer writes visible to every later command on the device, not to the host: for copies
    /// into device memory the host does not read, which later GPU work on the same queue reads.
    case copyToDevice = "copy-to-device"
    /// No barrier: for copies whose results only GPU work that waits on the submission's
    /// semaphore reads (the signal and the wait carry the memory dependency: `StagingRing`'s
    /// receiving chunks by default, `GPUCommandRunner.lastSubmission`), and for measuring what a
    /// barrier costs. Not for anything the host reads.
    case none
}
