# mk/sanitizers.mk: the XCTest suite under AddressSanitizer (+ LeakSanitizer) and ThreadSanitizer
# run inside the rxe fabric exactly as `make test-fabric` runs the plain build.
#
#   make test-asan     swift build --build-tests --sanitize=address into .build-asan, then the whole
#                      suite in `scripts/fabric run` with VKVERBS_REQUIRE_RDMA=1
#   make test-tsan     the same with --sanitize=thread into .build-tsan: first the whole host tier on
#                      the host (test-tsan-host: the engine and stream logic on the in-memory twin,
#                      calls from several threads at once among them), then TSAN_TESTS in the fabric
#
# Either fails when the suite fails or when any process (the bundle, or a `vkverbs` it starts)
# wrote a sanitizer report. Reports go to files (log_path) in .build-asan/fabric-out/ resp.
# .build-tsan/fabric-out/, the fabric's --out directory (the only place a guest can write that
# the host sees), and are printed at the end. The fabric passes only VKVERBS_* variables, hence
# `env ASAN_OPTIONS=...` inside the guest; child processes inherit them.
#
# Everything is built with the sanitizer, the C targets included: VkLayerRDMA (-nostartfiles,
# -static-stdlib) and VkVerbsC (-static-stdlib) build, their .so files then leave the __asan_* /
# __tsan_* symbols undefined and resolve them from the sanitized executable that loads them (the
# test bundle and `vkverbs` load the layer through the Vulkan loader). Nothing in the suite loads
# libVkVerbsC.so (the C API runs in `make test-capi` only), so nothing needed excluding.
# Libraries from Debian (libibverbs, rdma-core's rxe provider, the Vulkan loader, Mesa's lavapipe)
# are not instrumented: their memory errors and races are not seen, their allocations are.

SAN_FABRIC_TIMEOUT ?= 5400

ASAN_SCRATCH := .build-asan
ASAN_OUT := $(abspath $(ASAN_SCRATCH))/fabric-out
# detect_leaks: LeakSanitizer at each process's exit; suppressions only for leaks that are not
# ours, each explained in mk/lsan.supp.
ASAN_RUN_OPTIONS := halt_on_error=1:abort_on_error=0:detect_leaks=1:exitcode=23:log_path=$(ASAN_OUT)/asan
LSAN_RUN_OPTIONS := suppressions=$(abspath mk/lsan.supp):print_suppressions=0

TSAN_SCRATCH := .build-tsan
TSAN_OUT := $(abspath $(TSAN_SCRATCH))/fabric-out
# halt_on_error=0: collect every race of the run, then exit with 66 (and the files say which).
TSAN_RUN_OPTIONS := halt_on_error=0:exitcode=66:log_path=$(TSAN_OUT)/tsan
# A subset: under TSan in the TCG guest, GPUTransferTests alone ran for more than 5 minutes
# (lavapipe) without finishing, and the ping-pong and Vulkan suites depend on timing. The Linux XCTest runner takes one argument, a comma-separated
# list of Module.Class[/method] (a bare module name selects nothing); TSAN_TESTS= runs everything.
TSAN_SUITES := VerbsTests.ConnectionTests VerbsTests.QueuePairTests VerbsTests.MemoryRegionTests \
  TransferTests.TransferTests TransferTests.PeerFailureTests
san-comma := ,
san-empty :=
san-space := $(san-empty) $(san-empty)
TSAN_TESTS ?= $(subst $(san-space),$(san-comma),$(strip $(TSAN_SUITES)))

.PHONY: test-asan test-tsan test-tsan-host

# $(call san-run,SCRATCH,OUT,ENV...,TESTS): runs the bundle in the fabric, then fails on a
# non-zero status or on any report file.
define san-run
	rm -rf $(2) && mkdir -p $(2)
	status=0; \
	VKVERBS_REQUIRE_RDMA=1 $(FABRIC) run --timeout $(SAN_FABRIC_TIMEOUT) --out $(2) -- \
	  env $(3) $(1)/debug/VkVerbsPackageTests.xctest $(4) || status=$$?; \
	reports=$$(find $(2) -maxdepth 1 -name '*san.*' -type f); \
	for r in $$reports; do echo "=== sanitizer report $$r"; cat "$$r"; done; \
	if [ -n "$$reports" ]; then echo "$@: FAILED: sanitizer reports above (status $$status)"; exit 1; fi; \
	if [ $$status -ne 0 ]; then echo "$@: FAILED: the suite exited with $$status"; exit 1; fi; \
	echo "$@: passed, no sanitizer reports"
endef

test-asan:
	$(SWIFT) build --build-tests --sanitize=address --scratch-path $(ASAN_SCRATCH)
	$(call san-run,$(ASAN_SCRATCH),$(ASAN_OUT),ASAN_OPTIONS=$(ASAN_RUN_OPTIONS) LSAN_OPTIONS=$(LSAN_RUN_OPTIONS),)

# The host tier under TSan, on the host (no fabric): any report fails it.
test-tsan-host:
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path $(TSAN_SCRATCH)
	rm -rf $(TSAN_OUT)-host && mkdir -p $(TSAN_OUT)-host
	status=0; TSAN_OPTIONS=halt_on_error=0:exitcode=66:log_path=$(TSAN_OUT)-host/tsan \
	  $(TSAN_SCRATCH)/debug/VkVerbsPackageTests.xctest || status=$$?; \
	reports=$$(find $(TSAN_OUT)-host -maxdepth 1 -name 'tsan.*' -type f); \
	for r in $$reports; do echo "=== sanitizer report $$r"; cat "$$r"; done; \
	if [ -n "$$reports" ]; then echo "$@: FAILED: sanitizer reports above (status $$status)"; exit 1; fi; \
	if [ $$status -ne 0 ]; then echo "$@: FAILED: the host tier exited with $$status"; exit 1; fi; \
	echo "$@: passed, no sanitizer reports"

test-tsan: test-tsan-host
	$(call san-run,$(TSAN_SCRATCH),$(TSAN_OUT),TSAN_OPTIONS=$(TSAN_RUN_OPTIONS),$(TSAN_TESTS))
