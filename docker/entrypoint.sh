#!/usr/bin/env bash
# Container entrypoint. Where the host's kernel can create rxe devices (rdma_rxe loaded,
# CAP_NET_ADMIN, /dev/infiniband passed in), it creates one natively when RXE_IFACE names an
# interface (scripts/rxe-setup, as the project's test fabric does) and runs the command as the
# unprivileged user `vkverbs`. Where it cannot, it runs the command inside the project's fabric
# (scripts/fabric: a QEMU guest with its own kernel and rxe0, sharing this container's root), which
# needs nothing privileged. Either way the command sees VKVERBS_RDMA_DEVICE and VKVERBS_FABRIC_ADDR
# (the device's IPv4 address; natively only when RXE_IFACE is set).
#
#   VKVERBS_RXE=auto|native|fabric   default auto
#   VKVERBS_FABRIC_TOPOLOGY=loopback|two-hosts   (fabric) two-hosts runs the command in two guests
#                                    joined by a network, VKVERBS_FABRIC_ROLE=server|client
#   VKVERBS_FABRIC_CACHE             the fabric's kernel cache (default /opt/vkverbs/.fabric);
#                                    made on first use (downloads Debian's kernel package)
set -euo pipefail
say() { echo "vkverbs-entrypoint: $*" >&2; }
(($# > 0)) || { say "no command given"; exit 2; }

rxe_possible() {
  local capeff
  command -v rdma >/dev/null 2>&1 || return 1
  capeff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status 2>/dev/null)
  [[ -n $capeff ]] && (((16#$capeff >> 12) & 1)) || return 1   # CAP_NET_ADMIN
  [[ -d /sys/module/rdma_rxe && -d /dev/infiniband ]]
}

drop_privileges() {
  if [[ $(id -u) == 0 && ${VKVERBS_RUN_AS_ROOT:-0} != 1 ]]; then
    exec setpriv --reuid=vkverbs --regid=vkverbs --init-groups --inh-caps=-all -- "$@"
  fi
  exec "$@"
}

mode=${VKVERBS_RXE:-auto}
case $mode in
  auto) if rxe_possible; then mode=native; else mode=fabric; fi ;;
  native) rxe_possible || { say "VKVERBS_RXE=native, but this container cannot create rxe devices: the host needs rdma_rxe loaded (modprobe rdma_rxe rdma_ucm), and the container /dev/infiniband and CAP_NET_ADMIN"; exit 3; } ;;
  fabric) ;;
  *) say "VKVERBS_RXE must be auto, native or fabric (not '$mode')"; exit 2 ;;
esac

if [[ $mode == native ]]; then
  export VKVERBS_RDMA_DEVICE=${RXE_NAME:-rxe0}
  if [[ -n ${RXE_IFACE:-} ]]; then
    rxe-setup "$RXE_IFACE" "$VKVERBS_RDMA_DEVICE"
    VKVERBS_FABRIC_ADDR=$(ip -4 -o addr show dev "$RXE_IFACE" | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
    export VKVERBS_FABRIC_ADDR
  fi
  # Pinned memory: raise the soft limit to the hard one (always allowed); above that only the
  # engine can (--ulimit memlock=-1), and some hosts refuse even that, so say what is left.
  hard=$(ulimit -H -l)
  ulimit -S -l "$hard" 2>/dev/null || true
  limit=$(ulimit -l)
  if [[ $limit != unlimited ]] && ((limit < 65536)); then
    say "warning: memlock limit is ${limit} KiB and cannot be raised here; RDMA registration of more than that fails (run with --ulimit memlock=-1 where the engine allows it, or VKVERBS_RXE=fabric)"
  fi
  drop_privileges "$@"
fi

# The fabric: the guest raises its own memlock limit and runs the command as `vkverbs` too.
say "the host's kernel cannot create rxe devices here; running the command in the project's fabric (QEMU guest with rxe0)"
export VKVERBS_FABRIC_CACHE=${VKVERBS_FABRIC_CACHE:-/opt/vkverbs/.fabric}
topology=${VKVERBS_FABRIC_TOPOLOGY:-loopback}
case $topology in
  loopback) sub=run ;;
  two-hosts) sub=two-hosts ;;
  *) say "VKVERBS_FABRIC_TOPOLOGY must be loopback or two-hosts (not '$topology')"; exit 2 ;;
esac
cd /tmp
as_user=()
if [[ ${VKVERBS_RUN_AS_ROOT:-0} != 1 ]]; then
  as_user=(setpriv --reuid=vkverbs --regid=vkverbs --init-groups --inh-caps=-all --)
fi
exec /opt/vkverbs/scripts/fabric "$sub" -- "${as_user[@]}" "$@"
