// Examples/cpp/transfer.cpp: the C++ peer of Examples/c/transfer.c (same protocol and options),
// with the C handles held in RAII owners and failures turned into exceptions.
//
//   transfer-cpp --server [--bind ADDR] [--port N] [--size BYTES] [--strategy NAME] [--device NAME]
//   transfer-cpp --client HOST [--port N] [--size BYTES] [--strategy NAME] [--device NAME]
//
// server: accepts with its target's descriptor in the private data, verifies the client's
// write-with-imm byte by byte, sends its verdict, receives the client's.
// client: writes the pattern, reads it back and compares, receives the server's verdict, sends its own.
#include <vkverbs.h>
#include <vulkan/vulkan.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr const char *prog = "transfer(c++)";
constexpr uint32_t writeImm = 0x5EED0001u;
constexpr int32_t stepTimeoutMs = 60000;

struct Failure : std::runtime_error {
    vkv_status status;
    Failure(const std::string &what, vkv_status s)
        : std::runtime_error(what + ": " + vkv_status_string(s) + ": " + vkv_last_error_message()), status(s) {}
};

void check(vkv_status s, const char *what) {
    if (s != VKV_OK) throw Failure(what, s);
}

// One owner type per handle kind: the close function runs exactly once.
template <typename T, vkv_status (*Close)(T *)>
struct Handle {
    T *raw = nullptr;
    Handle() = default;
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    ~Handle() { reset(); }
    void reset() {
        if (raw) Close(raw);
        raw = nullptr;
    }
    T **out() {
        reset();
        return &raw;
    }
    T *get() const { return raw; }
};
using Device = Handle<vkv_device, vkv_device_close>;
using Vulkan = Handle<vkv_vulkan, vkv_vulkan_close>;
using Memory = Handle<vkv_memory, vkv_memory_close>;
using Listener = Handle<vkv_listener, vkv_listener_close>;
using Connection = Handle<vkv_connection, vkv_connection_close>;

const char *strategyName(vkv_memory_strategy s) {
    static const char *names[] = {"auto", "rdma-address", "dma-buf", "host-import", "host-visible", "staged", "host"};
    return static_cast<unsigned>(s) < 7 ? names[s] : "?";
}

uint8_t pattern(uint64_t i) { return static_cast<uint8_t>(i * 131u + 7u + (i >> 9)); }

// The application's Vulkan objects, destroyed after everything the library made from them.
struct VulkanSetup {
    VkInstance instance = VK_NULL_HANDLE;
    VkPhysicalDevice physical = VK_NULL_HANDLE;
    VkDevice device = VK_NULL_HANDLE;
    uint32_t family = 0;
    uint32_t flags = 0;
    std::vector<const char *> extensions;
    std::string name;

    VulkanSetup() {
        VkApplicationInfo app{};
        app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
        app.pApplicationName = prog;
        app.apiVersion = VK_API_VERSION_1_1;
        VkInstanceCreateInfo ici{};
        ici.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
        ici.pApplicationInfo = &app;
        if (vkCreateInstance(&ici, nullptr, &instance) != VK_SUCCESS) throw std::runtime_error("vkCreateInstance failed");
        uint32_t n = 0;
        vkEnumeratePhysicalDevices(instance, &n, nullptr);
        std::vector<VkPhysicalDevice> devices(n);
        vkEnumeratePhysicalDevices(instance, &n, devices.data());
        for (VkPhysicalDevice d : devices) {
            uint32_t count = 0;
            vkGetPhysicalDeviceQueueFamilyProperties(d, &count, nullptr);
            std::vector<VkQueueFamilyProperties> families(count);
            vkGetPhysicalDeviceQueueFamilyProperties(d, &count, families.data());
            for (uint32_t f = 0; f < count && physical == VK_NULL_HANDLE; f++) {
                if (families[f].queueFlags & VK_QUEUE_COMPUTE_BIT) {
                    physical = d;
                    family = f;
                }
            }
            if (physical != VK_NULL_HANDLE) break;
        }
        if (physical == VK_NULL_HANDLE) {
            vkDestroyInstance(instance, nullptr);
            throw std::runtime_error("no Vulkan device with a compute queue");
        }
        VkPhysicalDeviceProperties props;
        vkGetPhysicalDeviceProperties(physical, &props);
        name = props.deviceName;

        // The library says which device extensions it can use here (two-call idiom).
        uint32_t count = 0;
        check(vkv_vulkan_required_device_extensions(physical, nullptr, &count), "vkv_vulkan_required_device_extensions");
        extensions.resize(count);
        check(vkv_vulkan_required_device_extensions(physical, extensions.data(), &count),
              "vkv_vulkan_required_device_extensions");
        VkPhysicalDeviceExternalMemoryRDMAFeaturesNV rdma{};
        rdma.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV;
        for (const char *e : extensions) {
            if (std::strcmp(e, "VK_NV_external_memory_rdma") == 0) {
                VkPhysicalDeviceFeatures2 features{};
                features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
                features.pNext = &rdma;
                vkGetPhysicalDeviceFeatures2(physical, &features);
                rdma.pNext = nullptr;
                if (rdma.externalMemoryRDMA) flags |= VKV_VULKAN_EXTERNAL_MEMORY_RDMA;
            }
        }
        float priority = 1.0f;
        VkDeviceQueueCreateInfo qci{};
        qci.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
        qci.queueFamilyIndex = family;
        qci.queueCount = 1;
        qci.pQueuePriorities = &priority;
        VkDeviceCreateInfo dci{};
        dci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
        dci.pNext = (flags & VKV_VULKAN_EXTERNAL_MEMORY_RDMA) ? &rdma : nullptr;
        dci.queueCreateInfoCount = 1;
        dci.pQueueCreateInfos = &qci;
        dci.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
        dci.ppEnabledExtensionNames = extensions.data();
        if (vkCreateDevice(physical, &dci, nullptr, &device) != VK_SUCCESS) {
            vkDestroyInstance(instance, nullptr);
            throw std::runtime_error("vkCreateDevice failed");
        }
    }
    ~VulkanSetup() {
        vkDestroyDevice(device, nullptr);
        vkDestroyInstance(instance, nullptr);
    }
    VulkanSetup(const VulkanSetup &) = delete;
    VulkanSetup &operator=(const VulkanSetup &) = delete;
};

vkv_memory_strategy parseStrategy(const std::string &s) {
    if (s == "auto") return VKV_STRATEGY_AUTO;
    if (s == "rdma-address") return VKV_STRATEGY_RDMA_ADDRESS;
    if (s == "dma-buf") return VKV_STRATEGY_DMA_BUF;
    if (s == "host-import") return VKV_STRATEGY_HOST_POINTER_IMPORT;
    if (s == "host-visible") return VKV_STRATEGY_HOST_VISIBLE;
    if (s == "staged") return VKV_STRATEGY_STAGED;
    throw std::invalid_argument("unknown strategy " + s);
}

uint64_t firstMismatch(const uint8_t *p, uint64_t n, uint64_t &bad) {
    uint64_t first = n;
    bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] != pattern(i)) {
            if (bad++ == 0) first = i;
        }
    }
    return first;
}

struct Options {
    bool server = false;
    std::string peer, bind, device;
    uint16_t port = 18600;
    uint64_t size = 1 << 20;
    vkv_memory_strategy strategy = VKV_STRATEGY_AUTO;
};

// Returns whether every check passed (this side's and the peer's verdict).
bool run(const Options &o) {
    const char *role = o.server ? "server" : "client";
    VulkanSetup vk;  // declared first: destroyed last
    Device dev;
    Vulkan vkv;
    Memory data, check_mem, ctrl;
    Listener listener;
    Connection conn;
    bool ok = true;

    check(vkv_device_open(o.device.empty() ? nullptr : o.device.c_str(), dev.out()), "vkv_device_open");
    char rdmaName[64];
    check(vkv_device_name(dev.get(), rdmaName, sizeof rdmaName), "vkv_device_name");
    check(vkv_vulkan_open(vk.instance, VK_API_VERSION_1_1, vk.physical, vk.device, vk.family, vk.extensions.data(),
                          static_cast<uint32_t>(vk.extensions.size()), vk.flags, vkv.out()),
          "vkv_vulkan_open");
    check(vkv_memory_allocate(dev.get(), vkv.get(), o.size, o.strategy, VKV_ACCESS_LOCAL_WRITE | VKV_ACCESS_REMOTE,
                              data.out()),
          "vkv_memory_allocate");
    void *host = nullptr;
    check(vkv_memory_host_pointer(data.get(), &host), "vkv_memory_host_pointer");
    auto *bytes = static_cast<uint8_t *>(host);
    vkv_memory_strategy used;
    check(vkv_memory_get_strategy(data.get(), &used), "vkv_memory_get_strategy");
    std::printf("%s %s: RDMA device %s, Vulkan device %s, %llu bytes, strategy %s, %zu extension(s) from the library\n",
                prog, role, rdmaName, vk.name.c_str(), static_cast<unsigned long long>(o.size), strategyName(used),
                vk.extensions.size());
    std::fflush(stdout);

    std::vector<uint8_t> control(4096);  // the application's own memory, registered
    check(vkv_memory_register_host(dev.get(), control.data(), control.size(), VKV_ACCESS_LOCAL_WRITE, ctrl.out()),
          "vkv_memory_register_host");
    vkv_completion done{};
    uint64_t op = 0, bad = 0;

    if (o.server) {
        uint8_t hello[4 + 8 + VKV_REMOTE_DESCRIPTOR_SIZE];
        std::memcpy(hello, "VKVX", 4);
        for (int i = 0; i < 8; i++) hello[4 + i] = static_cast<uint8_t>(o.size >> (56 - 8 * i));
        check(vkv_memory_remote_descriptor(data.get(), hello + 12), "vkv_memory_remote_descriptor");
        check(vkv_listen(dev.get(), o.bind.empty() ? nullptr : o.bind.c_str(), o.port, listener.out()), "vkv_listen");
        std::printf("%s server: listening on %s:%u\n", prog, o.bind.empty() ? "*" : o.bind.c_str(), o.port);
        std::fflush(stdout);
        check(vkv_accept(listener.get(), hello, sizeof hello, stepTimeoutMs, conn.out()), "vkv_accept");
        uint64_t immOp, verdictOp;
        check(vkv_post_recv(conn.get(), nullptr, 0, 0, &immOp), "vkv_post_recv");
        check(vkv_post_recv(conn.get(), ctrl.get(), 2048, 64, &verdictOp), "vkv_post_recv");
        check(vkv_wait(conn.get(), immOp, stepTimeoutMs, &done), "vkv_wait(write-with-imm)");
        if (!done.has_imm || done.imm != writeImm) {
            std::fprintf(stderr, "%s server: expected imm 0x%x, got 0x%x\n", prog, writeImm, done.imm);
            ok = false;
        }
        uint64_t first = firstMismatch(bytes, o.size, bad);
        if (bad) {
            std::fprintf(stderr, "%s server: FAIL: %llu bytes differ, first at %llu\n", prog,
                         static_cast<unsigned long long>(bad), static_cast<unsigned long long>(first));
            ok = false;
        } else {
            std::printf("%s server: ok: the client's write of %llu bytes verified byte by byte (imm 0x%x)\n", prog,
                        static_cast<unsigned long long>(o.size), done.imm);
        }
        std::memcpy(control.data(), ok ? "PASS" : "FAIL", 4);
        check(vkv_post_send(conn.get(), ctrl.get(), 0, 4, &op), "vkv_post_send");
        check(vkv_wait(conn.get(), op, stepTimeoutMs, nullptr), "vkv_wait(send)");
        check(vkv_wait(conn.get(), verdictOp, stepTimeoutMs, &done), "vkv_wait(verdict)");
        if (done.byte_count != 4 || std::memcmp(control.data() + 2048, "PASS", 4) != 0) {
            std::fprintf(stderr, "%s server: the client reports failure\n", prog);
            ok = false;
        } else {
            std::printf("%s server: the client verified its read-back\n", prog);
        }
    } else {
        for (uint64_t i = 0; i < o.size; i++) bytes[i] = pattern(i);
        check(vkv_memory_allocate(dev.get(), vkv.get(), o.size, o.strategy, VKV_ACCESS_LOCAL_WRITE, check_mem.out()),
              "vkv_memory_allocate(read-back)");
        void *checkHost = nullptr;
        check(vkv_memory_host_pointer(check_mem.get(), &checkHost), "vkv_memory_host_pointer");
        vkv_status s = VKV_ERR_CONNECTION;
        for (int attempt = 0; attempt < 600 && s == VKV_ERR_CONNECTION; attempt++) {
            s = vkv_connect(dev.get(), o.peer.c_str(), o.port, nullptr, 0, 10000, conn.out());
            if (s == VKV_ERR_CONNECTION) std::this_thread::sleep_for(std::chrono::milliseconds(250));
        }
        check(s, "vkv_connect");
        uint8_t hello[VKV_ACCEPT_PRIVATE_DATA_MAX];
        size_t helloLength = 0;
        check(vkv_connection_peer_data(conn.get(), hello, sizeof hello, &helloLength), "vkv_connection_peer_data");
        uint64_t serverSize = 0;
        for (int i = 0; i < 8; i++) serverSize = (serverSize << 8) | hello[4 + i];
        if (helloLength < 12 + VKV_REMOTE_DESCRIPTOR_SIZE || std::memcmp(hello, "VKVX", 4) != 0 || serverSize != o.size)
            throw std::runtime_error("the server's private data is not ours, or its size differs");
        const uint8_t *remote = hello + 12;
        uint64_t verdictOp;
        check(vkv_post_recv(conn.get(), ctrl.get(), 2048, 64, &verdictOp), "vkv_post_recv");
        check(vkv_post_write_imm(conn.get(), data.get(), 0, o.size, remote, 0, writeImm, &op), "vkv_post_write_imm");
        check(vkv_wait(conn.get(), op, stepTimeoutMs, &done), "vkv_wait(write)");
        std::printf("%s client: wrote %llu bytes with imm 0x%x\n", prog, static_cast<unsigned long long>(o.size), writeImm);
        check(vkv_post_read(conn.get(), check_mem.get(), 0, o.size, remote, 0, &op), "vkv_post_read");
        check(vkv_wait(conn.get(), op, stepTimeoutMs, &done), "vkv_wait(read)");
        uint64_t first = firstMismatch(static_cast<const uint8_t *>(checkHost), o.size, bad);
        if (bad) {
            std::fprintf(stderr, "%s client: FAIL: read-back: %llu bytes differ, first at %llu\n", prog,
                         static_cast<unsigned long long>(bad), static_cast<unsigned long long>(first));
            ok = false;
        } else {
            std::printf("%s client: ok: read %llu bytes back, all match\n", prog, static_cast<unsigned long long>(o.size));
        }
        check(vkv_wait(conn.get(), verdictOp, stepTimeoutMs, &done), "vkv_wait(verdict)");
        if (done.byte_count != 4 || std::memcmp(control.data() + 2048, "PASS", 4) != 0) {
            std::fprintf(stderr, "%s client: the server reports failure\n", prog);
            ok = false;
        } else {
            std::printf("%s client: the server verified the write\n", prog);
        }
        std::memcpy(control.data(), ok ? "PASS" : "FAIL", 4);
        check(vkv_post_send(conn.get(), ctrl.get(), 0, 4, &op), "vkv_post_send");
        check(vkv_wait(conn.get(), op, stepTimeoutMs, nullptr), "vkv_wait(send)");
    }
    return ok;
}

}  // namespace

int main(int argc, char **argv) {
    Options o;
    bool roleGiven = false;
    try {
        for (int i = 1; i < argc; i++) {
            std::string a = argv[i];
            bool more = i + 1 < argc;
            if (a == "--server") { o.server = true; roleGiven = true; }
            else if (a == "--client" && more) { o.peer = argv[++i]; roleGiven = true; }
            else if (a == "--bind" && more) o.bind = argv[++i];
            else if (a == "--port" && more) o.port = static_cast<uint16_t>(std::stoi(argv[++i]));
            else if (a == "--size" && more) o.size = std::stoull(argv[++i], nullptr, 0);
            else if (a == "--strategy" && more) o.strategy = parseStrategy(argv[++i]);
            else if (a == "--device" && more) o.device = argv[++i];
            else throw std::invalid_argument("unknown argument " + a);
        }
        if (!roleGiven) throw std::invalid_argument("--server or --client HOST is required");
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s: %s\nusage: %s --server [--bind ADDR] | --client HOST  [--port N] [--size BYTES] "
                             "[--strategy NAME] [--device NAME]\n", prog, e.what(), argv[0]);
        return 2;
    }
    bool ok = false;
    try {
        ok = run(o);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s: %s\n", prog, e.what());
    }
    if (vkv_live_handle_count() != 0) {
        std::fprintf(stderr, "%s: %zu handle(s) still open\n", prog, vkv_live_handle_count());
        ok = false;
    }
    std::printf("%s %s: %s\n", prog, o.server ? "server" : "client", ok ? "passed" : "FAILED");
    return ok ? 0 : 1;
}
