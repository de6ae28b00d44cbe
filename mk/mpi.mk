# mk/mpi.mk: Examples/mpi under Open MPI. Included by the top-level Makefile.
#
#   make test-mpi      install the C library into a temporary prefix, build Examples/mpi/ring.c,
#                      osu.c (mpicc) and ring.f90 (mpifort) through pkg-config, and run the ring
#                      checks with mpirun across `scripts/fabric hosts --hosts 4`
#                      (scripts/mpi-test, scripts/mpi-fabric)
#   make test-mpi-osu  the same build, then Examples/mpi/osu latency and bw (OSU-style tables,
#                      1 B .. 4 MiB) between two of the fabric's hosts; not in `make test`
#   make test-mpi-8    the ring checks across 8 hosts (a longer run); not in `make test`
#
# MPI_HOSTS: the number of hosts (ranks), 2..8.

MPI_HOSTS ?= 4

.PHONY: test-mpi test-mpi-osu test-mpi-8

test-mpi:
	scripts/install-deps
	VKVERBS_MPI_HOSTS=$(MPI_HOSTS) CAPI_CONFIG=$(CAPI_CONFIG) CAPI_SCRATCH=$(CAPI_SCRATCH) MAKE="$(MAKE)" scripts/mpi-test

test-mpi-osu:
	scripts/install-deps
	VKVERBS_MPI_HOSTS=2 VKVERBS_MPI_CHECKS="osu-latency osu-bw" CAPI_CONFIG=$(CAPI_CONFIG) CAPI_SCRATCH=$(CAPI_SCRATCH) \
	  MAKE="$(MAKE)" scripts/mpi-test

test-mpi-8:
	scripts/install-deps
	VKVERBS_MPI_HOSTS=8 VKVERBS_MPI_FABRIC_TIMEOUT=5400 VKVERBS_MPI_JOB_TIMEOUT=1800 CAPI_CONFIG=$(CAPI_CONFIG) \
	  CAPI_SCRATCH=$(CAPI_SCRATCH) MAKE="$(MAKE)" scripts/mpi-test
