// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "VkVerbs",
    products: [
        .library(name: "Verbs", targets: ["Verbs"]),
        .library(name: "VulkanMemory", targets: ["VulkanMemory"]),
        .library(name: "Transfer", targets: ["Transfer"]),
        .executable(name: "vkverbs", targets: ["vkverbs"]),
        // The C API (issue 7): built as libVkVerbsC.so, installed as libvkverbs.so.0 (mk/capi.mk),
        // with Sources/VkVerbsC/include/vkverbs.h. (A product named "vkverbs" would clash with the CLI.)
        .library(name: "VkVerbsC", type: .dynamic, targets: ["VkVerbsC"]),
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
        .target(name: "Verbs", dependencies: ["CVerbs"]),
        .target(name: "VulkanMemory", dependencies: ["CVulkan", "Verbs"]),
        .target(name: "Transfer", dependencies: ["Verbs", "VulkanMemory", "CVulkan"]),
        // The end-to-end exchange shared by the CLI's self-test and the RDMA tests.
        .target(name: "SelfTest", dependencies: ["Verbs"]),
        // The C API: @_cdecl functions over Verbs, VulkanMemory and Transfer (docs/c-api.md).
        .target(name: "VkVerbsC", dependencies: ["Verbs", "VulkanMemory", "Transfer", "CVulkan"]),
        .executableTarget(
            name: "vkverbs",
            dependencies: [
                "Verbs", "SelfTest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "VerbsTests", dependencies: ["Verbs", "SelfTest"]),
        .testTarget(
            name: "VulkanMemoryTests",
            dependencies: ["VulkanMemory", "CVulkan", "Verbs", "SelfTest"],
            exclude: ["Shaders/pattern.comp"]
        ),
        .testTarget(name: "TransferTests", dependencies: ["Transfer", "Verbs", "VulkanMemory", "CVulkan", "SelfTest"]),
    ]
)
