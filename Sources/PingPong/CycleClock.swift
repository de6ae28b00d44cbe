#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// Times latency samples with the CPU's cycle counter (`vkv_cycles`), as perftest does with
/// get_cycles: reading the system clock can cost a system call per read (see the shim), which a
/// microsecond ping-pong cannot afford several times per iteration. The counter's rate is
/// measured once per process against the monotonic clock.
enum CycleClock {
    /// Nanoseconds per counter tick.
    static let nanosecondsPerTick: Double = calibrate()

    static func calibrate() -> Double {
        if vkv_cycles_are_ns() != 0 { return 1 }
        // 20 ms is long enough that the two clock reads' cost (about a microsecond each at
        // worst) moves the rate by less than 0.01%.
        let n0 = vkv_monotonic_ns(), c0 = vkv_cycles()
        usleep(20_000)
        let n1 = vkv_monotonic_ns(), c1 = vkv_cycles()
        guard c1 > c0, n1 > n0 else { return 1 }
        return Double(n1 - n0) / Double(c1 - c0)
    }

    /// Ticks in `nanoseconds` (for deadlines kept in ticks).
    static func ticks(nanoseconds: UInt64) -> UInt64 {
        let ticks = Double(nanoseconds) / nanosecondsPerTick
        return ticks < 18_446_744_073_709_551_615.0 ? UInt64(ticks) : .max
    }

    /// Converts tick intervals to nanoseconds.
    static func nanoseconds(_ ticks: [UInt64]) -> [UInt64] {
        let rate = nanosecondsPerTick
        return ticks.map { UInt64((Double($0) * rate).rounded()) }
    }
}
