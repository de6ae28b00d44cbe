/*
 * Examples/c/misuse.c: bad use of the C API from C. Every call here is wrong on purpose
 * (NULL and garbage handles, handles of another kind, calls after close, sizes and ranges out
 * of bounds, unknown flags, wrong rkeys, ...); each must return the documented status with a
 * message naming the function, and nothing may crash. Exit 0 when every check passed.
 *
 *   misuse                 host checks: no RDMA device needed (Vulkan through lavapipe)
 *   misuse --rdma ADDR     also the checks that need a device and a connection (rxe on ADDR)
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vkverbs.h>
#include "checks.h"
#include "vk_setup.h"

/* ---- Thread-local messages ---------------------------------------------------------- */

static void *other_thread(void *arg) {
    char *seen = arg;
    /* A fresh thread has no message, and its failure does not touch the main thread's. */
    strcpy(seen, vkv_last_error_message());
    vkv_memory_close(NULL);
    strcat(seen, "|");
    strncat(seen, vkv_last_error_message(), 200);
    return NULL;
}

static void host_checks(void) {
    uint64_t u64 = 0;
    uint16_t port = 0;
    size_t len = 0;
    uint8_t descriptor[VKV_REMOTE_DESCRIPTOR_SIZE] = {0};
    vkv_device *dev = NULL;
    vkv_memory *mem = NULL;
    vkv_connection *conn = NULL;
    vkv_listener *listener = NULL;
    vkv_vulkan *vkv = NULL;
    vkv_memory_strategy strategy;
    void *ptr;
    VkBuffer buffer;

    TRUE(vkv_version() == VKV_VERSION);
    TRUE(strcmp(vkv_status_string(VKV_ERR_TIMEOUT), "VKV_ERR_TIMEOUT") == 0);
    TRUE(strcmp(vkv_status_string((vkv_status)999), "VKV_ERR_UNKNOWN_STATUS") == 0);
    TRUE(vkv_live_handle_count() == 0);

    /* NULL handles, everywhere. */
    EXPECT(vkv_device_close, (NULL), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_device_name, (NULL, (char *)descriptor, sizeof descriptor), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_vulkan_close, (NULL), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_allocate, (NULL, NULL, 4096, VKV_STRATEGY_AUTO, VKV_ACCESS_REMOTE, &mem), VKV_ERR_INVALID_HANDLE);
    TRUE(mem == NULL);
    EXPECT(vkv_memory_register_host, (NULL, descriptor, sizeof descriptor, 0, &mem), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_size, (NULL, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_get_strategy, (NULL, &strategy), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_host_pointer, (NULL, &ptr), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_vk_buffer, (NULL, &buffer, NULL), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_remote_descriptor, (NULL, descriptor), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_close, (NULL), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_listen, (NULL, "127.0.0.1", 0, &listener), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_listener_port, (NULL, &port), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_accept, (NULL, NULL, 0, 10, &conn), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_listener_close, (NULL), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_connect, (NULL, "127.0.0.1", 1, NULL, 0, 10, &conn), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_connection_peer_data, (NULL, NULL, 0, &len), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_connection_close, (NULL), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_post_write, (NULL, NULL, 0, 1, descriptor, 0, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_post_write_imm, (NULL, NULL, 0, 1, descriptor, 0, 7, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_post_read, (NULL, NULL, 0, 1, descriptor, 0, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_post_send, (NULL, NULL, 0, 0, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_post_recv, (NULL, NULL, 0, 0, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_wait, (NULL, 1, 0, NULL), VKV_ERR_INVALID_HANDLE);
    {
        vkv_group *group = NULL;
        int32_t failed_member = 5, connected = 0;
        EXPECT(vkv_group_create, (NULL, "127.0.0.1", 0, 2, NULL, -1, NULL, 0, NULL, NULL, 10, &failed_member, &group),
               VKV_ERR_INVALID_HANDLE);
        TRUE(group == NULL && failed_member == -1);
        EXPECT(vkv_group_connected, (NULL, 0, &connected), VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_group_descriptor, (NULL, 0, NULL, 0, &len), VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_group_write, (NULL, 1, NULL, 0, 1, descriptor, 0, 10), VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_group_read, (NULL, 1, NULL, 0, 1, descriptor, 0, 10), VKV_ERR_INVALID_HANDLE);
        uint64_t op = 1;
        EXPECT(vkv_group_post_write, (NULL, 1, NULL, 0, 1, descriptor, 0, 10, &op), VKV_ERR_INVALID_HANDLE);
        TRUE(op == 0);
        EXPECT(vkv_group_post_write, (NULL, 1, NULL, 0, 1, descriptor, 0, 10, NULL), VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_group_wait, (NULL, 1, 10), VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_group_close, (NULL), VKV_ERR_INVALID_HANDLE);
        TRUE(vkv_group_record_size() > 0);
    }

    /* Garbage that was never a handle: a stack address, a small integer, all bits set. */
    EXPECT(vkv_device_close, ((vkv_device *)(void *)descriptor), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_size, ((vkv_memory *)(uintptr_t)0x1234, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_wait, ((vkv_connection *)(uintptr_t)UINTPTR_MAX, 1, 0, NULL), VKV_ERR_INVALID_HANDLE);

    /* NULL out parameters. */
    EXPECT(vkv_device_open, (NULL, NULL), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_vulkan_required_device_extensions, (VK_NULL_HANDLE, NULL, NULL), VKV_ERR_INVALID_ARGUMENT);

    /* No such RDMA device (on a host without RDMA, no device at all): NOT_FOUND, out set to NULL. */
    dev = (vkv_device *)(uintptr_t)1;
    EXPECT(vkv_device_open, ("no-such-device0", &dev), VKV_ERR_NOT_FOUND);
    TRUE(dev == NULL);

    /* The extension list: count, then too little room. */
    uint32_t count = 0;
    EXPECT(vkv_vulkan_required_device_extensions, (VK_NULL_HANDLE, NULL, &count), VKV_OK);
    TRUE(count == 5);
    const char *names[5];
    uint32_t room = 2;
    EXPECT(vkv_vulkan_required_device_extensions, (VK_NULL_HANDLE, names, &room), VKV_ERR_OUT_OF_BOUNDS);
    TRUE(room == 2);

    /* Vulkan: the application's lavapipe device, wrapped wrongly and then rightly. */
    struct vk_setup vk;
    if (vk_setup_create(&vk, "misuse") != 0) {
        checks++;
        failures++;
        printf("FAIL: cannot create a Vulkan device for the Vulkan checks\n");
        return;
    }
    EXPECT(vkv_vulkan_open, (VK_NULL_HANDLE, VK_API_VERSION_1_1, vk.physical_device, vk.device, vk.queue_family,
                             NULL, 0, 0, &vkv), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_vulkan_open, (vk.instance, VK_API_VERSION_1_1, vk.physical_device, VK_NULL_HANDLE, vk.queue_family,
                             NULL, 0, 0, &vkv), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_vulkan_open, (vk.instance, VK_API_VERSION_1_1, vk.physical_device, vk.device, 99, NULL, 0, 0, &vkv),
           VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_vulkan_open, (vk.instance, VK_API_VERSION_1_0, vk.physical_device, vk.device, vk.queue_family, NULL,
                             0, 0, &vkv), VKV_ERR_UNSUPPORTED);
    EXPECT(vkv_vulkan_open, (vk.instance, VK_API_VERSION_1_1, vk.physical_device, vk.device, vk.queue_family, NULL,
                             0, 0x80, &vkv), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_vulkan_open, (vk.instance, VK_API_VERSION_1_1, vk.physical_device, vk.device, vk.queue_family, NULL,
                             3, 0, &vkv), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_vulkan_open, (vk.instance, VK_API_VERSION_1_1, vk.physical_device, vk.device, vk.queue_family,
                             vk.extensions, vk.extension_count, vk.vkv_flags, NULL), VKV_ERR_INVALID_ARGUMENT);
    TRUE(vkv == NULL);
    EXPECT(vkv_vulkan_open, (vk.instance, VK_API_VERSION_1_1, vk.physical_device, vk.device, vk.queue_family,
                             vk.extensions, vk.extension_count, vk.vkv_flags, &vkv), VKV_OK);
    TRUE(vkv_live_handle_count() == 1);
    /* A handle of one kind passed as another. */
    EXPECT(vkv_device_close, ((vkv_device *)(void *)vkv), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_allocate, ((vkv_device *)(void *)vkv, vkv, 4096, VKV_STRATEGY_AUTO, 0, &mem),
           VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_vulkan_close, (vkv), VKV_OK);
    /* After close: the same pointer is refused, close again too. */
    EXPECT(vkv_vulkan_close, (vkv), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_memory_allocate, ((vkv_device *)(void *)vkv, vkv, 4096, VKV_STRATEGY_AUTO, 0, &mem),
           VKV_ERR_INVALID_HANDLE);
    vk_setup_destroy(&vk);

    /* Messages are per thread. */
    EXPECT(vkv_listener_close, (NULL), VKV_ERR_INVALID_HANDLE);
    char main_message[512], seen[512] = "";
    strncpy(main_message, vkv_last_error_message(), sizeof main_message - 1);
    pthread_t t;
    pthread_create(&t, NULL, other_thread, seen);
    pthread_join(t, NULL);
    TRUE(seen[0] == '|');                                          /* nothing before its own failure */
    TRUE(strncmp(seen + 1, "vkv_memory_close:", 17) == 0);         /* then its own */
    TRUE(strcmp(vkv_last_error_message(), main_message) == 0);     /* main's unchanged */
    TRUE(vkv_live_handle_count() == 0);
}

/* ---- With an RDMA device ------------------------------------------------------------ */

struct acceptor {
    vkv_listener *listener;
    int timeout_ms;
    vkv_connection *conn;
    vkv_status status;
};

static void *accept_thread(void *arg) {
    struct acceptor *a = arg;
    a->status = vkv_accept(a->listener, "hi", 2, a->timeout_ms, &a->conn);
    return NULL;
}

/* Connects a client to a listener of the same process. */
static vkv_status connect_pair(vkv_device *dev, const char *addr, vkv_listener *listener, vkv_connection **client,
                               vkv_connection **server) {
    uint16_t port = 0;
    vkv_listener_port(listener, &port);
    struct acceptor a = {listener, 20000, NULL, VKV_OK};
    pthread_t t;
    pthread_create(&t, NULL, accept_thread, &a);
    vkv_status s = vkv_connect(dev, addr, port, "client", 6, 20000, client);
    pthread_join(t, NULL);
    *server = a.conn;
    return s != VKV_OK ? s : a.status;
}

static void rdma_checks(const char *addr) {
    vkv_device *dev = NULL, *other = NULL;
    vkv_memory *local = NULL, *target = NULL, *foreign = NULL, *gpu = NULL;
    vkv_listener *listener = NULL;
    vkv_connection *client = NULL, *server = NULL, *conn = NULL;
    vkv_vulkan *vkv = NULL;
    uint8_t descriptor[VKV_REMOTE_DESCRIPTOR_SIZE], bad_rkey[VKV_REMOTE_DESCRIPTOR_SIZE];
    uint64_t op = 0, op2 = 0, size = 0;
    char name[4];
    static uint8_t host[3][8192] __attribute__((aligned(4096)));
    VkBuffer buffer;
    vkv_completion done;

    EXPECT(vkv_device_open, (NULL, &dev), VKV_OK);
    if (!dev) return;
    EXPECT(vkv_device_open, (NULL, &other), VKV_OK);
    EXPECT(vkv_device_name, (dev, name, sizeof name), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_device_name, (dev, NULL, 0), VKV_ERR_INVALID_ARGUMENT);

    /* Host registrations. */
    EXPECT(vkv_memory_register_host, (dev, NULL, 4096, 0, &local), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_memory_register_host, (dev, host[0], 0, 0, &local), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_memory_register_host, (dev, host[0], 4096, 0x100, &local), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_memory_register_host, (dev, host[0], 8192, VKV_ACCESS_LOCAL_WRITE, NULL), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_memory_register_host, (dev, host[0], 8192, VKV_ACCESS_LOCAL_WRITE, &local), VKV_OK);
    EXPECT(vkv_memory_register_host, (dev, host[1], 8192, VKV_ACCESS_REMOTE, &target), VKV_OK);
    EXPECT(vkv_memory_register_host, (other, host[2], 8192, VKV_ACCESS_LOCAL_WRITE, &foreign), VKV_OK);
    EXPECT(vkv_memory_remote_descriptor, (local, descriptor), VKV_ERR_INVALID_ARGUMENT); /* no remote rights */
    EXPECT(vkv_memory_remote_descriptor, (target, NULL), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_memory_remote_descriptor, (target, descriptor), VKV_OK);
    EXPECT(vkv_memory_vk_buffer, (local, &buffer, NULL), VKV_ERR_UNSUPPORTED);
    EXPECT(vkv_memory_vk_buffer, (local, NULL, NULL), VKV_ERR_INVALID_ARGUMENT);

    /* Vulkan allocations out of range. */
    struct vk_setup vk;
    if (vk_setup_create(&vk, "misuse") == 0) {
        EXPECT(vkv_vulkan_open, (vk.instance, VK_API_VERSION_1_1, vk.physical_device, vk.device, vk.queue_family,
                                 vk.extensions, vk.extension_count, vk.vkv_flags, &vkv), VKV_OK);
        EXPECT(vkv_memory_allocate, (dev, vkv, 0, VKV_STRATEGY_AUTO, VKV_ACCESS_REMOTE, &gpu), VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_memory_allocate, (dev, vkv, 4096, (vkv_memory_strategy)42, VKV_ACCESS_REMOTE, &gpu),
               VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_memory_allocate, (dev, vkv, 4096, VKV_STRATEGY_AUTO, 0xF0, &gpu), VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_memory_allocate, (dev, vkv, (uint64_t)1 << 60, VKV_STRATEGY_AUTO, VKV_ACCESS_REMOTE, &gpu),
               VKV_ERR_OUT_OF_MEMORY);
        EXPECT(vkv_memory_allocate, (dev, vkv, UINT64_MAX, VKV_STRATEGY_AUTO, VKV_ACCESS_REMOTE, &gpu),
               VKV_ERR_OUT_OF_BOUNDS);
        EXPECT(vkv_memory_allocate, (dev, vkv, 4096, VKV_STRATEGY_RDMA_ADDRESS, VKV_ACCESS_REMOTE, &gpu),
               VKV_ERR_UNSUPPORTED); /* lavapipe has no VK_NV_external_memory_rdma */
        TRUE(gpu == NULL);
        EXPECT(vkv_memory_allocate, (dev, vkv, 4099, VKV_STRATEGY_AUTO, VKV_ACCESS_REMOTE, &gpu), VKV_OK);
        EXPECT(vkv_memory_size, (gpu, &size), VKV_OK);
        TRUE(size == 4099);
        EXPECT(vkv_memory_vk_buffer, (gpu, &buffer, NULL), VKV_OK);
        TRUE(buffer != VK_NULL_HANDLE);
        /* The application's order: library objects before the VkDevice. */
        EXPECT(vkv_memory_close, (gpu), VKV_OK);
        EXPECT(vkv_memory_size, (gpu, &size), VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_vulkan_close, (vkv), VKV_OK);
        vk_setup_destroy(&vk);
    } else {
        checks++;
        failures++;
    }

    /* Connection setup that cannot work. */
    char long_data[200] = {0};
    EXPECT(vkv_connect, (dev, addr, 1, NULL, 0, 5000, &conn), VKV_ERR_CONNECTION); /* nothing listens */
    EXPECT(vkv_connect, (dev, addr, 1, long_data, sizeof long_data, 5000, &conn), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_connect, (dev, addr, 1, NULL, 4, 5000, &conn), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_connect, (dev, NULL, 1, NULL, 0, 5000, &conn), VKV_ERR_INVALID_ARGUMENT);
    /* An address no RDMA device reaches: a failed connection (or no answer in time), never a system error. */
    vkv_status unreachable = vkv_connect(dev, "203.0.113.7", 1, NULL, 0, 3000, &conn);
    TRUE(unreachable == VKV_ERR_CONNECTION || unreachable == VKV_ERR_TIMEOUT);
    if (unreachable != VKV_ERR_CONNECTION && unreachable != VKV_ERR_TIMEOUT)
        printf("  unreachable connect: %s\n", vkv_status_string(unreachable));
    EXPECT(vkv_listen, (dev, "203.0.113.7", 0, &listener), VKV_ERR_SYSTEM); /* no device has that address */
    EXPECT(vkv_listen, (dev, addr, 0, &listener), VKV_OK);
    EXPECT(vkv_accept, (listener, NULL, 0, 200, &conn), VKV_ERR_TIMEOUT); /* nobody connects */
    EXPECT(vkv_accept, (listener, long_data, sizeof long_data, 200, &conn), VKV_ERR_OUT_OF_BOUNDS);

    EXPECT(connect_pair, (dev, addr, listener, &client, &server), VKV_OK);
    if (!client || !server) goto out;
    size_t len = 0;
    char peer[64];
    EXPECT(vkv_connection_peer_data, (server, NULL, 0, &len), VKV_OK);
    TRUE(len >= 6);
    EXPECT(vkv_connection_peer_data, (server, peer, 3, &len), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_connection_peer_data, (server, peer, sizeof peer, NULL), VKV_ERR_INVALID_ARGUMENT);

    /* Posts with bad arguments: nothing is posted. */
    EXPECT(vkv_post_write, (client, local, 0, 8193, descriptor, 0, &op), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_post_write, (client, local, 8192, 1, descriptor, 0, &op), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_post_write, (client, local, UINT64_MAX, 2, descriptor, 0, &op), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_post_write, (client, local, 0, 4096, descriptor, 4097, &op), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_post_read, (client, local, 0, 16, descriptor, UINT64_MAX, &op), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_post_write, (client, local, 0, 16, NULL, 0, &op), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_post_write, (client, local, 0, 16, descriptor, 0, NULL), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_post_write, (client, NULL, 0, 16, descriptor, 0, &op), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_post_write, (client, foreign, 0, 16, descriptor, 0, &op), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_post_send, (client, NULL, 0, 16, &op), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_post_recv, (server, target, 0, 9000, &op), VKV_ERR_OUT_OF_BOUNDS);
    EXPECT(vkv_post_write, ((vkv_connection *)(void *)local, local, 0, 16, descriptor, 0, &op), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_wait, (client, 12345, 0, NULL), VKV_ERR_INVALID_ARGUMENT); /* never posted */

    /* A good write, waited for once; a second wait is refused. */
    memset(host[0], 0xAB, sizeof host[0]);
    EXPECT(vkv_post_write, (client, local, 0, 8192, descriptor, 0, &op), VKV_OK);
    EXPECT(vkv_wait, (client, op, 10000, &done), VKV_OK);
    TRUE(done.op == op && done.opcode == VKV_OP_WRITE && done.byte_count == 8192);
    TRUE(host[1][0] == 0xAB && host[1][8191] == 0xAB);
    EXPECT(vkv_wait, (client, op, 0, NULL), VKV_ERR_INVALID_ARGUMENT);

    /* A receive nobody sends to: timeout 0 and a short timeout leave it pending. */
    EXPECT(vkv_post_recv, (server, NULL, 0, 0, &op2), VKV_OK);
    EXPECT(vkv_wait, (server, op2, 0, NULL), VKV_ERR_TIMEOUT);
    EXPECT(vkv_wait, (server, op2, 50, NULL), VKV_ERR_TIMEOUT);
    EXPECT(vkv_post_send, (client, NULL, 0, 0, &op), VKV_OK);
    EXPECT(vkv_wait, (client, op, 10000, NULL), VKV_OK);
    EXPECT(vkv_wait, (server, op2, 10000, &done), VKV_OK);
    TRUE(done.opcode == VKV_OP_RECV && done.byte_count == 0 && !done.has_imm);

    /* A wrong rkey: the peer refuses, the connection is failed from then on. */
    memcpy(bad_rkey, descriptor, sizeof bad_rkey);
    bad_rkey[19] ^= 0x5A;
    EXPECT(vkv_post_write, (client, local, 0, 64, bad_rkey, 0, &op), VKV_OK);
    EXPECT(vkv_wait, (client, op, 10000, NULL), VKV_ERR_REMOTE_ACCESS);
    EXPECT(vkv_post_write, (client, local, 0, 64, descriptor, 0, &op), VKV_ERR_REMOTE_ACCESS);

    /* A failed receive (64 bytes sent into 16) fails that connection for every later call, as
       vkverbs.h promises: the next receive is refused at once, not left to time out. */
    vkv_connection *c2 = NULL, *s2 = NULL;
    EXPECT(connect_pair, (dev, addr, listener, &c2, &s2), VKV_OK);
    if (c2 && s2) {
        EXPECT(vkv_post_recv, (s2, target, 0, 16, &op2), VKV_OK);
        EXPECT(vkv_post_send, (c2, local, 0, 64, &op), VKV_OK);
        TRUE(vkv_wait(c2, op, 10000, NULL) != VKV_OK);
        EXPECT(vkv_wait, (s2, op2, 10000, NULL), VKV_ERR_COMPLETION);
        EXPECT(vkv_post_recv, (s2, target, 0, 16, &op2), VKV_ERR_COMPLETION);
        EXPECT(vkv_post_send, (s2, NULL, 0, 0, &op), VKV_ERR_COMPLETION);
    }
    if (c2) EXPECT(vkv_connection_close, (c2), VKV_OK);
    if (s2) EXPECT(vkv_connection_close, (s2), VKV_OK);

    /* Calls after close. */
    EXPECT(vkv_connection_close, (client), VKV_OK);
    EXPECT(vkv_connection_close, (client), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_post_send, (client, NULL, 0, 0, &op), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_wait, (client, op, 0, NULL), VKV_ERR_INVALID_HANDLE);
    client = NULL;

    /* The peer went away: a pending receive completes as disconnected, not after a timeout. */
    EXPECT(vkv_post_recv, (server, NULL, 0, 0, &op2), VKV_OK);
    EXPECT(vkv_wait, (server, op2, 10000, NULL), VKV_ERR_DISCONNECTED);
    EXPECT(vkv_connection_close, (server), VKV_OK);
    server = NULL;

    /* Closing a parent first is allowed: its children keep working until closed. */
    EXPECT(vkv_device_close, (dev), VKV_OK);
    EXPECT(vkv_memory_size, (local, &size), VKV_OK);
    vkv_listener *late = NULL;
    EXPECT(vkv_listen, (dev, addr, 0, &late), VKV_ERR_INVALID_HANDLE);
    TRUE(late == NULL);
    dev = NULL;

out:
    if (client) vkv_connection_close(client);
    if (server) vkv_connection_close(server);
    if (listener) EXPECT(vkv_listener_close, (listener), VKV_OK);
    EXPECT(vkv_memory_close, (local), VKV_OK);
    EXPECT(vkv_memory_close, (target), VKV_OK);
    EXPECT(vkv_memory_close, (foreign), VKV_OK);
    EXPECT(vkv_memory_close, (local), VKV_ERR_INVALID_HANDLE);
    if (dev) vkv_device_close(dev);
    EXPECT(vkv_device_close, (other), VKV_OK);
    TRUE(vkv_live_handle_count() == 0);
}

static int solo_gather(const void *mine, void *all, size_t n, void *user) {
    (void)user;
    memcpy(all, mine, n);
    return 0;
}

/* ---- Groups: what an allgather may hand back ------------------------------------------ */

/* How bad_gather answers member 0 of a group of 2 (user points to one of these). */
enum gather_mode {
    GATHER_FAILS,         /* the callback reports an error */
    GATHER_GARBAGE,       /* member 1's slot holds bytes that are not a record */
    GATHER_UNFILLED,      /* member 1's slot is left as it was (a short allgather) */
    GATHER_DUPLICATE,     /* member 1's slot repeats member 0's record: rank 0 claimed twice */
    GATHER_MINE_MISPLACED /* member 0's own record is missing from its place */
};

static int bad_gather(const void *mine, void *all, size_t n, void *user) {
    uint8_t *a = all;
    switch (*(const enum gather_mode *)user) {
    case GATHER_FAILS: return 7;
    case GATHER_GARBAGE:
        memcpy(a, mine, n);
        for (size_t i = 0; i < n; i++) a[n + i] = (uint8_t)(i * 37u + 11u);
        return 0;
    case GATHER_UNFILLED: memcpy(a, mine, n); return 0;
    case GATHER_DUPLICATE: memcpy(a, mine, n); memcpy(a + n, mine, n); return 0;
    case GATHER_MINE_MISPLACED: memcpy(a + n, mine, n); return 0;
    }
    return 1;
}

/* Every bad answer is refused with a typed error naming the member to blame, nothing is left
 * open, and a good group forms on the same address afterwards. */
static void group_checks(const char *addr) {
    vkv_device *dev = NULL;
    vkv_group *group = NULL;
    int32_t failed_member = 0, one = 1, seven = 7;
    size_t baseline;
    static const struct {
        enum gather_mode mode;
        int32_t blamed;
    } cases[] = {{GATHER_FAILS, -1}, {GATHER_GARBAGE, 1}, {GATHER_UNFILLED, 1}, {GATHER_DUPLICATE, 0},
                 {GATHER_MINE_MISPLACED, 0}};

    EXPECT(vkv_device_open, (NULL, &dev), VKV_OK);
    if (!dev) return;
    baseline = vkv_live_handle_count();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum gather_mode mode = cases[i].mode;
        failed_member = 99;
        EXPECT(vkv_group_create, (dev, addr, 0, 2, NULL, -1, "d", 1, bad_gather, &mode, 5000, &failed_member, &group),
               VKV_ERR_INVALID_ARGUMENT);
        TRUE(group == NULL);
        if (failed_member != cases[i].blamed)
            fprintf(stderr, "misuse(c): allgather mode %d: failed_member %d, expected %d (%s)\n", (int)mode,
                    failed_member, cases[i].blamed, vkv_last_error_message());
        TRUE(failed_member == cases[i].blamed);
        TRUE(vkv_live_handle_count() == baseline);
    }
    /* Arguments refused before the allgather runs. */
    enum gather_mode never = GATHER_FAILS;
    EXPECT(vkv_group_create, (dev, addr, 2, 2, NULL, -1, NULL, 0, bad_gather, &never, 100, &failed_member, &group),
           VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_group_create, (dev, addr, 0, 2, &seven, 1, NULL, 0, bad_gather, &never, 100, &failed_member, &group),
           VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_group_create, (dev, addr, 0, 2, NULL, 1, NULL, 0, bad_gather, &never, 100, &failed_member, &group),
           VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_group_create, (dev, addr, 0, 2, &one, 1, NULL, 513, bad_gather, &never, 100, &failed_member, &group),
           VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_group_create, (dev, addr, 0, 2, &one, 1, NULL, 0, NULL, NULL, 100, &failed_member, &group),
           VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_group_create, (dev, NULL, 0, 2, &one, 1, NULL, 0, bad_gather, &never, 100, &failed_member, &group),
           VKV_ERR_INVALID_ARGUMENT);
    TRUE(vkv_live_handle_count() == baseline);
    /* A group of one forms (nothing to connect); its calls check their ranks. */
    uint8_t d[VKV_REMOTE_DESCRIPTOR_SIZE] = {0};
    size_t len = 0;
    int32_t connected = 1;
    EXPECT(vkv_group_create, (dev, addr, 0, 1, NULL, -1, "solo", 4, solo_gather, NULL, 5000, &failed_member, &group),
           VKV_OK);
    if (group) {
        EXPECT(vkv_group_descriptor, (group, 0, NULL, 0, &len), VKV_OK);
        TRUE(len == 4);
        EXPECT(vkv_group_descriptor, (group, 0, d, 2, &len), VKV_ERR_OUT_OF_BOUNDS);
        EXPECT(vkv_group_descriptor, (group, 1, d, sizeof d, &len), VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_group_connected, (group, 0, &connected), VKV_OK);
        TRUE(connected == 0);
        EXPECT(vkv_group_write, (group, 1, NULL, 0, 1, d, 0, 10), VKV_ERR_INVALID_HANDLE);
        uint64_t op = 1;
        EXPECT(vkv_group_post_write, (group, 1, NULL, 0, 1, d, 0, 10, &op), VKV_ERR_INVALID_HANDLE);
        TRUE(op == 0);
        /* An op never posted (or waited for already) is refused. */
        EXPECT(vkv_group_wait, (group, 7, 10), VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_group_close, (group), VKV_OK);
        EXPECT(vkv_group_close, (group), VKV_ERR_INVALID_HANDLE);
    }
    EXPECT(vkv_device_close, (dev), VKV_OK);
    TRUE(vkv_live_handle_count() == 0);
}

int main(int argc, char **argv) {
    const char *rdma = NULL;
    if (argc == 3 && strcmp(argv[1], "--rdma") == 0) rdma = argv[2];
    else if (argc != 1) {
        fprintf(stderr, "usage: %s [--rdma ADDR]\n", argv[0]);
        return 2;
    }
    host_checks();
    if (rdma) rdma_checks(rdma);
    if (rdma) group_checks(rdma);
    printf("misuse(c): %d checks, %d failed%s\n", checks, failures, rdma ? " (with RDMA)" : " (host)");
    return failures ? 1 : 0;
}
