# mk/mpi.mk: Examples/mpi under Open MPI. Included by the top-level Makefile.
#
#   make test-mpi    install the C library into a temporary prefix, build Examples/mpi/ring.c
#                    (mpicc) and ring.f90 (mpifort) through pkg-config, and run them with mpirun
#                    across `scripts/fabric hosts --hosts 4` (scripts/mpi-test, scripts/mpi-fabric)
#
# MPI_HOSTS: the number of hosts (ranks), 2..8.

MPI_HOSTS ?= 4

.PHONY: test-mpi

test-mpi:
	scripts/install-deps
	VKVERBS_MPI_HOSTS=$(MPI_HOSTS) CAPI_CONFIG=$(CAPI_CONFIG) CAPI_SCRATCH=$(CAPI_SCRATCH) MAKE="$(MAKE)" scripts/mpi-test
