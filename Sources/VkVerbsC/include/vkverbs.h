/*
 * vkverbs.h: the C API of VkVerbs (libvkverbs.so), RDMA to and from Vulkan memory.
 *
 * C99; usable from C++ (the declarations are extern "C"). Link with
 * `pkg-config --cflags --libs vkverbs`. See docs/c-api.md for a walk-through.
 *
 * OBJECTS AND OWNERSHIP
 *   vkv_device      an RDMA device (NIC) and one protection domain on it.
 *   vkv_vulkan      the application's VkInstance / VkPhysicalDevice / VkDevice, borrowed:
 *                   the library never destroys them.
 *   vkv_memory      registered memory: Vulkan memory the library allocated
 *                   (vkv_memory_allocate), or the application's host memory
 *                   (vkv_memory_register_host, which the application keeps valid until
 *                   vkv_memory_close returns).
 *   vkv_listener    a passive rdmacm endpoint; vkv_accept gives connections.
 *   vkv_connection  an established reliable connection; posts and waits happen on it.
 *   vkv_group       the members of an application connected through one engine (vkv_group_create).
 *   vkv_frame_receiver  the receiving end of a frame stream: a ring of slots (Vulkan or host
 *                   memory) one sender writes frames into, with credits (vkv_frame_receiver_accept).
 *   vkv_frame_sender    the sending end of a frame stream (vkv_frame_sender_connect).
 *
 *   Every handle is made by one vkv_*_open / allocate / register / listen / accept /
 *   connect call and released by exactly one vkv_*_close call. Handles are opaque tokens,
 *   never dereferenced by the library: every call looks its handles up in a table of live
 *   handles, and a token is never handed out twice. So a NULL handle, a handle already
 *   closed, a handle of the wrong kind or garbage is refused with VKV_ERR_INVALID_HANDLE and
 *   a message, it never crashes. (Closing returns VKV_ERR_INVALID_HANDLE for NULL, too.)
 *
 *   Objects keep what they need alive inside the library: a vkv_memory keeps its device's
 *   protection domain, a vkv_connection its device, so the close calls may come in any
 *   order; resources are freed when the last user is closed. The one order the
 *   application must keep is Vulkan's: close every vkv_memory made with a vkv_vulkan
 *   (and the vkv_vulkan) before destroying the VkDevice and VkInstance it wraps.
 *
 * ERRORS
 *   Every call that can fail returns a vkv_status; VKV_OK is 0. On failure,
 *   vkv_last_error_message() returns text naming the function and the cause, for the
 *   calling thread; it stays valid until the next failing call on that thread (a
 *   successful call does not change it). Out parameters are set to NULL / 0 on failure.
 *
 * THREADS
 *   Every function may be called from any thread. Calls on one vkv_connection are
 *   serialized inside the library (a vkv_wait holds the connection until it returns; use
 *   a short timeout if other threads post on the same connection); calls on different
 *   connections run in parallel. Closing a handle while another thread is inside a call
 *   that uses it is safe: that call finishes first (or fails with VKV_ERR_INVALID_HANDLE
 *   if it had not started), then the object is released.
 *
 * REMOTE DESCRIPTORS
 *   vkv_memory_remote_descriptor() writes VKV_REMOTE_DESCRIPTOR_SIZE bytes (address,
 *   length, rkey, big-endian) that the application sends to its peer by any means (MPI,
 *   a socket, the private data of vkv_accept / vkv_connect). The peer passes them to
 *   vkv_post_write / vkv_post_write_imm / vkv_post_read; ranges are checked against the
 *   descriptor's length before anything is posted.
 */
#ifndef VKVERBS_H
#define VKVERBS_H

#include <stddef.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VKV_VERSION_MAJOR 0
#define VKV_VERSION_MINOR 2
/* vkv_version() returns (major << 16) | minor of the library actually loaded. */
#define VKV_VERSION ((VKV_VERSION_MAJOR << 16) | VKV_VERSION_MINOR)

#define VKV_REMOTE_DESCRIPTOR_SIZE 20
/* Most private data bytes vkv_connect and vkv_accept can carry. The peer may see more bytes
 * than were sent (the transport pads them): put a length or a magic word inside. */
#define VKV_CONNECT_PRIVATE_DATA_MAX 56
#define VKV_ACCEPT_PRIVATE_DATA_MAX 196

/* Opaque handles. */
typedef struct vkv_device_s vkv_device;
typedef struct vkv_vulkan_s vkv_vulkan;
typedef struct vkv_memory_s vkv_memory;
typedef struct vkv_listener_s vkv_listener;
typedef struct vkv_connection_s vkv_connection;
typedef struct vkv_group_s vkv_group;
typedef struct vkv_frame_receiver_s vkv_frame_receiver;
typedef struct vkv_frame_sender_s vkv_frame_sender;

typedef enum vkv_status {
    VKV_OK = 0,
    VKV_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a bad flag or enum value, size 0, ... */
    VKV_ERR_INVALID_HANDLE = 2,   /* NULL, closed, or not a handle of this kind */
    VKV_ERR_NOT_FOUND = 3,        /* no such RDMA device, no active port, wrong device for a route */
    VKV_ERR_UNSUPPORTED = 4,      /* the device, driver or Vulkan implementation cannot do it */
    VKV_ERR_TIMEOUT = 5,          /* a bounded wait ran out; the operation may still complete */
    VKV_ERR_DISCONNECTED = 6,     /* the connection is closed (peer gone, operation flushed) */
    VKV_ERR_REMOTE_ACCESS = 7,    /* the peer refused the access (wrong rkey, range, rights) */
    VKV_ERR_OUT_OF_BOUNDS = 8,    /* a range outside the memory or the remote descriptor */
    VKV_ERR_CONNECTION = 9,       /* connection setup failed: rejected, unreachable, unresolved */
    VKV_ERR_COMPLETION = 10,      /* a work request completed with another error status */
    VKV_ERR_SYSTEM = 11,          /* an OS or verbs call failed (errno in the message) */
    VKV_ERR_VULKAN = 12,          /* a Vulkan call failed (VkResult in the message) */
    VKV_ERR_OUT_OF_MEMORY = 13,
    VKV_ERR_INTERNAL = 14,
    VKV_ERR_PROTOCOL = 15,        /* the peer broke a stream's protocol (bad credit, slot, order, header) */
    VKV_ERR_CORRUPTED = 16        /* a frame's bytes do not match the sender's checksum */
} vkv_status;

/* How vkv_memory_allocate makes Vulkan memory reachable by the NIC, best first. */
typedef enum vkv_memory_strategy {
    VKV_STRATEGY_AUTO = 0,                /* try each of the following in order */
    VKV_STRATEGY_RDMA_ADDRESS = 1,        /* VK_NV_external_memory_rdma + GPU peer-memory client */
    VKV_STRATEGY_DMA_BUF = 2,             /* VK_EXT_external_memory_dma_buf, ibv_reg_dmabuf_mr */
    VKV_STRATEGY_HOST_POINTER_IMPORT = 3, /* VK_EXT_external_memory_host: host pages imported */
    VKV_STRATEGY_HOST_VISIBLE = 4,        /* host-visible, host-coherent memory, mapped */
    VKV_STRATEGY_STAGED = 5,              /* device-local buffer + registered staging buffer */
    VKV_STRATEGY_HOST = 6                 /* reported for vkv_memory_register_host memory */
} vkv_memory_strategy;

/* Access rights of registered memory (bit flags). REMOTE_WRITE implies LOCAL_WRITE. */
enum {
    VKV_ACCESS_LOCAL_WRITE = 1,  /* the NIC may write it: receives, RDMA read targets */
    VKV_ACCESS_REMOTE_WRITE = 2, /* peers may RDMA-write it */
    VKV_ACCESS_REMOTE_READ = 4,  /* peers may RDMA-read it */
    VKV_ACCESS_REMOTE = 7
};

/* vkv_vulkan_open flags. */
enum {
    /* The application enabled VK_NV_external_memory_rdma *and* the externalMemoryRDMA feature
     * (VkPhysicalDeviceExternalMemoryRDMAFeaturesNV in VkDeviceCreateInfo.pNext). */
    VKV_VULKAN_EXTERNAL_MEMORY_RDMA = 1
};

typedef enum vkv_opcode {
    VKV_OP_WRITE = 1,
    VKV_OP_WRITE_IMM = 2,
    VKV_OP_READ = 3,
    VKV_OP_SEND = 4,
    VKV_OP_RECV = 5
} vkv_opcode;

/* What vkv_wait reports about a completed operation. */
typedef struct vkv_completion {
    uint64_t op;         /* the id the post call returned */
    uint32_t opcode;     /* vkv_opcode */
    uint32_t has_imm;    /* 1 when imm is valid (a receive consumed by a write-with-imm) */
    uint32_t imm;        /* the immediate value, host byte order */
    uint32_t reserved;
    uint64_t byte_count; /* receive: the bytes that arrived; others: the length posted */
} vkv_completion;

/* ---- Library --------------------------------------------------------------------- */

uint32_t vkv_version(void);
/* The enumerator's name, e.g. "VKV_ERR_TIMEOUT" (a static string). */
const char *vkv_status_string(vkv_status status);
/* The calling thread's message for its last failed call ("" if none). Do not free. */
const char *vkv_last_error_message(void);
/* How many handles are open (all kinds): for leak checks in tests. */
size_t vkv_live_handle_count(void);

/* ---- Vulkan (the application's own instance and device) ---------------------------- */

/* The device extensions the library can use that physical_device supports (all it knows
 * when physical_device is VK_NULL_HANDLE). Vulkan's two-call idiom: with names NULL,
 * *count receives the number; otherwise *count is the capacity of names and receives the
 * number written (VKV_ERR_OUT_OF_BOUNDS if there was not room for all). The strings are
 * static. Enable them in vkCreateDevice; the instance must be Vulkan 1.1 or newer. None is
 * strictly required: without any, VKV_STRATEGY_HOST_VISIBLE and STAGED still work. */
vkv_status vkv_vulkan_required_device_extensions(VkPhysicalDevice physical_device, const char **names,
                                                 uint32_t *count);

/* Wraps the application's handles. api_version: what it put in VkApplicationInfo (>= 1.1).
 * enabled_extensions: the device extensions it enabled (the strategies are chosen from
 * them). queue_family_index: a family of a queue created with the device (queue 0 is
 * used for the staging copies of VKV_STRATEGY_STAGED, under the library's lock). */
vkv_status vkv_vulkan_open(VkInstance instance, uint32_t api_version, VkPhysicalDevice physical_device,
                           VkDevice device, uint32_t queue_family_index, const char *const *enabled_extensions,
                           uint32_t enabled_extension_count, uint32_t flags, vkv_vulkan **out);
vkv_status vkv_vulkan_close(vkv_vulkan *vulkan);

/* ---- RDMA device ------------------------------------------------------------------- */

/* Opens the RDMA device called name (e.g. "rxe0", "mlx5_0"), or with name NULL the first
 * device with an active port. VKV_ERR_NOT_FOUND names the devices there are. */
vkv_status vkv_device_open(const char *name, vkv_device **out);
/* Copies the device's name, NUL-terminated, into name[0..capacity). */
vkv_status vkv_device_name(vkv_device *device, char *name, size_t capacity);
vkv_status vkv_device_close(vkv_device *device);

/* ---- Memory ------------------------------------------------------------------------ */

/* Allocates size bytes of Vulkan memory on vulkan's device with the strategy asked for
 * (VKV_STRATEGY_AUTO: the best that works) and registers it with device for access
 * (VKV_ACCESS_*). The memory is freed by vkv_memory_close. */
vkv_status vkv_memory_allocate(vkv_device *device, vkv_vulkan *vulkan, uint64_t size,
                               vkv_memory_strategy strategy, uint32_t access, vkv_memory **out);
/* Registers length bytes of the application's memory at address (page-aligned memory is
 * best). The application owns the memory and keeps it valid until vkv_memory_close. */
vkv_status vkv_memory_register_host(vkv_device *device, void *address, size_t length, uint32_t access,
                                    vkv_memory **out);
vkv_status vkv_memory_size(vkv_memory *memory, uint64_t *size);
/* The strategy actually used (VKV_STRATEGY_HOST for registered host memory). */
vkv_status vkv_memory_get_strategy(vkv_memory *memory, vkv_memory_strategy *strategy);
/* The bytes as the host sees them (for STAGED: the staging buffer); valid until close.
 * VKV_ERR_UNSUPPORTED for RDMA_ADDRESS and DMA_BUF memory, which has no mapping. */
vkv_status vkv_memory_host_pointer(vkv_memory *memory, void **pointer);
/* The VkBuffer covering the memory, for the application's GPU work, and for STAGED the
 * staging VkBuffer the NIC uses (VK_NULL_HANDLE otherwise); either pointer may be NULL.
 * The library owns both buffers. VKV_ERR_UNSUPPORTED for registered host memory. */
vkv_status vkv_memory_vk_buffer(vkv_memory *memory, VkBuffer *buffer, VkBuffer *staging_buffer);
/* Writes the descriptor a peer needs to RDMA into / out of this memory. Needs remote access. */
vkv_status vkv_memory_remote_descriptor(vkv_memory *memory, uint8_t descriptor[VKV_REMOTE_DESCRIPTOR_SIZE]);
vkv_status vkv_memory_close(vkv_memory *memory);

/* ---- Connections ------------------------------------------------------------------- */

/* Timeouts are in milliseconds; a negative timeout means no limit. */

/* Listens on address (an IP address of the RDMA device; NULL: every address) and port
 * (0: an ephemeral port, see vkv_listener_port). */
vkv_status vkv_listen(vkv_device *device, const char *address, uint16_t port, vkv_listener **out);
vkv_status vkv_listener_port(vkv_listener *listener, uint16_t *port);
/* Waits for a connection request and accepts it, sending private_data (at most
 * VKV_ACCEPT_PRIVATE_DATA_MAX bytes, may be NULL with length 0) to the peer. */
vkv_status vkv_accept(vkv_listener *listener, const void *private_data, size_t private_data_length,
                      int32_t timeout_ms, vkv_connection **out);
vkv_status vkv_listener_close(vkv_listener *listener);

/* Connects to host:port through device (the route to host must go out of it), sending
 * private_data (at most VKV_CONNECT_PRIVATE_DATA_MAX bytes). Nothing listening there:
 * VKV_ERR_CONNECTION; no answer: VKV_ERR_TIMEOUT. */
vkv_status vkv_connect(vkv_device *device, const char *host, uint16_t port, const void *private_data,
                       size_t private_data_length, int32_t timeout_ms, vkv_connection **out);
/* The private data the peer sent while connecting (possibly padded by the transport).
 * With buffer NULL, *length receives its size; otherwise up to capacity bytes are copied,
 * *length receives how many, and VKV_ERR_OUT_OF_BOUNDS says some did not fit. */
vkv_status vkv_connection_peer_data(vkv_connection *connection, void *buffer, size_t capacity, size_t *length);
/* Disconnects (waiting at most 2 s for the peer's acknowledgement) and releases it.
 * Operations still outstanding are abandoned. */
vkv_status vkv_connection_close(vkv_connection *connection);

/* ---- Transfers --------------------------------------------------------------------- */

/* Each post returns in *op an id for vkv_wait. Ranges are checked first: a local range
 * outside memory, or a remote one outside the descriptor, is VKV_ERR_OUT_OF_BOUNDS and
 * nothing is posted. Memory must be registered on the connection's device. Large writes
 * and reads are split into work requests of the port's message size. */

/* RDMA write of memory[offset, offset+length) to the peer's memory at remote_offset. */
vkv_status vkv_post_write(vkv_connection *connection, vkv_memory *memory, uint64_t offset, uint64_t length,
                          const uint8_t remote[VKV_REMOTE_DESCRIPTOR_SIZE], uint64_t remote_offset, uint64_t *op);
/* The same, then the peer's next posted receive completes with imm (after all the bytes). */
vkv_status vkv_post_write_imm(vkv_connection *connection, vkv_memory *memory, uint64_t offset, uint64_t length,
                              const uint8_t remote[VKV_REMOTE_DESCRIPTOR_SIZE], uint64_t remote_offset,
                              uint32_t imm, uint64_t *op);
/* RDMA read of the peer's memory at remote_offset into memory[offset, offset+length)
 * (memory needs VKV_ACCESS_LOCAL_WRITE). */
vkv_status vkv_post_read(vkv_connection *connection, vkv_memory *memory, uint64_t offset, uint64_t length,
                         const uint8_t remote[VKV_REMOTE_DESCRIPTOR_SIZE], uint64_t remote_offset, uint64_t *op);
/* Sends one message (memory may be NULL when length is 0); the peer must have a receive
 * posted that can hold it. */
vkv_status vkv_post_send(vkv_connection *connection, vkv_memory *memory, uint64_t offset, uint64_t length,
                         uint64_t *op);
/* Posts a receive for the next incoming send or write-with-imm (memory may be NULL when
 * length is 0, enough for write-with-imm). Receives complete in the order posted. */
vkv_status vkv_post_recv(vkv_connection *connection, vkv_memory *memory, uint64_t offset, uint64_t length,
                         uint64_t *op);

/* Waits up to timeout_ms (0: only check, < 0: no limit) for operation op to complete and
 * fills *completion (may be NULL). Each op is waited for once; waiting again, or for an id
 * never returned on this connection, is VKV_ERR_INVALID_ARGUMENT. VKV_ERR_TIMEOUT leaves
 * the op pending (wait again). An operation that fails (e.g. VKV_ERR_REMOTE_ACCESS,
 * VKV_ERR_DISCONNECTED) leaves the connection failed: later calls report the same error;
 * close it. */
vkv_status vkv_wait(vkv_connection *connection, uint64_t op, int32_t timeout_ms, vkv_completion *completion);

/* ---- Groups ------------------------------------------------------------------------ */

/* A group connects the members of an application (the ranks of an MPI job, say) through one
 * engine per member on one vkv_device: one progress thread serves every connection.
 *
 * vkv_group_create makes each member listen on address (an IP address of the device), puts
 * its address and descriptor (application bytes, at most 512: the remote descriptors of the
 * memory it exposes, say) in a record of vkv_group_record_size() bytes, and calls allgather
 * once: it must fill all (size * record_size bytes) with every member's record in rank order
 * and return 0. With MPI:
 *
 *   static int gather(const void *mine, void *all, size_t n, void *comm) {
 *       return MPI_Allgather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, *(MPI_Comm *)comm);
 *   }
 *
 * Members then connect all-to-all (neighbour_count < 0) or to the neighbours named (a pair
 * connects when either names the other), within timeout_ms. Every record is checked first:
 * a record that is not one (garbage, a short or unfilled buffer), a duplicate rank, a member
 * that cannot be reached or never connects gives VKV_ERR_INVALID_ARGUMENT or VKV_ERR_TIMEOUT
 * (or the transport's error), with the member's rank in *failed_member (-1 when no one member
 * is to blame; may be NULL), and nothing left connected. A member that dies later makes the
 * others' transfers to it fail with VKV_ERR_DISCONNECTED (or VKV_ERR_TIMEOUT), never hang:
 * what MPI_Abort needs to bring the job down. */
typedef int (*vkv_allgather_fn)(const void *mine, void *all, size_t record_size, void *user);

size_t vkv_group_record_size(void);
vkv_status vkv_group_create(vkv_device *device, const char *address, int32_t rank, int32_t size,
                            const int32_t *neighbours, int32_t neighbour_count,
                            const void *descriptor, size_t descriptor_length,
                            vkv_allgather_fn allgather, void *user, int32_t timeout_ms,
                            int32_t *failed_member, vkv_group **out);
/* *connected: 1 when this member is connected to member rank. */
vkv_status vkv_group_connected(vkv_group *group, int32_t rank, int32_t *connected);
/* Member rank's descriptor: with buffer NULL, *length receives its size; otherwise up to
 * capacity bytes are copied (VKV_ERR_OUT_OF_BOUNDS when some did not fit). */
vkv_status vkv_group_descriptor(vkv_group *group, int32_t rank, void *buffer, size_t capacity, size_t *length);
/* RDMA write / read between memory[offset, offset+length) and member rank's memory at
 * remote_offset, waiting up to timeout_ms for completion. Memory must be on the group's device. */
vkv_status vkv_group_write(vkv_group *group, int32_t rank, vkv_memory *memory, uint64_t offset, uint64_t length,
                           const uint8_t remote[VKV_REMOTE_DESCRIPTOR_SIZE], uint64_t remote_offset, int32_t timeout_ms);
/* Posts the RDMA write vkv_group_write makes without waiting for its completion (only, up to
 * timeout_ms, for room in the member's window); *op names it for vkv_group_wait. Writes to one
 * member complete in the order posted. At most 4096 may be posted and not yet waited for
 * (VKV_ERR_OUT_OF_BOUNDS beyond). */
vkv_status vkv_group_post_write(vkv_group *group, int32_t rank, vkv_memory *memory, uint64_t offset, uint64_t length,
                                const uint8_t remote[VKV_REMOTE_DESCRIPTOR_SIZE], uint64_t remote_offset, int32_t timeout_ms,
                                uint64_t *op);
/* Waits up to timeout_ms for a write vkv_group_post_write posted. VKV_ERR_TIMEOUT leaves it
 * pending (wait again); any other result ends it. */
vkv_status vkv_group_wait(vkv_group *group, uint64_t op, int32_t timeout_ms);
vkv_status vkv_group_read(vkv_group *group, int32_t rank, vkv_memory *memory, uint64_t offset, uint64_t length,
                          const uint8_t remote[VKV_REMOTE_DESCRIPTOR_SIZE], uint64_t remote_offset, int32_t timeout_ms);
/* Disconnects every member and releases the group. */
vkv_status vkv_group_close(vkv_group *group);

/* ---- Frame streams ----------------------------------------------------------------- */

/* A frame stream carries frames from one sender into a ring of `slots` slots of the receiver's
 * memory (Vulkan memory of any strategy, or host memory). Frame f goes into slot f % slots by
 * RDMA write-with-immediate; the receiver hands frames to its consumer in order, and a released
 * slot returns a credit to the sender (an RDMA write into the sender's credit word, batched). The
 * sender may write frame f only while f < (frames released) + slots, so a slot is never written
 * while the consumer may read it. docs/frame-stream.md describes the protocol.
 *
 * Every byte from the peer is checked: a slot or frame number out of range, a header naming
 * another frame, a credit granting frames never sent end the stream with VKV_ERR_PROTOCOL; the
 * handle stays valid (close it). Every wait is bounded by a timeout. */

#define VKV_FRAME_MAX_SLOTS 4096
#define VKV_FRAME_MAX_SIZE (256u << 20)

/* What the receiver does with frames that arrived while its consumer is behind. */
typedef enum vkv_frame_policy {
    VKV_FRAME_POLICY_BLOCK = 0,       /* every frame is delivered; the sender waits for credit */
    VKV_FRAME_POLICY_DROP_OLDEST = 1, /* at most ready_limit frames wait; older ones are dropped */
    VKV_FRAME_POLICY_LATEST_WINS = 2  /* only the newest arrival waits; every older one is dropped */
} vkv_frame_policy;

/* vkv_frame_receiver_options.flags */
enum {
    /* Check each frame's checksum on the CPU on arrival where the ring is host-visible; a
     * mismatch ends the stream with VKV_ERR_CORRUPTED. Without it the consumer checks (or not). */
    VKV_FRAME_VERIFY_CHECKSUMS = 1
};

/* vkv_frame_sender_connect flags */
enum {
    /* Write the payload, read one byte of it back, then announce the frame (for device memory a
     * NIC writes through a PCIe BAR; docs/frame-stream.md, "Visibility"). */
    VKV_FRAME_READ_AFTER_WRITE = 1,
    /* Send no checksums (the receiver's checks are then skipped). */
    VKV_FRAME_NO_CHECKSUM = 2
};

/* The receiver's settings; zero-initialize, then set. 32 bytes, no padding. */
typedef struct vkv_frame_receiver_options {
    uint64_t slot_size;    /* bytes of a slot: the largest frame (1 .. VKV_FRAME_MAX_SIZE) */
    uint32_t slots;        /* 1 .. VKV_FRAME_MAX_SLOTS */
    uint32_t policy;       /* vkv_frame_policy */
    uint32_t ready_limit;  /* drop-oldest: frames that may wait (0: slots / 2) */
    uint32_t credit_batch; /* frames released before a credit goes back (0: slots / 4); a credit
                              also goes back whenever the consumer finds nothing waiting */
    uint32_t flags;        /* VKV_FRAME_VERIFY_CHECKSUMS */
    int32_t timeout_ms;    /* bound on every wait inside the stream (not 0; < 0: no limit) */
} vkv_frame_receiver_options;

/* A frame the consumer holds until vkv_frame_receiver_release. 56 bytes. */
typedef struct vkv_frame {
    uint64_t number;       /* frame number, from 0, in order */
    uint64_t offset;       /* the slot's offset in the ring (slot * slot_size) */
    uint64_t length;       /* bytes of the frame, at offset */
    uint64_t sent_at_ns;   /* the sender's CLOCK_REALTIME when it sent the frame */
    uint64_t checksum;     /* the sender's checksum (docs/frame-stream.md), if has_checksum */
    uint32_t slot;
    uint32_t has_checksum;
    void *data;            /* the bytes as the host sees them; NULL when the ring has no host
                              mapping (use the ring's VkBuffer at offset) */
} vkv_frame;

/* vkv_frame_receiver_next's *state */
enum {
    VKV_FRAME_NONE = 0,    /* nothing waiting now (timeout_ms 0 only) */
    VKV_FRAME_READY = 1,   /* *frame is filled; the consumer holds it */
    VKV_FRAME_ENDED = 2    /* the sender finished and every frame was taken */
};

/* What the receiver saw. 96 bytes. Latency runs from the sender's timestamp to the consumer's
 * release, in a log-linear histogram (percentiles within 1/64 of the true value, max exact);
 * across hosts it is only as good as their clock sync. */
typedef struct vkv_frame_statistics {
    uint64_t arrived;      /* frames that arrived */
    uint64_t delivered;    /* frames handed to the consumer */
    uint64_t dropped;      /* frames the policy dropped (arrived = delivered + dropped + waiting) */
    uint64_t released;     /* frames the consumer released */
    uint64_t bytes;        /* payload bytes that arrived */
    uint64_t credit_writes;
    uint64_t latency_count;
    uint64_t latency_p50_ns;
    uint64_t latency_p99_ns;
    uint64_t latency_p999_ns;
    uint64_t latency_max_ns;
    double seconds;        /* since the stream was accepted */
} vkv_frame_statistics;

/* What the sender sent. 32 bytes. */
typedef struct vkv_frame_sender_summary {
    uint64_t frames;
    uint64_t bytes;
    uint64_t credit_waits; /* times a send (or wait) found no credit and waited for the receiver */
    double seconds;        /* since connect */
} vkv_frame_sender_summary;

/* Takes one frame sender from listener within wait_ms (< 0: no limit) and makes its ring:
 * options->slots slots of options->slot_size bytes.
 *   vulkan NULL:  the ring is host memory; strategy must be VKV_STRATEGY_HOST.
 *   vulkan given: the ring is Vulkan memory on its device, allocated once the connection's
 *                 protection domain exists, with strategy (VKV_STRATEGY_AUTO: the best the
 *                 device and the NIC take, as vkv_memory_allocate).
 *   timeline:     VK_NULL_HANDLE, or the application's timeline semaphore on vulkan's device: on
 *                 the arrival of frame f the library signals it to f + 1 from the host, so GPU
 *                 work waiting on that value starts without polling. The application keeps it
 *                 alive until vkv_frame_receiver_close returns.
 * The options, strategy and timeline are checked first (VKV_ERR_INVALID_ARGUMENT), then the
 * handles. A sender whose frames do not fit a slot, or whose queues do not take the ring's
 * slots, is refused with the reason (it sees VKV_ERR_CONNECTION) and the wait goes on; no sender
 * within wait_ms: VKV_ERR_TIMEOUT. Connections use the RDMA device the request came in on.
 * Calls on one receiver are serialized (it has one consumer). */
vkv_status vkv_frame_receiver_accept(vkv_listener *listener, const vkv_frame_receiver_options *options,
                                     vkv_vulkan *vulkan, vkv_memory_strategy strategy, VkSemaphore timeline,
                                     int32_t wait_ms, vkv_frame_receiver **out);
/* The ring: the strategy used (VKV_STRATEGY_HOST for host memory), its host mapping (NULL for
 * RDMA_ADDRESS and DMA_BUF), its VkBuffer and for STAGED the staging VkBuffer the NIC writes
 * (VK_NULL_HANDLE otherwise). Slot s is at s * slot_size. Any pointer may be NULL, not all. */
vkv_status vkv_frame_receiver_ring(vkv_frame_receiver *receiver, vkv_memory_strategy *strategy, void **host_pointer,
                                   VkBuffer *buffer, VkBuffer *staging_buffer);
/* The next frame, waiting up to timeout_ms (0: only look, < 0: no limit). *state says whether a
 * frame was filled in (VKV_FRAME_READY), none is there yet (VKV_FRAME_NONE, timeout 0), or the
 * stream ended (VKV_FRAME_ENDED). VKV_ERR_TIMEOUT: none came in time (call again). The consumer
 * holds each frame it gets until it releases it; under every policy a held frame's slot is
 * never written. */
vkv_status vkv_frame_receiver_next(vkv_frame_receiver *receiver, int32_t timeout_ms, vkv_frame *frame, int32_t *state);
/* Gives frame number's slot back (its latency is recorded now). A frame the consumer does not
 * hold: VKV_ERR_INVALID_ARGUMENT, nothing changes. */
vkv_status vkv_frame_receiver_release(vkv_frame_receiver *receiver, uint64_t number);
vkv_status vkv_frame_receiver_statistics(vkv_frame_receiver *receiver, vkv_frame_statistics *statistics);
/* The latency at or below which a fraction (0 .. 1) of the released frames lie, in ns. */
vkv_status vkv_frame_receiver_latency_percentile(vkv_frame_receiver *receiver, double fraction, uint64_t *nanoseconds);
/* Disconnects (bounded) and releases the ring. */
vkv_status vkv_frame_receiver_close(vkv_frame_receiver *receiver);

/* Connects to the frame receiver at host:port with frames of at most frame_size bytes; max_slots
 * is the most slots this sender takes (its send queue is sized for them). flags:
 * VKV_FRAME_READ_AFTER_WRITE, VKV_FRAME_NO_CHECKSUM. timeout_ms (not 0; < 0: no limit) bounds
 * connecting and every later wait of send and finish. Arguments are checked before anything
 * is sent. A receiver that refuses (frames larger than its slots, more slots than max_slots):
 * VKV_ERR_CONNECTION with its reason. The route to host picks the RDMA device. */
vkv_status vkv_frame_sender_connect(const char *host, uint16_t port, uint64_t frame_size, uint32_t max_slots,
                                    uint32_t flags, int32_t timeout_ms, vkv_frame_sender **out);
/* The receiver's ring: its slots and slot size. Either pointer may be NULL, not both. */
vkv_status vkv_frame_sender_geometry(vkv_frame_sender *sender, uint32_t *slots, uint64_t *slot_size);
/* Waits up to timeout_ms (0: only look, < 0: no limit) until the next send can post without
 * waiting (the receiver has given credit for it). VKV_ERR_TIMEOUT: no credit in time (a stalled
 * receiver); the stream goes on. VKV_ERR_DISCONNECTED: the receiver or the link is gone. */
vkv_status vkv_frame_sender_wait_credit(vkv_frame_sender *sender, int32_t timeout_ms);
/* Sends length bytes (at most frame_size; data may be NULL when length is 0) as the next frame
 * and returns its number in *number (may be NULL). Waits for credit, up to the connect timeout.
 * A frame larger than frame_size: VKV_ERR_OUT_OF_BOUNDS, nothing sent, the stream goes on. The
 * bytes are copied before it returns. */
vkv_status vkv_frame_sender_send(vkv_frame_sender *sender, const void *data, uint64_t length, uint64_t *number);
/* Ends the stream and waits (up to the connect timeout) until the receiver released every
 * frame; fills *summary (may be NULL). The connection is closed after; close the handle. */
vkv_status vkv_frame_sender_finish(vkv_frame_sender *sender, vkv_frame_sender_summary *summary);
/* Disconnects (bounded); frames not yet released are abandoned. */
vkv_status vkv_frame_sender_close(vkv_frame_sender *sender);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* VKVERBS_H */
