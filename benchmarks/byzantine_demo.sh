#!/usr/bin/env bash
# Attacks on the round protocol with real processes: a clean run and one
# run per attack mode, each N peers (default 7) for R rounds (default 20)
# on Fashion-MNIST (or synthetic data when it is not installed), every
# honest node's ledger audited together. Prints one line per mode: honest
# peers excluded, whether all honest nodes ended on one state, test
# accuracy, median seconds per round, the audit's verdict, and for member
# attacks who was excluded.
#
#   benchmarks/byzantine_demo.sh [--peers 7] [--rounds 20] [--modes "clean hijack sybil future equivocate flood"]
set -euo pipefail
cd "$(dirname "$0")/.."
peers=7 rounds=20 modes="clean hijack sybil future equivocate flood" data=""
while [ $# -gt 0 ]; do
	case "$1" in
	--peers) peers=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--modes) modes=$2; shift 2 ;;
	--data) data=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/vtrain" ./cmd/vtrain
[ -n "$data" ] && dataflag=(--data "$data") || dataflag=()
printf '%-11s %-16s %-7s %-9s %-10s %-6s %s\n' mode honest_excluded agreed accuracy s/round audit excluded
for mode in $modes; do
	args=(demo --peers "$peers" --rounds "$rounds" --json --out "$tmp/$mode" "${dataflag[@]}")
	[ "$mode" != clean ] && args+=(--byzantine "$mode")
	line=$("$tmp/vtrain" "${args[@]}" 2>"$tmp/$mode.err" | tail -1) || { echo "$mode: demo failed"; tail -5 "$tmp/$mode.err"; continue; }
	ledgers=$(/usr/bin/python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])["ledgers"]))' "$line")
	if "$tmp/vtrain" audit $ledgers >/dev/null 2>"$tmp/$mode.audit"; then audit=ok; else audit=FAILED; fi
	/usr/bin/python3 - "$line" "$mode" "$audit" <<'PY'
import json, sys
d, mode, audit = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
ex = ",".join("%s(r%d)" % (x["behave"] or "honest", x["round"]) for x in d["excluded"]) or "-"
print("%-11s %-16d %-7s %-9.4f %-10.2f %-6s %s" % (mode, len(d["honest_excluded"]), d["agreed"], d["test_accuracy"], d["seconds_per_round"], audit, ex))
PY
done
