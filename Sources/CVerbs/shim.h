#ifndef VKVERBS_CVERBS_SHIM_H
#define VKVERBS_CVERBS_SHIM_H
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <poll.h>
#include <fcntl.h>
#endif
