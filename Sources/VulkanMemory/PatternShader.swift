import CVulkan

// Generated once from Tests/VulkanMemoryTests/Shaders/pattern.comp; regenerate after editing it with:
//   glslangValidator -V --target-env vulkan1.1 -o /tmp/pattern.spv Tests/VulkanMemoryTests/Shaders/pattern.comp
//   python3 -c "import struct,sys; d=open('/tmp/pattern.spv','rb').read(); \
//     print(', '.join('0x%08x' % w for w in struct.unpack('<%dI' % (len(d)//4), d)))"
// and paste the words below. One copy for the tests and for `vkverbs vulkan check`.

/// SPIR-V of `pattern.comp`: word i = seed ^ (i * 2654435761) for i < count (push constants
/// count, seed; one storage buffer at set 0, binding 0; 64 invocations per workgroup).
/// A pattern no fill can fake: every word differs, and a wrong offset shows.
public enum PatternShader {
    public static let localSize: UInt32 = 64
    /// Bytes of push constants the shader takes (count, seed).
    public static let pushConstantSize: UInt32 = 8
    public static let spirv: [UInt32] = [
        0x07230203, 0x00010300, 0x0008000b, 0x0000002e, 0x00000000, 0x00020011, 0x00000001, 0x0006000b,
        0x00000001, 0x4c534c47, 0x6474732e, 0x3035342e, 0x00000000, 0x0003000e, 0x00000000, 0x00000001,
        0x0006000f, 0x00000005, 0x00000004, 0x6e69616d, 0x00000000, 0x0000000b, 0x00060010, 0x00000004,
        0x00000011, 0x00000040, 0x00000001, 0x00000001, 0x00030003, 0x00000002, 0x000001c2, 0x00040005,
        0x00000004, 0x6e69616d, 0x00000000, 0x00030005, 0x00000008, 0x00000069, 0x00080005, 0x0000000b,
        0x475f6c67, 0x61626f6c, 0x766e496c, 0x7461636f, 0x496e6f69, 0x00000044, 0x00050005, 0x00000011,
        0x61726150, 0x6574656d, 0x00007372, 0x00050006, 0x00000011, 0x00000000, 0x6e756f63, 0x00000074,
        0x00050006, 0x00000011, 0x00000001, 0x64656573, 0x00000000, 0x00030005, 0x00000013, 0x00000000,
        0x00040005, 0x0000001e, 0x64726f57, 0x00000073, 0x00050006, 0x0000001e, 0x00000000, 0x64726f77,
        0x00000073, 0x00030005, 0x00000020, 0x00000000, 0x00040047, 0x0000000b, 0x0000000b, 0x0000001c,
        0x00050048, 0x00000011, 0x00000000, 0x00000023, 0x00000000, 0x00050048, 0x00000011, 0x00000001,
        0x00000023, 0x00000004, 0x00030047, 0x00000011, 0x00000002, 0x00040047, 0x0000001d, 0x00000006,
        0x00000004, 0x00050048, 0x0000001e, 0x00000000, 0x00000023, 0x00000000, 0x00030047, 0x0000001e,
        0x00000002, 0x00040047, 0x00000020, 0x00000022, 0x00000000, 0x00040047, 0x00000020, 0x00000021,
        0x00000000, 0x00040047, 0x0000002d, 0x0000000b, 0x00000019, 0x00020013, 0x00000002, 0x00030021,
        0x00000003, 0x00000002, 0x00040015, 0x00000006, 0x00000020, 0x00000000, 0x00040020, 0x00000007,
        0x00000007, 0x00000006, 0x00040017, 0x00000009, 0x00000006, 0x00000003, 0x00040020, 0x0000000a,
        0x00000001, 0x00000009, 0x0004003b, 0x0000000a, 0x0000000b, 0x00000001, 0x0004002b, 0x00000006,
        0x0000000c, 0x00000000, 0x00040020, 0x0000000d, 0x00000001, 0x00000006, 0x0004001e, 0x00000011,
        0x00000006, 0x00000006, 0x00040020, 0x00000012, 0x00000009, 0x00000011, 0x0004003b, 0x00000012,
        0x00000013, 0x00000009, 0x00040015, 0x00000014, 0x00000020, 0x00000001, 0x0004002b, 0x00000014,
        0x00000015, 0x00000000, 0x00040020, 0x00000016, 0x00000009, 0x00000006, 0x00020014, 0x00000019,
        0x0003001d, 0x0000001d, 0x00000006, 0x0003001e, 0x0000001e, 0x0000001d, 0x00040020, 0x0000001f,
        0x0000000c, 0x0000001e, 0x0004003b, 0x0000001f, 0x00000020, 0x0000000c, 0x0004002b, 0x00000014,
        0x00000022, 0x00000001, 0x0004002b, 0x00000006, 0x00000026, 0x9e3779b1, 0x00040020, 0x00000029,
        0x0000000c, 0x00000006, 0x0004002b, 0x00000006, 0x0000002b, 0x00000040, 0x0004002b, 0x00000006,
        0x0000002c, 0x00000001, 0x0006002c, 0x00000009, 0x0000002d, 0x0000002b, 0x0000002c, 0x0000002c,
        0x00050036, 0x00000002, 0x00000004, 0x00000000, 0x00000003, 0x000200f8, 0x00000005, 0x0004003b,
        0x00000007, 0x00000008, 0x00000007, 0x00050041, 0x0000000d, 0x0000000e, 0x0000000b, 0x0000000c,
        0x0004003d, 0x00000006, 0x0000000f, 0x0000000e, 0x0003003e, 0x00000008, 0x0000000f, 0x0004003d,
        0x00000006, 0x00000010, 0x00000008, 0x00050041, 0x00000016, 0x00000017, 0x00000013, 0x00000015,
        0x0004003d, 0x00000006, 0x00000018, 0x00000017, 0x000500b0, 0x00000019, 0x0000001a, 0x00000010,
        0x00000018, 0x000300f7, 0x0000001c, 0x00000000, 0x000400fa, 0x0000001a, 0x0000001b, 0x0000001c,
        0x000200f8, 0x0000001b, 0x0004003d, 0x00000006, 0x00000021, 0x00000008, 0x00050041, 0x00000016,
        0x00000023, 0x00000013, 0x00000022, 0x0004003d, 0x00000006, 0x00000024, 0x00000023, 0x0004003d,
        0x00000006, 0x00000025, 0x00000008, 0x00050084, 0x00000006, 0x00000027, 0x00000025, 0x00000026,
        0x000500c6, 0x00000006, 0x00000028, 0x00000024, 0x00000027, 0x00060041, 0x00000029, 0x0000002a,
        0x00000020, 0x00000015, 0x00000021, 0x0003003e, 0x0000002a, 0x00000028, 0x000200f9, 0x0000001c,
        0x000200f8, 0x0000001c, 0x000100fd, 0x00010038,
    ]

    /// What the shader writes at word `i`.
    public static func word(_ i: UInt32, seed: UInt32) -> UInt32 { seed ^ (i &* 2_654_435_761) }

    /// The first `count` words the shader writes.
    public static func expected(words count: Int, seed: UInt32) -> [UInt32] {
        (0..<UInt32(count)).map { word($0, seed: seed) }
    }

    /// The byte offset of the first word of `bytes` that is not the pattern (nil: all match).
    /// Trailing bytes past the last whole word are not looked at.
    public static func firstMismatch(in bytes: UnsafeRawBufferPointer, seed: UInt32) -> Int? {
        let count = bytes.count / 4
        for i in 0..<count where bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) != word(UInt32(i), seed: seed) {
            return i * 4
        }
        return nil
    }
}

extension ComputeKernel {
    /// The pattern shader as a kernel on `device`.
    public static func pattern(device: VulkanDevice) throws(VulkanError) -> ComputeKernel {
        try ComputeKernel(device: device, spirv: PatternShader.spirv, pushConstantSize: PatternShader.pushConstantSize)
    }
}

extension CommandRecorder {
    /// Writes the pattern with `seed` over the first `size` bytes of `buffer` (all of it when nil;
    /// whole words only) with `kernel` (made by `ComputeKernel.pattern`). One dispatch of
    /// ceil(words / 64) workgroups, so at most 64 * maxComputeWorkGroupCount[0] words (65535 groups,
    /// 16 MiB - 256 B, on a device at the spec's minimum; NVIDIA allows 2^31 - 1).
    public func writePattern(_ kernel: ComputeKernel, into buffer: DeviceBuffer, seed: UInt32,
                             size: UInt64? = nil) throws(VulkanError) {
        let bytes = min(size ?? buffer.size, buffer.size)
        guard bytes >= 4, bytes / 4 <= UInt64(UInt32.max) else {
            throw .invalidArgument("a pattern of \(bytes) bytes: needs 4 bytes to 16 GiB")
        }
        let count = UInt32(bytes / 4)
        let groups = (count + PatternShader.localSize - 1) / PatternShader.localSize
        let limit = device.physicalDevice.properties.limits.maxComputeWorkGroupCount.0
        guard groups <= limit else {
            throw .invalidArgument("a pattern of \(bytes) bytes needs \(groups) workgroups; the device allows \(limit) "
                                   + "(at most \(UInt64(limit) * UInt64(PatternShader.localSize) * 4) bytes)")
        }
        try dispatch(kernel, buffer: buffer, groups: groups, pushConstants: [count, seed])
    }
}
