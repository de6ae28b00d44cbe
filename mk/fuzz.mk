# mk/fuzz.mk: every decoder of peer bytes under libFuzzer: the ping-pong handshake and control
# messages, and the numbered stream's hello, answer and messages into a receiver.
#
#   make fuzz          build Fuzz/HandshakeFuzzer with -sanitize=fuzzer,address into .build-fuzz and
#                      fuzz HandshakeWire.checkRequest/checkAnswer, ControlWire.checkStep and the
#                      StreamWire decoders (with StreamAcceptance) for FUZZ_TIME
#                      seconds (default 60);
#                      fails on any crash, sanitizer report, timeout or out-of-memory, leaving the
#                      input in .build-fuzz/artifacts/ (replay: .build-fuzz/release/HandshakeFuzzer FILE)
#   make fuzz-seeds    rewrite Fuzz/corpus/ from PingPong's own encoders (after a wire-format change)
#   make fuzz-replay   the plain (uninstrumented) build replays Fuzz/corpus/ and what fuzzing found
#
# The seeds are made fresh by the binary itself on every `make fuzz` (--write-seeds, Seeds.swift,
# compiled in with -DVKVERBS_FUZZ_SEEDS), so they follow the handshake format; Fuzz/corpus/ keeps a
# committed copy for the plain replay. New inputs go to .build-fuzz/corpus/, never to Fuzz/corpus/.
#
# SwiftPM links an executable target's main under another name (--defsym main=<Target>_main), and
# -sanitize=fuzzer links libFuzzer's own main() object too, which references
# LLVMFuzzerTestOneInput: main.swift defines that symbol as well, and its own main hands the
# command line to LLVMFuzzerRunDriver. Only the product's modules are built (not the C layer or
# the C API), and C code (BoringSSL in swift-crypto) is compiled without instrumentation.

FUZZ_SCRATCH := .build-fuzz
FUZZ_BINARY := $(FUZZ_SCRATCH)/release/HandshakeFuzzer
FUZZ_TIME ?= 60
FUZZ_FLAGS ?= -max_total_time=$(FUZZ_TIME) -timeout=5 -rss_limit_mb=2048 -max_len=256 \
  -dict=Fuzz/handshake.dict -print_final_stats=1
# Optimized (-c release): the decoders run several times faster than at -Onone, so the 60 s see
# more inputs; -enable-testing keeps Seeds.swift's @testable import of the encoders working.
FUZZ_SWIFTFLAGS := -c release -Xswiftc -enable-testing -Xswiftc -sanitize=fuzzer,address -Xswiftc -DVKVERBS_FUZZING \
  -Xswiftc -DVKVERBS_FUZZ_SEEDS

.PHONY: fuzz fuzz-build fuzz-seeds fuzz-replay

fuzz-build:
	$(SWIFT) build --scratch-path $(FUZZ_SCRATCH) --product HandshakeFuzzer $(FUZZ_SWIFTFLAGS)

fuzz: fuzz-build
	rm -rf $(FUZZ_SCRATCH)/seeds
	mkdir -p $(FUZZ_SCRATCH)/corpus $(FUZZ_SCRATCH)/artifacts
	$(FUZZ_BINARY) --write-seeds $(FUZZ_SCRATCH)/seeds
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 $(FUZZ_BINARY) $(FUZZ_FLAGS) \
	  -artifact_prefix=$(FUZZ_SCRATCH)/artifacts/ \
	  $(FUZZ_SCRATCH)/corpus $(FUZZ_SCRATCH)/seeds Fuzz/corpus \
	  || { echo "fuzz: FAILED; the input is in $(FUZZ_SCRATCH)/artifacts/:"; ls -l $(FUZZ_SCRATCH)/artifacts/; exit 1; }
	@echo "fuzz: no crash in $(FUZZ_TIME) s"

fuzz-seeds: fuzz-build
	rm -rf Fuzz/corpus
	$(FUZZ_BINARY) --write-seeds Fuzz/corpus

fuzz-replay:
	$(SWIFT) build --product HandshakeFuzzer
	.build/debug/HandshakeFuzzer Fuzz/corpus $(wildcard $(FUZZ_SCRATCH)/corpus)
