# mk/capi.mk: the C API. Included by the top-level Makefile.
#
#   make capi                      build libvkverbs (CAPI_CONFIG=release|debug, default release)
#   make install [PREFIX=/usr/local] [DESTDIR=]
#                                  lib/libvkverbs.so.0 (+ libvkverbs.so), include/vkverbs.h,
#                                  lib/pkgconfig/vkverbs.pc
#   make uninstall [PREFIX=] [DESTDIR=]
#   make test-capi                 install into a temporary prefix, build Examples/ with gcc/g++
#                                  through pkg-config, run the misuse test (+ valgrind) on the host,
#                                  then C <-> C++ transfers in `scripts/fabric run` and `two-hosts`,
#                                  frame streams in both (two-hosts: one stream between the guests)
#
# The library links the Swift runtime statically and exports only vkv_* (Package.swift), so
# the installed .so needs nothing from the Swift toolchain at run time.

PREFIX ?= /usr/local
DESTDIR ?=
CAPI_CONFIG ?= release
CAPI_SCRATCH ?= .build
CAPI_LIBDIR = $(DESTDIR)$(PREFIX)/lib
CAPI_INCDIR = $(DESTDIR)$(PREFIX)/include
CAPI_PCDIR = $(CAPI_LIBDIR)/pkgconfig
CAPI_BUILT = $(CAPI_SCRATCH)/$(CAPI_CONFIG)/libVkVerbsC.so
CAPI_VERSION = $(shell sed -n 's/^\#define VKV_VERSION_MAJOR \([0-9]*\)/\1/p' Sources/VkVerbsC/include/vkverbs.h).$(shell sed -n 's/^\#define VKV_VERSION_MINOR \([0-9]*\)/\1/p' Sources/VkVerbsC/include/vkverbs.h)

.PHONY: capi install uninstall test-capi

# A release library is built with the parameters of `make release` (--static-swift-stdlib; the
# library links the runtime statically through Package.swift either way), so the two share one
# build in .build: with different parameters each rebuilt every module the other had compiled, two
# full release builds in every `make test` (about 4.5 minutes each on a loaded machine).
CAPI_BUILD_FLAGS = $(if $(filter release,$(CAPI_CONFIG)),--static-swift-stdlib)

capi:
	$(SWIFT) build --scratch-path $(CAPI_SCRATCH) -c $(CAPI_CONFIG) $(CAPI_BUILD_FLAGS) --product VkVerbsC
	@echo "capi: built $(CAPI_BUILT)"

install: capi
	install -d $(CAPI_LIBDIR) $(CAPI_INCDIR) $(CAPI_PCDIR)
	install -m 0755 $(CAPI_BUILT) $(CAPI_LIBDIR)/libvkverbs.so.0
	ln -sf libvkverbs.so.0 $(CAPI_LIBDIR)/libvkverbs.so
	install -m 0644 Sources/VkVerbsC/include/vkverbs.h $(CAPI_INCDIR)/vkverbs.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(CAPI_VERSION)|g' packaging/vkverbs.pc.in > $(CAPI_PCDIR)/vkverbs.pc
	chmod 0644 $(CAPI_PCDIR)/vkverbs.pc
	@echo "install: libvkverbs $(CAPI_VERSION) in $(DESTDIR)$(PREFIX)"

uninstall:
	rm -f $(CAPI_LIBDIR)/libvkverbs.so.0 $(CAPI_LIBDIR)/libvkverbs.so $(CAPI_INCDIR)/vkverbs.h $(CAPI_PCDIR)/vkverbs.pc

test-capi:
	CAPI_CONFIG=$(CAPI_CONFIG) CAPI_SCRATCH=$(CAPI_SCRATCH) MAKE="$(MAKE)" scripts/capi-test
