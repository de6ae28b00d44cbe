// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "VkVerbs",
    products: [
        .library(name: "Verbs", targets: ["Verbs"]),
        .library(name: "VulkanMemory", targets: ["VulkanMemory"]),
        .library(name: "VulkanRegistration", targets: ["VulkanRegistration"]),
        .library(name: "Transfer", targets: ["Transfer"]),
        .library(name: "VerbsEmbedded", targets: ["VerbsEmbedded"]),
        .executable(name: "vkverbs", targets: ["vkverbs"]),
        // The C API: built as libVkVerbsC.so, installed as libvkverbs.so.0 (mk/capi.mk),
        // with Sources/VkVerbsC/include/vkverbs.h. (A product named "vkverbs" would clash with the CLI.)
        .library(name: "VkVerbsC", type: .dynamic, targets: ["VkVerbsC"]),
        // The Vulkan layer VK_LAYER_VKVERBS_rdma_emulation: libVkLayerRDMA.so, docs/vulkan-layer.md.
        .library(name: "VkLayerRDMA", type: .dynamic, targets: ["VkLayerRDMA"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // libibverbs + librdmacm, found through pkg-config; Debian's -dev packages provide them.
        .systemLibrary(
            name: "CVerbs",
            pkgConfig: "libibverbs",
            providers: [.apt(["libibverbs-dev", "librdmacm-dev"])]
        ),
        // The Vulkan loader's headers and library (Debian: libvulkan-dev).
        .systemLibrary(
            name: "CVulkan",
            pkgConfig: "vulkan",
            providers: [.apt(["libvulkan-dev"])]
        ),
        // Locked and MemoryAddress, the Sendable building blocks every module keeps shared state in;
        // below both Verbs and VulkanMemory, so neither needs the other for them.
        .target(name: "Sharing"),
        .target(name: "Verbs", dependencies: ["CVerbs", "Sharing"]),
        // An in-memory twin of a connected endpoint (Verbs' ConnectedEndpoint) for host-speed tests.
        .target(name: "VerbsEmbedded", dependencies: ["Verbs", "Sharing"]),
        // Vulkan memory a NIC can register; knows nothing of verbs (what the NIC takes comes in as
        // NICCapabilities, a value).
        .target(name: "VulkanMemory", dependencies: ["CVulkan", "Sharing"]),
        // The bridge: NICCapabilities from a protection domain, and the memory region of a Vulkan
        // allocation (registration keeps the allocation alive).
        .target(name: "VulkanRegistration", dependencies: ["Verbs", "VulkanMemory"]),
        .target(name: "Transfer", dependencies: ["Verbs", "VulkanMemory", "CVulkan", "Sharing"]),
        // SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104) for the ping-pong handshake's optional
        // shared-secret check: a few hundred bytes per connection, so no crypto library to build.
        .target(name: "Hashing"),
        .target(name: "PingPong", dependencies: [
            "Verbs", "VulkanMemory", "VulkanRegistration", "CVerbs", "Sharing", "Hashing",
        ]),
        // The CLI's exercises: the end-to-end exchanges behind `vkverbs selftest`, `loopback`,
        // `exchange` and `gpu-exchange`, the in-process connected pair `transfer-bench` measures
        // over, and the test bytes they verify (Pattern). The RDMA tests reuse them; what only the
        // tests use lives in RDMATestSupport.
        .target(name: "SelfTest", dependencies: ["Verbs", "Transfer", "VulkanMemory", "VulkanRegistration", "Sharing"]),
        // The numbered, checksummed stream that survives faults (`vkverbs stream`).
        .target(name: "NumberedStream", dependencies: ["Verbs", "Transfer"]),
        // Frames into a ring of slots of receiver memory, with credits and drop policies (`vkverbs frames`).
        .target(name: "FrameStream", dependencies: ["Verbs", "VulkanMemory", "VulkanRegistration", "NumberedStream", "Sharing"],
                exclude: ["Shaders/frame-checksum.comp"]),
        // The C API: @_cdecl functions over Verbs, VulkanMemory, VulkanRegistration and Transfer (docs/c-api.md).
        // Links the Swift runtime statically (the .so needs no Swift libraries where it is installed),
        // names itself libvkverbs.so.0 (the file mk/capi.mk installs) and exports only vkv_*.
        .target(
            name: "VkVerbsC",
            dependencies: ["Verbs", "VulkanMemory", "VulkanRegistration", "Transfer", "CVulkan", "Sharing",
                           "NumberedStream", "FrameStream"],
            exclude: ["include", "vkverbs.map"],
            linkerSettings: [.unsafeFlags([
                "-static-stdlib", "-Xlinker", "-soname=libvkverbs.so.0",
                "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/VkVerbsC/vkverbs.map",
            ])]
        ),
        // Plain C; the Vulkan loader loads it through its manifest (Sources/VkLayerRDMA/manifest), so
        // nothing links it. Only vkNegotiateLoaderLayerInterfaceVersion is exported.
        .target(
            name: "VkLayerRDMA",
            exclude: ["manifest", "tools"],
            cSettings: [.unsafeFlags(["-fvisibility=hidden"])],
            linkerSettings: [.linkedLibrary("pthread"), .unsafeFlags(["-nostartfiles", "-static-stdlib"])]
        ),
        // `vkverbs doctor`'s judgement: gathered facts in, checks with causes and fixes and a verdict
        // out, without system calls (the CLI gathers the facts); and the bound every probe runs under.
        .target(name: "Doctor", dependencies: ["Verbs", "VulkanMemory", "Sharing"]),
        .executableTarget(
            name: "vkverbs",
            dependencies: [
                "Verbs", "CVerbs", "CVulkan", "Doctor", "SelfTest", "PingPong", "VulkanMemory", "VulkanRegistration",
                "Transfer", "NumberedStream", "FrameStream", "Sharing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What only the tests use: the fabric's device and address from its environment
        // (RDMAEnvironment), a base class that finds an active port or skips (fails inside the
        // fabric), running a child process.
        .target(name: "RDMATestSupport", dependencies: ["Verbs"]),
        .testTarget(name: "VerbsTests", dependencies: ["Verbs", "VerbsEmbedded", "SelfTest", "RDMATestSupport"]),
        .testTarget(
            name: "VulkanMemoryTests",
            dependencies: ["VulkanMemory", "VulkanRegistration", "CVulkan", "Verbs", "VerbsEmbedded"],
            exclude: ["Shaders/pattern.comp", "Shaders/copy.comp"]
        ),
        .testTarget(name: "HashingTests", dependencies: ["Hashing"]),
        .testTarget(name: "DoctorTests", dependencies: ["Doctor", "Verbs", "VulkanMemory", "RDMATestSupport"]),
        .testTarget(name: "PingPongTests", dependencies: [
            "PingPong", "CVerbs", "Verbs", "VerbsEmbedded", "VulkanMemory", "RDMATestSupport", "Sharing",
        ]),
        .testTarget(name: "TransferTests", dependencies: [
            "Transfer", "Verbs", "VerbsEmbedded", "VulkanMemory", "VulkanRegistration", "CVulkan", "SelfTest", "NumberedStream",
            "RDMATestSupport", "Sharing",
        ]),
        .testTarget(name: "FrameStreamTests", dependencies: [
            "FrameStream", "NumberedStream", "Verbs", "VerbsEmbedded", "RDMATestSupport", "Sharing", "VulkanMemory",
            "VulkanRegistration",
        ]),
        // The fuzz target for every decoder of peer bytes (ping-pong handshake and control
        // messages, the numbered stream): a corpus replayer in plain builds, a libFuzzer binary
        // under -DVKVERBS_FUZZING -sanitize=fuzzer,address (mk/fuzz.mk, Fuzz/).
        .systemLibrary(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"),
        // The fuzz targets' file handling for their corpus-replay and seed-writing modes.
        .target(name: "FuzzSupport", path: "Fuzz/FuzzSupport"),
        .executableTarget(name: "HandshakeFuzzer", dependencies: ["PingPong", "NumberedStream", "Verbs", "CLibFuzzer", "FuzzSupport"],
                          path: "Fuzz/HandshakeFuzzer"),
        // Every peer input at session level: a ping-pong server session and the stream receiver
        // driven by a hostile peer over the in-memory twin (Fuzz/SessionFuzzer/main.swift).
        .executableTarget(name: "SessionFuzzer", dependencies: [
            "PingPong", "NumberedStream", "Verbs", "VerbsEmbedded", "VulkanMemory", "CLibFuzzer", "FuzzSupport",
        ], path: "Fuzz/SessionFuzzer"),
    ]
)
