import CVulkan
import Sharing

/// Measures which queue family copies fastest, for `CopyQueueFamily.automatic`: on a device of
/// its own with one queue in every family that can copy (buffers shared between them all), each
/// family copies `smallBytes` and `largeBytes` from device-local into host-visible memory, each
/// copy recorded once, submitted and waited for by polling; the families take turns, `rounds`
/// times after `warmup` unmeasured turns, so that a drift of the machine's speed hits them alike.
/// The medians rank them (`CopyQueueChoice.pick`). The answer is kept per process and device
/// (vendor, device, driver version and pipeline cache UUID), so later devices skip it. It takes
/// a device creation and a few milliseconds of copies on an H200.
enum CopyFamilyCalibration {
    static let smallBytes: UInt64 = 4 << 10
    static let largeBytes: UInt64 = 1 << 20
    static let rounds = 24
    static let warmup = 3
    /// Each copy's wait ends with an error after this.
    static let timeout: Duration = .seconds(5)

    private static let known = Locked<[String: CopyQueueChoice]>([:])

    /// The family `asked` comes to on `physicalDevice` (main family `main`), measuring when it
    /// is `.automatic` and no earlier device of this process measured the same device.
    static func choice(_ asked: CopyQueueFamily, physicalDevice: PhysicalDevice, options: VulkanDevice.Options,
                       main: UInt32) throws(VulkanError) -> CopyQueueChoice {
        let cpu = physicalDevice.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU
        switch try CopyQueueChoice.plan(asked, families: physicalDevice.queueFamilies(), main: main, cpuDevice: cpu) {
        case .decided(let choice):
            return choice
        case .measure(let candidates):
            let key = cacheKey(physicalDevice)
            if let cached = known.withLock({ $0[key] }) { return cached }
            let choice: CopyQueueChoice
            do {
                choice = CopyQueueChoice.pick(try measure(physicalDevice: physicalDevice, options: options, families: candidates),
                                              main: main)
            } catch {
                // Measuring is an optimisation: the main family always works.
                choice = CopyQueueChoice(family: main, mainFamily: main, reason: "the main family: measuring failed (\(error))")
            }
            known.withLock { $0[key] = choice }
            return choice
        }
    }

    /// The timings of `families` (the main family first) on a device made for the measurement.
    static func measure(physicalDevice: PhysicalDevice, options: VulkanDevice.Options, families: [UInt32])
        throws(VulkanError) -> [CopyFamilyTiming]
    {
        var measuring = options
        measuring.queueFamilies = families
        let device = try VulkanDevice(physicalDevice: physicalDevice, options: measuring)
        let source = try DeviceBuffer(device: device, size: largeBytes, hostVisible: false)
        let destination = try DeviceBuffer(device: device, size: largeBytes, hostVisible: true)
        let poll = HostWait(spin: timeout)
        // Per family, a runner per size, each holding its recording.
        var runners: [(family: UInt32, small: GPUCommandRunner, large: GPUCommandRunner)] = []
        for family in families {
            guard let queue = device.queue(family: family) else { continue }
            func runner(_ size: UInt64) throws(VulkanError) -> GPUCommandRunner {
                let r = try GPUCommandRunner(device: device, on: queue, hostWait: poll)
                try r.record(timeout: timeout, closing: .copyToHost) { (rec) throws(VulkanError) in
                    try rec.copy(from: source, to: destination, size: size)
                }
                return r
            }
            runners.append((family, try runner(smallBytes), try runner(largeBytes)))
        }
        var small = [[Double]](repeating: [], count: runners.count)
        var large = [[Double]](repeating: [], count: runners.count)
        for round in 0..<(warmup + rounds) {
            for (i, r) in runners.enumerated() {
                let t0 = monotonicNanoseconds()
                try r.small.runRecorded(timeout: timeout)
                let t1 = monotonicNanoseconds()
                try r.large.runRecorded(timeout: timeout)
                let t2 = monotonicNanoseconds()
                guard round >= warmup else { continue }
                small[i].append(Double(t1 - t0) / 1e3)
                large[i].append(Double(t2 - t1) / 1e3)
            }
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        return runners.indices.map { i in
            CopyFamilyTiming(family: runners[i].family, smallBytes: smallBytes, smallMicroseconds: median(small[i]),
                             largeBytes: largeBytes, largeMicroseconds: median(large[i]))
        }
    }

    private static func cacheKey(_ device: PhysicalDevice) -> String {
        let p = device.properties
        let uuid = withUnsafeBytes(of: p.pipelineCacheUUID) { Array($0) }.map { String($0, radix: 16) }.joined()
        return "\(p.vendorID):\(p.deviceID):\(p.driverVersion):\(uuid)"
    }
}
