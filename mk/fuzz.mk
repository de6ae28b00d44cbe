# mk/fuzz.mk: every input a peer controls under libFuzzer, in two targets that fuzz side by side:
# - HandshakeFuzzer: the decoders alone (ping-pong handshake and control messages, the numbered
#   stream's hello, answer and messages into a receiver's acceptance), about 20k inputs/s;
# - SessionFuzzer: the same inputs at session level over the in-memory twin: a ping-pong server
#   session (the handshake through the server's admission, then control messages RDMA-written
#   into its mailbox, data, heartbeats, hang-ups) and the stream receiver (hellos, messages,
#   reconnects), each input checked for leaks (the twin's leftovers, the memory budget).
#
#   make fuzz          build both with -sanitize=fuzzer,address into .build-fuzz and fuzz both at
#                      once for FUZZ_TIME seconds (default 60; one core each); fails on any crash,
#                      sanitizer report, timeout, out-of-memory or leak trap, leaving the input in
#                      .build-fuzz/artifacts/ (replay: .build-fuzz/release/<Target> FILE)
#   make fuzz-seeds    rewrite Fuzz/corpus/ and Fuzz/corpus/session/ from the project's own
#                      encoders (after a wire-format change)
#   make fuzz-replay   the plain (uninstrumented) builds replay the committed corpora and what
#                      fuzzing found
#
# The seeds are made fresh by the binaries themselves on every `make fuzz` (--write-seeds), so they
# follow the wire formats; Fuzz/corpus/ keeps a committed copy for the plain replay. New inputs go
# to .build-fuzz/corpus*/, never to Fuzz/corpus/.
#
# SwiftPM links an executable target's main under another name (--defsym main=<Target>_main), and
# -sanitize=fuzzer links libFuzzer's own main() object too, which references
# LLVMFuzzerTestOneInput: each main.swift defines that symbol as well, and its own main hands the
# command line to LLVMFuzzerRunDriver. Only the products' modules are built (not the C layer or
# the C API).

FUZZ_SCRATCH := .build-fuzz
FUZZ_BINARY := $(FUZZ_SCRATCH)/release/HandshakeFuzzer
SESSION_FUZZ_BINARY := $(FUZZ_SCRATCH)/release/SessionFuzzer
FUZZ_TIME ?= 60
FUZZ_FLAGS ?= -max_total_time=$(FUZZ_TIME) -timeout=5 -rss_limit_mb=2048 -print_final_stats=1
# Optimized (-c release): the targets run several times faster than at -Onone, so the 60 s see
# more inputs; -enable-testing keeps the targets' @testable imports working.
FUZZ_SWIFTFLAGS := -c release -Xswiftc -enable-testing -Xswiftc -sanitize=fuzzer,address -Xswiftc -DVKVERBS_FUZZING \
  -Xswiftc -DVKVERBS_FUZZ_SEEDS

.PHONY: fuzz fuzz-build fuzz-seeds fuzz-replay

fuzz-build:
	$(SWIFT) build --scratch-path $(FUZZ_SCRATCH) --product HandshakeFuzzer $(FUZZ_SWIFTFLAGS)
	$(SWIFT) build --scratch-path $(FUZZ_SCRATCH) --product SessionFuzzer $(FUZZ_SWIFTFLAGS)

# Both targets at once, each with its own log; the first failure is reported with its log's tail.
fuzz: fuzz-build
	rm -rf $(FUZZ_SCRATCH)/seeds $(FUZZ_SCRATCH)/session-seeds
	mkdir -p $(FUZZ_SCRATCH)/corpus $(FUZZ_SCRATCH)/corpus-session $(FUZZ_SCRATCH)/artifacts
	$(FUZZ_BINARY) --write-seeds $(FUZZ_SCRATCH)/seeds
	$(SESSION_FUZZ_BINARY) --write-seeds $(FUZZ_SCRATCH)/session-seeds
	@export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0; \
	$(FUZZ_BINARY) $(FUZZ_FLAGS) -max_len=256 -dict=Fuzz/handshake.dict -artifact_prefix=$(FUZZ_SCRATCH)/artifacts/ \
	  $(FUZZ_SCRATCH)/corpus $(FUZZ_SCRATCH)/seeds Fuzz/corpus >$(FUZZ_SCRATCH)/handshake.log 2>&1 & decoders=$$!; \
	$(SESSION_FUZZ_BINARY) $(FUZZ_FLAGS) -max_len=1024 -artifact_prefix=$(FUZZ_SCRATCH)/artifacts/ \
	  $(FUZZ_SCRATCH)/corpus-session $(FUZZ_SCRATCH)/session-seeds Fuzz/corpus/session >$(FUZZ_SCRATCH)/session.log 2>&1 & sessions=$$!; \
	failed=0; \
	for job in "HandshakeFuzzer $$decoders handshake" "SessionFuzzer $$sessions session"; do \
	  set -- $$job; \
	  if wait $$2; then grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|SessionFuzzer: ping-pong)' $(FUZZ_SCRATCH)/$$3.log | sed "s/^/$$1: /"; \
	  else failed=1; echo "fuzz: $$1 FAILED ($(FUZZ_SCRATCH)/$$3.log):"; tail -40 $(FUZZ_SCRATCH)/$$3.log; fi; \
	done; \
	if [ $$failed -ne 0 ]; then echo "fuzz: the input is in $(FUZZ_SCRATCH)/artifacts/:"; ls -l $(FUZZ_SCRATCH)/artifacts/; exit 1; fi
	@echo "fuzz: no crash in $(FUZZ_TIME) s"

fuzz-seeds: fuzz-build
	rm -rf Fuzz/corpus/session
	find Fuzz/corpus -maxdepth 1 -type f -delete
	$(FUZZ_BINARY) --write-seeds Fuzz/corpus
	$(SESSION_FUZZ_BINARY) --write-seeds Fuzz/corpus/session

fuzz-replay:
	$(SWIFT) build --product HandshakeFuzzer
	$(SWIFT) build --product SessionFuzzer
	.build/debug/HandshakeFuzzer Fuzz/corpus $(wildcard $(FUZZ_SCRATCH)/corpus)
	.build/debug/SessionFuzzer Fuzz/corpus/session $(wildcard $(FUZZ_SCRATCH)/corpus-session)
