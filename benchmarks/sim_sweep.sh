#!/usr/bin/env bash
# The round protocol's simulation sweep: every Byzantine strategy at n = 4,
# 7 and 10 members (f = ⌊(n−1)/3⌋ of them Byzantine, outsiders where the
# strategy has them), under loss, delay, duplication and partitions that
# heal, SEEDS seeds each (default 1000), plus the lossy and partition
# scenarios; every seed asserts safety over every decision ever made,
# certificates for every decision and adopted state, and the liveness
# bound. Prints each scenario's line.
#
#   benchmarks/sim_sweep.sh [SEEDS]
set -euo pipefail
cd "$(dirname "$0")/.."
VTRAIN_SIM_SEEDS=${1:-1000} go test -count=1 -timeout 6h -run 'TestSimByzantine|TestSimLossy|TestSimPartitionHeals' -v ./consensus/ |
	grep -E '^ *(sim_test|--- (PASS|FAIL)|ok|FAIL)'
