import CVulkan
import Sharing

/// Measures which queue family copies fastest, for `CopyQueueFamily.automatic`: on a device of
/// its own with one queue in every family that can copy (buffers shared between them all), each
/// family in turn copies 4 KiB, 256 KiB, 1 MiB and 32 MiB between device-local and host-visible memory,
/// both ways, each copy recorded once, submitted and waited for by polling, `warmup` times
/// unmeasured and `repeats` times measured, back to back on that family as a ring or a runner
/// uses it (the first submission after another family's work can cost over 100 us on an H200,
/// which a measurement alternating families copy by copy mistook for the family's own cost). The
/// families take turns `rounds` times, so that a drift of the machine's speed hits them alike.
/// The medians rank them per size class (`CopyQueueChoice.pick`). The answer is kept per process
/// and device (vendor, device, driver version and pipeline cache UUID), so later devices skip it.
/// It takes a device creation and about 0.1 s of copies on an H200. The small class holds 256 KiB
/// besides 4 KiB and 1 MiB: on an H200 the copy families differ by less than the noise at 4-64 KiB
/// but by up to a fifth at 256 KiB - 1 MiB, and with 4 KiB and 1 MiB alone the 4 KiB noise picked a
/// family that copies 256 KiB - 1 MiB 10-20 % slower (docs/nvidia-results.md).
enum CopyFamilyCalibration {
    static let sizes: [UInt64] = [4 << 10, 256 << 10, 1 << 20, 32 << 20]
    static let rounds = 2
    static let warmup = 2
    static let repeats = 5
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
    static func measure(physicalDevice: PhysicalDevice, options: VulkanDevice.Options, families: [UInt32],
                        sizes: [UInt64] = sizes, rounds: Int = rounds) throws(VulkanError) -> [CopyFamilyTiming]
    {
        guard let largest = sizes.max(), largest > 0, rounds > 0 else { throw .invalidArgument("nothing to measure") }
        var measuring = options
        measuring.queueFamilies = families
        let device = try VulkanDevice(physicalDevice: physicalDevice, options: measuring)
        let local = try DeviceBuffer(device: device, size: largest, hostVisible: false)
        let host = try DeviceBuffer(device: device, size: largest, hostVisible: true)
        let poll = HostWait(spin: timeout)
        let copies = sizes.flatMap { size in [(size, "d2h"), (size, "h2d")] }
        // Per family, a runner per copy, each holding its recording.
        var runners: [(family: UInt32, copies: [GPUCommandRunner])] = []
        for family in families {
            guard let queue = device.queue(family: family) else { continue }
            var list: [GPUCommandRunner] = []
            for (size, direction) in copies {
                let r = try GPUCommandRunner(device: device, on: queue, hostWait: poll)
                try r.record(timeout: timeout, closing: direction == "d2h" ? .copyToHost : .full) { (rec) throws(VulkanError) in
                    try rec.copy(from: direction == "d2h" ? local : host, to: direction == "d2h" ? host : local, size: size)
                }
                list.append(r)
            }
            runners.append((family, list))
        }
        var samples = [[[Double]]](repeating: [[Double]](repeating: [], count: copies.count), count: runners.count)
        for _ in 0..<rounds {
            for (f, family) in runners.enumerated() {
                for (c, runner) in family.copies.enumerated() {
                    for n in 0..<(warmup + repeats) {
                        let t0 = monotonicNanoseconds()
                        try runner.runRecorded(timeout: timeout)
                        let t1 = monotonicNanoseconds()
                        if n >= warmup { samples[f][c].append(Double(t1 - t0) / 1e3) }
                    }
                }
            }
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        return runners.indices.map { f in
            CopyFamilyTiming(family: runners[f].family, copies: copies.indices.map { c in
                CopyFamilyTiming.Copy(bytes: copies[c].0, direction: copies[c].1, microseconds: median(samples[f][c]))
            })
        }
    }

    private static func cacheKey(_ device: PhysicalDevice) -> String {
        let p = device.properties
        let uuid = withUnsafeBytes(of: p.pipelineCacheUUID) { Array($0) }.map { String($0, radix: 16) }.joined()
        return "\(p.vendorID):\(p.deviceID):\(p.driverVersion):\(uuid)"
    }
}
