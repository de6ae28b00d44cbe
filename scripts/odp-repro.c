/*
 * Where do RDMA writes into an on-demand-paging (ODP) region land?
 *
 * A minimal check written against libibverbs alone (no VkVerbs code), so that a wrong answer
 * points at the device or its driver, not at our library. One process, one device, two RC
 * queue pairs connected to each other through the device's own RoCE v2 GID (loopback).
 *
 * Memory: `src` (pinned) holds a pattern; `odp` (IBV_ACCESS_ON_DEMAND) and `pinned` (the
 * control) are filled with 0xEE from user space first, so every page is present and written.
 * Cases, each done into both the ODP and the pinned region:
 *   1. a 64-byte write to page offset 256 (one packet, inside one page);
 *   2. a 512-byte write to page offset 3840 (one packet crossing into the next page);
 *   3. a 64-byte RDMA read from page offset 256 of the region (its pages hold a pattern that
 *      does not repeat within a page).
 * For each case it prints where the bytes landed. Exit status: 0 every case right in both
 * regions; 3 the pinned control right and the ODP region wrong in exactly the way rxe's ODP
 * copy on Linux 6.15..7.3 gets it wrong (the in-page offset is ignored: bytes go to the start
 * of the page, and a copy crossing a page boundary starts the next page from the first source
 * byte again); 1 anything else wrong; 2 a setup step failed (message on stderr); 77 the device
 * reports no ODP for RC write and read.
 *
 * Build: cc -O2 -Wall -o odp-repro scripts/odp-repro.c -libverbs
 * Run:   odp-repro [DEVICE]   (default: $VKVERBS_RDMA_DEVICE, else the first device)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define PAGES 8
#define FILL 0xEE

static void die(const char *what, int err)
{
	fprintf(stderr, "odp-repro: %s failed: %s\n", what, strerror(err));
	exit(2);
}

struct ctx {
	struct ibv_context *dev;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *a, *b;
	union ibv_gid gid;
	int gid_index;
};

/* The first RoCE v2 GID that carries an IPv4 address (::ffff:a.b.c.d). */
static int find_gid(struct ctx *c)
{
	struct ibv_gid_entry entries[64];
	ssize_t n = ibv_query_gid_table(c->dev, entries, 64, 0);
	if (n < 0)
		die("ibv_query_gid_table", (int)-n);
	for (ssize_t i = 0; i < n; i++) {
		const uint8_t *raw = entries[i].gid.raw;
		static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (entries[i].port_num == 1 && entries[i].gid_type == IBV_GID_TYPE_ROCE_V2 &&
		    memcmp(raw, v4mapped, 12) == 0) {
			c->gid = entries[i].gid;
			c->gid_index = (int)entries[i].gid_index;
			return 0;
		}
	}
	fprintf(stderr, "odp-repro: no RoCE v2 IPv4 GID on port 1\n");
	exit(2);
}

static struct ibv_qp *make_qp(struct ctx *c)
{
	struct ibv_qp_init_attr init = {
		.send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC,
		.cap = {.max_send_wr = 8, .max_recv_wr = 8, .max_send_sge = 1, .max_recv_sge = 1},
	};
	struct ibv_qp *qp = ibv_create_qp(c->pd, &init);
	if (!qp)
		die("ibv_create_qp", errno);
	struct ibv_qp_attr attr = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = 1,
				   .qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ};
	int rc = ibv_modify_qp(qp, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
	if (rc)
		die("ibv_modify_qp INIT", rc);
	return qp;
}

static void connect_qp(struct ctx *c, struct ibv_qp *qp, uint32_t remote_qpn)
{
	struct ibv_qp_attr attr = {
		.qp_state = IBV_QPS_RTR, .path_mtu = IBV_MTU_1024, .dest_qp_num = remote_qpn,
		.rq_psn = 0, .max_dest_rd_atomic = 1, .min_rnr_timer = 12,
		.ah_attr = {.is_global = 1, .port_num = 1,
			    .grh = {.dgid = c->gid, .sgid_index = (uint8_t)c->gid_index, .hop_limit = 64}},
	};
	int rc = ibv_modify_qp(qp, &attr, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
				  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
	if (rc)
		die("ibv_modify_qp RTR", rc);
	attr = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .timeout = 14, .retry_cnt = 7,
				    .rnr_retry = 7, .sq_psn = 0, .max_rd_atomic = 1};
	rc = ibv_modify_qp(qp, &attr, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			   IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
	if (rc)
		die("ibv_modify_qp RTS", rc);
}

/* Posts one write or read from A and waits (30 s at most) for its completion. */
static void rdma(struct ctx *c, enum ibv_wr_opcode op, struct ibv_mr *local, size_t local_off,
		 struct ibv_mr *remote, size_t remote_off, uint32_t len)
{
	struct ibv_sge sge = {.addr = (uintptr_t)local->addr + local_off, .length = len, .lkey = local->lkey};
	struct ibv_send_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = op,
				 .send_flags = IBV_SEND_SIGNALED,
				 .wr.rdma = {.remote_addr = (uintptr_t)remote->addr + remote_off, .rkey = remote->rkey}};
	struct ibv_send_wr *bad;
	int rc = ibv_post_send(c->a, &wr, &bad);
	if (rc)
		die("ibv_post_send", rc);
	struct ibv_wc wc;
	for (int spins = 0; spins < 30000; spins++) {
		int n = ibv_poll_cq(c->cq, 1, &wc);
		if (n < 0)
			die("ibv_poll_cq", EIO);
		if (n == 1) {
			if (wc.status != IBV_WC_SUCCESS) {
				fprintf(stderr, "odp-repro: completion status %s\n", ibv_wc_status_str(wc.status));
				exit(2);
			}
			return;
		}
		usleep(1000);
	}
	fprintf(stderr, "odp-repro: no completion within 30 s\n");
	exit(2);
}

static uint8_t pattern(size_t i) { return (uint8_t)(i * 7 + 3 + (i >> 8)); }

/* Where (as an offset into buf) `want` (len bytes) occurs, or -1. */
static long find(const uint8_t *buf, size_t size, const uint8_t *want, size_t len)
{
	for (size_t i = 0; i + len <= size; i++)
		if (memcmp(buf + i, want, len) == 0)
			return (long)i;
	return -1;
}

static int equal(const uint8_t *a, const uint8_t *b, size_t len) { return memcmp(a, b, len) == 0; }

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : getenv("VKVERBS_RDMA_DEVICE");
	int ndev;
	struct ibv_device **list = ibv_get_device_list(&ndev);
	if (!list || ndev == 0) {
		fprintf(stderr, "odp-repro: no RDMA device\n");
		return 2;
	}
	struct ibv_device *pick = NULL;
	for (int i = 0; i < ndev && !pick; i++)
		if (!name || strcmp(ibv_get_device_name(list[i]), name) == 0)
			pick = list[i];
	if (!pick) {
		fprintf(stderr, "odp-repro: no device named %s\n", name);
		return 2;
	}
	struct ctx c = {0};
	c.dev = ibv_open_device(pick);
	if (!c.dev)
		die("ibv_open_device", errno);

	struct ibv_device_attr_ex dattr;
	int rc = ibv_query_device_ex(c.dev, NULL, &dattr);
	if (rc)
		die("ibv_query_device_ex", rc);
	uint32_t need = IBV_ODP_SUPPORT_WRITE | IBV_ODP_SUPPORT_READ;
	if (!(dattr.odp_caps.general_caps & IBV_ODP_SUPPORT) ||
	    (dattr.odp_caps.per_transport_caps.rc_odp_caps & need) != need) {
		printf("odp-repro: %s reports no ODP for RC write and read (general 0x%llx, rc 0x%x)\n",
		       ibv_get_device_name(pick), (unsigned long long)dattr.odp_caps.general_caps,
		       dattr.odp_caps.per_transport_caps.rc_odp_caps);
		return 77;
	}
	find_gid(&c);
	c.pd = ibv_alloc_pd(c.dev);
	if (!c.pd)
		die("ibv_alloc_pd", errno);
	c.cq = ibv_create_cq(c.dev, 16, NULL, NULL, 0);
	if (!c.cq)
		die("ibv_create_cq", errno);
	c.a = make_qp(&c);
	c.b = make_qp(&c);
	connect_qp(&c, c.a, c.b->qp_num);
	connect_qp(&c, c.b, c.a->qp_num);

	size_t size = PAGES * PAGE;
	uint8_t *src, *odp, *pinned;
	if (posix_memalign((void **)&src, PAGE, size) || posix_memalign((void **)&odp, PAGE, size) ||
	    posix_memalign((void **)&pinned, PAGE, size))
		die("posix_memalign", ENOMEM);
	for (size_t i = 0; i < size; i++)
		src[i] = pattern(i);
	int remote = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	struct ibv_mr *src_mr = ibv_reg_mr(c.pd, src, size, remote);
	struct ibv_mr *pinned_mr = ibv_reg_mr(c.pd, pinned, size, remote);
	struct ibv_mr *odp_mr = ibv_reg_mr(c.pd, odp, size, remote | IBV_ACCESS_ON_DEMAND);
	if (!src_mr || !pinned_mr)
		die("ibv_reg_mr", errno);
	if (!odp_mr)
		die("ibv_reg_mr with IBV_ACCESS_ON_DEMAND", errno);
	printf("odp-repro: %s, gid index %d, path MTU 1024, kernel page %d, ODP region at %p (iova %#llx, lkey %#x)\n",
	       ibv_get_device_name(pick), c.gid_index, PAGE, (void *)odp,
	       (unsigned long long)(uintptr_t)odp_mr->addr, odp_mr->lkey);

	struct { const char *name; struct ibv_mr *mr; uint8_t *buf; } regions[2] = {
		{"pinned", pinned_mr, pinned}, {"odp", odp_mr, odp}};
	int right[2] = {1, 1}, as_known_defect = 1;

	for (int r = 0; r < 2; r++) {
		uint8_t *buf = regions[r].buf;
		struct ibv_mr *mr = regions[r].mr;
		const char *rn = regions[r].name;
		memset(buf, FILL, size);

		/* 1. 64 bytes to page 1, offset 256. */
		rdma(&c, IBV_WR_RDMA_WRITE, src_mr, 0, mr, PAGE + 256, 64);
		uint8_t *page = buf + PAGE;
		long at = find(buf, size, src, 64);
		int ok = equal(page + 256, src, 64);
		printf("%-6s write 64 B to page offset 256: %s (found at region offset %ld, expected %d)\n",
		       rn, ok ? "right" : "WRONG", at, PAGE + 256);
		right[r] &= ok;
		if (r == 1)
			as_known_defect &= !ok && at == PAGE && page[256] == FILL;

		/* 2. 512 bytes to page 3, offset 3840: 256 bytes on page 3, 256 on page 4. */
		memset(buf, FILL, size);
		rdma(&c, IBV_WR_RDMA_WRITE, src_mr, 0, mr, 3 * PAGE + 3840, 512);
		uint8_t *p3 = buf + 3 * PAGE, *p4 = buf + 4 * PAGE;
		ok = equal(p3 + 3840, src, 512);
		printf("%-6s write 512 B to page offset 3840 (crossing a page): %s"
		       " (page 3 offset 0: %s; page 4 offset 0: %s)\n",
		       rn, ok ? "right" : "WRONG",
		       equal(p3, src, 256) ? "src[0..255]" : p3[0] == FILL ? "untouched" : "other bytes",
		       equal(p4, src + 256, 256) ? "src[256..511]" : equal(p4, src, 256) ? "src[0..255] again" :
		       p4[0] == FILL ? "untouched" : "other bytes");
		right[r] &= ok;
		if (r == 1)
			as_known_defect &= !ok && equal(p3, src, 256) && equal(p4, src, 256) && p3[3840] == FILL;

		/* 3. Read 64 bytes from page 2, offset 256 of the region into src's scratch page. */
		for (size_t i = 0; i < size; i++)
			buf[i] = (uint8_t)(pattern(i) ^ 0x5a);
		uint8_t *scratch = src + 7 * PAGE;
		memset(scratch, 0, 64);
		rdma(&c, IBV_WR_RDMA_READ, src_mr, 7 * PAGE, mr, 2 * PAGE + 256, 64);
		ok = equal(scratch, buf + 2 * PAGE + 256, 64);
		int from_start = equal(scratch, buf + 2 * PAGE, 64);
		printf("%-6s read 64 B from page offset 256: %s%s\n", rn, ok ? "right" : "WRONG",
		       ok ? "" : from_start ? " (got the bytes at page offset 0)" : " (got other bytes)");
		right[r] &= ok;
		if (r == 1)
			as_known_defect &= !ok && from_start;
		for (size_t i = 0; i < size; i++)
			src[i] = pattern(i);
	}

	ibv_dereg_mr(odp_mr);
	ibv_dereg_mr(pinned_mr);
	ibv_dereg_mr(src_mr);
	ibv_destroy_qp(c.a);
	ibv_destroy_qp(c.b);
	ibv_destroy_cq(c.cq);
	ibv_dealloc_pd(c.pd);
	ibv_close_device(c.dev);
	ibv_free_device_list(list);

	if (right[0] && right[1]) {
		printf("odp-repro: every case right in both regions\n");
		return 0;
	}
	if (right[0] && as_known_defect) {
		printf("odp-repro: pinned right, ODP wrong exactly as rxe's ODP copy (Linux 6.15..7.3) gets it:"
		       " the in-page offset is ignored and a copy crossing a page restarts from the first source byte\n");
		return 3;
	}
	printf("odp-repro: wrong (pinned %s, odp %s), not the known rxe pattern\n",
	       right[0] ? "right" : "wrong", right[1] ? "right" : "wrong");
	return 1;
}
