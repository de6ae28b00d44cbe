# VkVerbs: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
FABRIC := scripts/fabric
TEST_BINARY := .build/debug/VkVerbsPackageTests.xctest
RDMA_TESTS := .build/rdma-tests
# The fabric suite's tests in test-loopback-all (a file of XCTest filters); empty: every test.
SUITE_TESTS ?=

.PHONY: all deps build demo test test-fabric-script test-host test-container test-fabric test-loopback-all test-two-hosts test-stream-fault test-link-flap test-frames-two-hosts test-interop test-odp test-odp-data test-loopback test-frames test-frames-100k soak soak-short lint bench-compare bench-count bench-events bench-hosts bench-frames bench-transfer bench-transfer-compare bench-peers clean

# Further pieces (C API, docker recipe checks, ...) bring their own rules.
include $(wildcard mk/*.mk)

all: build

# Debian packages (rdma-core, QEMU, Vulkan loader, lavapipe, ...): installed only when missing.
# DEPS_ARGS=--build: only what compiling needs (docker/Dockerfile's build stage).
deps:
	scripts/install-deps $(DEPS_ARGS)

build: deps
	$(SWIFT) build --build-tests

# The main job: the project's fabric makes two hosts with SoftRoCE (two network namespaces with
# their own rxe devices, in one emulated guest on the newest stable kernel), and `vkverbs pingpong`
# measures write latency between them over the sizes perftest's -a sweeps, printing the table.
demo: build
	$(FABRIC) setup
	$(FABRIC) hosts -- scripts/demo-hosts --op write --sweep -i 20 --warmup 2

# Everything: lint, host tests (RDMA ones skip there), 60 s of fuzzing every peer input, then
# the fabric steps in two lanes side by side (scripts/test-lanes; each line of output prefixed
# with its lane). Lane "hosts": the two-hosts runs (with a mid-stream network cut), the C API
# (installed, built with gcc/g++ through pkg-config, run on both topologies), Examples/mpi under
# Open MPI across 4 hosts (test-mpi). Lane "loopback": in one boot of the loopback fabric
# (test-loopback-all), the CLI's loopback, a short soak and the suite's tests the host skipped for
# want of RDMA inside the rxe fabric, where a missing RDMA device is a failure, not a skip; then
# docker/Dockerfile built and run in containers (test-container).
# (make soak, test-asan and test-tsan take longer and run on their own.) docs/test-time.md says
# where the time goes.
test: build
	$(MAKE) lint
	$(MAKE) test-host
	$(MAKE) fuzz-build
	@# The fabric's setup (mostly the kernels' download) runs beside the fuzzers' fixed time.
	$(FABRIC) setup & setup=$$!; rc=0; $(MAKE) fuzz || rc=$$?; \
	  wait $$setup || { echo "make test: scripts/fabric setup failed" >&2; rc=1; }; exit $$rc
	@# Every build the fabric steps use is made, and the container runtime installed, before they
	@# split into two lanes side by side (the guests run .build's binaries, which a build under a
	@# running guest would change; apt takes a lock).
	$(MAKE) release capi vulkan-layer
	scripts/container-setup
	scripts/test-lanes \
	  loopback '$(MAKE) --no-print-directory test-loopback-all SUITE_TESTS=$(RDMA_TESTS) && \
	    $(MAKE) --no-print-directory test-container' \
	  hosts '$(MAKE) --no-print-directory test-fabric-script && \
	    $(MAKE) --no-print-directory test-two-hosts && $(MAKE) --no-print-directory test-capi && \
	    $(MAKE) --no-print-directory test-mpi'

# scripts/fabric's bad input (status 2, no boot) and a guest that dies while booting (booted once
# more, then status 125, nothing left running): scripts/fabric-check. It needs no `setup` of its
# own: a fabric run sets up a missing kernel itself.
test-fabric-script:
	scripts/fabric-check

# test-loopback, soak-short and test-fabric, each exactly as its own target runs it, one after the
# other in one boot of the loopback fabric (scripts/loopback-checks: a line per check with its
# status and time).
test-loopback-all: vulkan-layer release
	VKVERBS_LOOPBACK_LAYER_PATH=$(abspath .build/vulkan-layer) VKVERBS_TEST_BINARY=$(TEST_BINARY) \
	  VKVERBS_SUITE_TESTS=$(SUITE_TESTS) $(FABRIC) run --timeout 3600 -- scripts/loopback-checks

lint:
	shellcheck scripts/install-deps scripts/rxe-setup scripts/fabric scripts/two-hosts-exchange \
	  scripts/pingpong-two-hosts scripts/gpu-exchange-two-hosts scripts/stream-two-hosts \
	  scripts/pingpong-flap-two-hosts scripts/frames-two-hosts scripts/exchange-pingpong-two-hosts scripts/hosts-checks scripts/loopback-checks scripts/demo-hosts scripts/cpu-time scripts/rdma-test-list scripts/soak scripts/capi-test scripts/capi-fabric Benchmarks/compare-perftest \
	  Benchmarks/perftest-vs-vkverbs-guest Benchmarks/hosts-compare Benchmarks/hosts-compare-guest Benchmarks/transfer-bench Benchmarks/transfer-compare .ci/run scripts/check-docker \
	  Benchmarks/iteration-cost Benchmarks/iteration-cost-guest Benchmarks/summarize-rounds Benchmarks/events-compare-guest \
	  Benchmarks/peers-compare Benchmarks/peers-compare-guest \
	  scripts/container-setup scripts/test-container scripts/frames-fabric Benchmarks/frames-compare Benchmarks/frames-compare-guest \
	  scripts/mpi-test scripts/mpi-fabric scripts/mpi-rsh-agent scripts/mpi-rank \
	  Benchmarks/results/nvidia-h200/gpuspeed-run5/run.sh Benchmarks/results/nvidia-h200/gpuspeed-run5/run-final.sh \
	  scripts/test-lanes scripts/fabric-check
	@echo "lint: shellcheck clean"
	scripts/test-lanes --check
	scripts/check-docker

# The host tier; its log names the tests skipped for want of an RDMA device, and
# scripts/rdma-test-list writes them to $(RDMA_TESTS), less $(ODP_ONLY_TESTS): test-loopback-all
# runs only those in the fabric (the rest passed here with the same build). Alone,
# test-loopback-all runs them all.
test-host:
	set -o pipefail; $(SWIFT) test --skip-build 2>&1 | tee .build/test-host.log
	scripts/rdma-test-list .build/test-host.log $(RDMA_TESTS) $(ODP_ONLY_TESTS)

# In one boot of the hosts topology (scripts/hosts-checks): host memory (exchange, ping-pong)
# between two hosts, then the link faults (test-stream-fault, test-link-flap), then the frame
# stream's policies and a killed receiver (test-frames-two-hosts has every step); then Vulkan memory
# GPU to GPU through the transfer engine with every strategy, 1 B to 4 MiB + 1 (five staged chunks
# through a ring of three, the last of one byte; the CLI's own default goes to 64 MiB + 1, which
# the guests' socket link takes about two minutes to carry), the NV path through the emulation
# layer included (two guests), and the cross-kernel run. The hosts boot also runs test-odp's tests
# on host 1 (the same kernel), sparing them a boot.
test-two-hosts: vulkan-layer release
	VKVERBS_RELEASE_BIN=.build/release/vkverbs VKVERBS_TEST_BINARY=$(TEST_BINARY) VKVERBS_ODP_TESTS=$(ODP_TESTS) \
	  $(FABRIC) hosts -- scripts/hosts-checks
	$(FABRIC) two-hosts -- env VK_ADD_LAYER_PATH=$(abspath .build/vulkan-layer) scripts/gpu-exchange-two-hosts --layer \
	  --size 1 --size 4095 --size 1048576 --size 4194305
	$(MAKE) test-interop

# A numbered, checksummed stream between two hosts with the client's link taken down for 15 s
# mid-stream, for real: the sender must see the fault, reconnect and resume, and the receiver
# accept exactly what was sent (the release CLI: the debug build's checksums are too slow under TCG).
# test-two-hosts runs it in scripts/hosts-checks, in the boot it shares with two other checks.
test-stream-fault: release
	$(FABRIC) hosts -- env VKVERBS_BIN=.build/release/vkverbs scripts/stream-two-hosts

# A ping-pong across a link flap fails fast with a typed error; a new run right after passes
# (test-two-hosts runs it in scripts/hosts-checks).
test-link-flap: release
	$(FABRIC) hosts -- env VKVERBS_BIN=.build/release/vkverbs scripts/pingpong-flap-two-hosts

# `vkverbs frames` between two hosts: block and the drop policies with exact drop counts, a stalled
# and a killed receiver and a link flap (the sender's typed error within its timeout), and a new
# stream after the flap (test-two-hosts runs the policies and the killed receiver in
# scripts/hosts-checks).
test-frames-two-hosts: release
	$(FABRIC) hosts -- env VKVERBS_BIN=.build/release/vkverbs scripts/frames-two-hosts

# Two guests on different kernels (server: Debian 12's 6.1, client: the newer one): exchange and
# ping-pong between the two rxe implementations.
test-interop: release
	$(FABRIC) two-hosts --kernel bookworm --client-kernel backports -- env VKVERBS_BIN=.build/release/vkverbs scripts/exchange-pingpong-two-hosts

# On-demand paging on the newer kernel: what the device reports matches what registration does,
# a 64 MiB host buffer and a 64 MiB host-visible Vulkan allocation (through VulkanRegistration's
# `paging: .onDemand`) register without pinning (test-fabric checks the refusal on Debian 12's
# 6.1). The RDMA data path into such a region is test-odp-data, not part of `make test`: rxe on
# 7.3.4 completes writes and reads into on-demand memory but puts the bytes at the wrong place in
# the page (README). test-odp-data runs scripts/odp-repro.c first (libibverbs alone, no VkVerbs
# code: exit 3 means exactly that kernel defect), then the XCTest that says where the bytes went.
ODP_TESTS := VerbsTests.OnDemandPagingTests/testCapabilitiesMatchWhatRegistrationDoes,VerbsTests.OnDemandPagingTests/testLargeRegionRegisteredWithoutPinning,VulkanMemoryTests.OnDemandRegistrationTests
ODP_REPRO := .build/odp/odp-repro
# The suite's tests that need on-demand paging and so skip on Debian 12's 6.1, the loopback fabric's
# kernel: test-host leaves them out of $(RDMA_TESTS). The first runs on 7.3 in test-two-hosts (the
# hosts boot's odp step), the second is test-odp-data's (a 7.3.4 defect, not in make test).
ODP_ONLY_TESTS := VerbsTests.OnDemandPagingTests/testLargeRegionRegisteredWithoutPinning,VerbsTests.OnDemandPagingTests/testRDMAWriteAndReadIntoOnDemandRegion
test-odp:
	VKVERBS_REQUIRE_RDMA=1 VKVERBS_EXPECT_ODP=1 $(FABRIC) run --kernel backports -- $(TEST_BINARY) $(ODP_TESTS)

$(ODP_REPRO): scripts/odp-repro.c
	mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -o $@ $< -libverbs

test-odp-data: $(ODP_REPRO)
	VKVERBS_REQUIRE_RDMA=1 VKVERBS_EXPECT_ODP=1 $(FABRIC) run --kernel backports -- bash -c \
	  'rc=0; $(ODP_REPRO) || rc=$$?; $(TEST_BINARY) VerbsTests.OnDemandPagingTests/testRDMAWriteAndReadIntoOnDemandRegion || rc=1; exit $$rc'

# The CLI's loopback: Vulkan memory both ways over rxe with every strategy, the NV path through
# the emulation layer included; the fabric names the device and its address (make test runs it in
# test-loopback-all).
test-loopback: vulkan-layer
	$(FABRIC) run -- env VK_ADD_LAYER_PATH=$(abspath .build/vulkan-layer) bash -c \
	  '.build/debug/vkverbs loopback --device "$$VKVERBS_RDMA_DEVICE" --address "$$VKVERBS_FABRIC_ADDR" \
	   --layer --size 1 --size 4095 --size 262144'

# docker/Dockerfile built with podman (installed and configured by scripts/container-setup) or a
# Docker engine, then in containers: the self-test over rxe, the two-host ping-pong, and the
# compose file's fabric services (scripts/test-container says how; no runtime is a failure).
test-container:
	scripts/container-setup
	$(FABRIC) setup
	scripts/test-container

# `vkverbs frames` over rxe loopback in one guest: block (nothing dropped), then latest-wins with a
# slow consumer (delivered + dropped = sent), then block into a Vulkan ring (lavapipe, the automatic
# choice) with every frame checked on the GPU, then the same with frame 17 sent with a false checksum
# (the receiver must count it and exit 1). Not part of `make test` (four fabric boots under TCG).
# 100,000 frames of 64 B in block mode over rxe loopback (every one delivered once, in order, its
# checksum checked), then 100,000 under latest-wins and 5,000 of 4 KiB under drop-oldest with a
# 100 us consumer (dropped = the frame numbers the consumer never saw, exactly), in one boot with
# the release build. Not part of `make test`: the block run alone took 350 s in the TCG guest on a
# loaded machine (README, "Frame streaming").
test-frames-100k: release
	$(FABRIC) run --timeout 3000 -- sh -c 'set -e; b=.build/release/vkverbs; \
	  env VKVERBS_BIN=$$b VKVERBS_FRAMES=100000 VKVERBS_FRAME_SIZE=64 scripts/frames-fabric; \
	  env VKVERBS_BIN=$$b VKVERBS_FRAMES=100000 VKVERBS_FRAME_SIZE=64 VKVERBS_FRAME_POLICY=latest-wins scripts/frames-fabric; \
	  env VKVERBS_BIN=$$b VKVERBS_FRAMES=5000 VKVERBS_FRAME_SIZE=4K VKVERBS_FRAME_POLICY=drop-oldest VKVERBS_FRAME_CONSUME=100 scripts/frames-fabric'

test-frames:
	$(FABRIC) run -- env VKVERBS_FRAMES=500 scripts/frames-fabric
	$(FABRIC) run -- env VKVERBS_FRAMES=500 VKVERBS_FRAME_POLICY=latest-wins VKVERBS_FRAME_CONSUME=2000 scripts/frames-fabric
	$(FABRIC) run -- env VKVERBS_FRAMES=50 VKVERBS_FRAME_MEMORY=auto scripts/frames-fabric
	$(FABRIC) run -- env VKVERBS_FRAMES=40 VKVERBS_FRAME_MEMORY=auto VKVERBS_FRAME_FALSE_CHECKSUM=17 scripts/frames-fabric

# The whole suite on Debian 12's kernel, where on-demand paging must be refused (make test runs it
# in test-loopback-all).
test-fabric:
	VKVERBS_REQUIRE_RDMA=1 VKVERBS_EXPECT_ODP=0 $(FABRIC) run -- $(TEST_BINARY)

# 1,000,000 ping-pongs and 10 GiB streamed in the loopback fabric: the server's and the stream's
# resident memory and the device's RDMA resources must stay flat (scripts/soak says how it checks).
soak: release
	$(FABRIC) run --timeout 3000 -- scripts/soak

# The same checks at a tenth of the size (100,000 ping-pongs, 1 GiB), for `make test` (in
# test-loopback-all).
soak-short: release
	$(FABRIC) run --timeout 1800 -- env VKVERBS_SOAK_PINGPONGS=100000 VKVERBS_SOAK_BYTES=1G scripts/soak

# perftest against vkverbs pingpong on the same rxe link: first the deterministic counts
# (bench-count), then the wall-clock rounds with 95% confidence intervals, ratios and a plot in
# Benchmarks/results/.
bench-compare: deps
	Benchmarks/iteration-cost
	Benchmarks/compare-perftest

# User-space instructions and system calls per ping-pong iteration (valgrind in the loopback
# fabric), vkverbs against perftest, write, send and send with -e, 2 B .. 4 KiB.
bench-count: deps
	Benchmarks/iteration-cost

# Event mode: `ib_send_lat -e` against `vkverbs pingpong -e` (send; write-imm too), paired rounds
# in one loopback fabric run, medians with 95% confidence intervals in Benchmarks/results/events.csv.
bench-events: release
	$(FABRIC) setup
	$(FABRIC) run --timeout 3000 --out Benchmarks/results -- Benchmarks/events-compare-guest

# perftest against vkverbs pingpong between two hosts of the hosts topology, paired rounds.
bench-hosts: deps
	Benchmarks/hosts-compare

# The transfer engine per memory strategy, and the staged pipeline's overlap efficiency.
bench-transfer: deps
	Benchmarks/transfer-bench

# `vkverbs frames` (1 MiB frames) against ib_write_bw -s 1048576 between two hosts of the hosts
# topology, paired rounds; Benchmarks/results/frames-compare.csv, ratios printed.
bench-frames: deps
	Benchmarks/frames-compare

# This tree's engine against another build's, paired in one fabric run: BASELINE=path/to/vkverbs.
bench-transfer-compare: deps
	Benchmarks/transfer-compare

# One PeerEngine writing to 8 peers (on hosts 2 and 3) against the same engine writing to one,
# paired rounds on the fabric's hosts topology; Benchmarks/results/peers-rounds.csv and the ratio.
bench-peers: deps
	Benchmarks/peers-compare

clean:
	rm -rf .build .build-* .fabric
