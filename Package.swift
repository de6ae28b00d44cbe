// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "VkVerbs",
    products: [
        .library(name: "Verbs", targets: ["Verbs"]),
        .library(name: "VulkanMemory", targets: ["VulkanMemory"]),
        .library(name: "Transfer", targets: ["Transfer"]),
        .executable(name: "vkverbs", targets: ["vkverbs"]),
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
        .target(name: "Transfer", dependencies: ["Verbs"]),
        // The end-to-end exchange shared by the CLI's self-test and the RDMA tests.
        .target(name: "SelfTest", dependencies: ["Verbs"]),
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
        .testTarget(name: "TransferTests", dependencies: ["Transfer", "Verbs", "SelfTest"]),
    ]
)
