import CVulkan
import Verbs
import VulkanMemory

/// GPU work a transfer waits for before posting: the bytes are only there once it is done.
public enum GPUCompletion {
    /// The fence of the submission that produced the bytes (`vkWaitForFences`).
    case fence(VkFence, on: VulkanDevice)
    /// A timeline semaphore reaching a value (`vkWaitSemaphores`).
    case timeline(TimelineSemaphore, value: UInt64)

    func wait(timeout: Duration) throws(TransferError) {
        do {
            switch self {
            case let .fence(fence, device): try waitForFence(fence, on: device, timeout: timeout)
            case let .timeline(semaphore, value): try semaphore.wait(for: value, timeout: timeout)
            }
        } catch {
            if case let .timedOut(op, after) = error { throw TransferError.timedOut(operation: op, after: after) }
            throw TransferError.vulkan(error)
        }
    }
}

extension TransferEngine {
    /// Waits (bounded by the engine's timeout) for `gpu`, then posts the RDMA write, so the NIC
    /// never reads bytes the GPU is still writing.
    public func postWrite(_ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64 = 0,
                          immediate: UInt32? = nil, after gpu: GPUCompletion) throws(TransferError) -> Ticket {
        try gpu.wait(timeout: options.timeout)
        return try postWrite(segment, to: remote, at: offset, immediate: immediate)
    }

    /// Blocking form of `postWrite(_:to:at:immediate:after:)`.
    public func write(_ segment: LocalSegment, to remote: RemoteBuffer, at offset: UInt64 = 0,
                      immediate: UInt32? = nil, after gpu: GPUCompletion) throws(TransferError) {
        try wait(for: try postWrite(segment, to: remote, at: offset, immediate: immediate, after: gpu))
    }

    /// Waits for the next arrival and then signals `semaphore` to `value` from the host
    /// (`vkSignalSemaphore`), so GPU work that waits on it starts only once the bytes are there.
    public func nextArrival(timeout: Duration? = nil, signaling semaphore: TimelineSemaphore,
                            value: UInt64) throws(TransferError) -> Arrival {
        let arrival = try nextArrival(timeout: timeout)
        do { try semaphore.signal(value) } catch { throw TransferError.vulkan(error) }
        return arrival
    }
}
