#!/usr/bin/env bash
# The network-namespace scenarios of internal/netlab: whole vtrain runs,
# one `vtrain node` process per namespace, on networks the kernel builds
# (veth, a bridge internet, nftables NAT, tbf, loss, partitions; latency by
# netem where the kernel has it, otherwise a user-space TUN hop).
#
# Needs root, iproute2 and nftables (apt-get install -y nftables).
# Minutes of CPU per scenario: keep the rounds modest on a shared machine.
#
#   benchmarks/netlab.sh                 # every scenario, 10 rounds
#   benchmarks/netlab.sh NAT             # TestNATScenario only (also: Partition, Links, SlowLink)
#   ROUNDS=6 OUT=/tmp/netlab benchmarks/netlab.sh Partition
#
# Knobs (environment): ROUNDS, STEPS (inner steps; default the spec's 400),
# NAT2=symmetric (the second NATed peer behind a symmetric NAT: relayed),
# LOOPBACK=0 (skip the NAT scenario's loopback run), CUT (partition seconds),
# SLOW_KBIT and SLOW_MS (the SlowLink scenario's slow link: 1000 kbit/s, 300 ms).
#
# Each scenario writes its figures (JSON) and every node's output to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-}
export VTRAIN_NETLAB=1
export VTRAIN_NETLAB_ROUNDS=${ROUNDS:-10}
export VTRAIN_NETLAB_OUT=${OUT:-/tmp/vtrain-netlab}
[ -n "${STEPS:-}" ] && export VTRAIN_NETLAB_STEPS=$STEPS
[ -n "${NAT2:-}" ] && export VTRAIN_NETLAB_NAT2=$NAT2
[ -n "${LOOPBACK:-}" ] && export VTRAIN_NETLAB_LOOPBACK=$LOOPBACK
[ -n "${CUT:-}" ] && export VTRAIN_NETLAB_CUT=$CUT
[ -n "${SLOW_KBIT:-}" ] && export VTRAIN_NETLAB_SLOW_KBIT=$SLOW_KBIT
[ -n "${SLOW_MS:-}" ] && export VTRAIN_NETLAB_SLOW_MS=$SLOW_MS
mkdir -p "$VTRAIN_NETLAB_OUT"
echo "netlab: rounds $VTRAIN_NETLAB_ROUNDS, output in $VTRAIN_NETLAB_OUT; netem: $(ip netns add vtnlprobe$$ && ip netns exec vtnlprobe$$ tc qdisc add dev lo root netem delay 1ms 2>/dev/null && echo yes || echo 'no (user-space delay hop)'; ip netns del vtnlprobe$$ 2>/dev/null)"
exec go test -count=1 -v -timeout 120m -run "Test${which}.*Scenario" ./internal/netlab/
