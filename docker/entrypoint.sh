#!/usr/bin/env bash
# Container entrypoint: creates the rxe device when RXE_IFACE names an interface (the same
# scripts/rxe-setup the project's test fabric runs), then runs the command as the unprivileged
# user `vkverbs` (RDMA verbs need no root, only /dev/infiniband and a memlock limit).
set -euo pipefail
if [ -n "${RXE_IFACE:-}" ]; then
  rxe-setup "$RXE_IFACE" "${RXE_NAME:-rxe0}"
fi
limit=$(ulimit -l)
if [ "$limit" != "unlimited" ] && [ "$limit" -lt 65536 ]; then
  echo "vkverbs-entrypoint: warning: memlock limit is ${limit} KiB; RDMA registration needs more (docker run --ulimit memlock=-1)" >&2
fi
if [ "$(id -u)" = 0 ] && [ "${VKVERBS_RUN_AS_ROOT:-0}" != 1 ]; then
  exec setpriv --reuid=vkverbs --regid=vkverbs --init-groups --inh-caps=-all -- "$@"
fi
exec "$@"
