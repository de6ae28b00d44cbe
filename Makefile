# VkVerbs: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
FABRIC := scripts/fabric
TEST_BINARY := .build/debug/VkVerbsPackageTests.xctest

.PHONY: all deps build demo test test-host test-fabric test-two-hosts clean

# Further pieces (C API, docker recipe checks, ...) bring their own rules.
include $(wildcard mk/*.mk)

all: build

# Debian packages (rdma-core, QEMU, Vulkan loader, lavapipe, ...): installed only when missing.
deps:
	scripts/install-deps

build: deps
	$(SWIFT) build --build-tests

# The main job: a loopback self-test over SoftRoCE inside the project's fabric.
demo: build
	$(FABRIC) setup
	$(FABRIC) run -- .build/debug/vkverbs selftest

# Everything: host tests (RDMA ones skip there), the two-hosts exchange, then the whole
# suite inside the rxe fabric where a missing RDMA device is a failure.
test: build
	$(MAKE) test-host
	$(FABRIC) setup
	$(MAKE) test-two-hosts
	$(MAKE) test-fabric

test-host:
	$(SWIFT) test --skip-build

test-two-hosts:
	$(FABRIC) two-hosts -- scripts/two-hosts-exchange

test-fabric:
	VKVERBS_REQUIRE_RDMA=1 $(FABRIC) run -- $(TEST_BINARY)

clean:
	rm -rf .build .fabric
