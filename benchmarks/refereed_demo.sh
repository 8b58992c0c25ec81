#!/usr/bin/env bash
# Refereed spot-checks with real processes (issue 12's attack table): each
# scenario is one `vtrain demo` on Fashion-MNIST (synthetic when it is not
# installed), the honest nodes' ledgers audited together with the data.
# Prints one line per scenario: peers, --byzantine, test accuracy, honest
# peers excluded, agreement, the audit's verdict, the challengers' compute
# as a share of training, and per misbehaving peer its mode, the round it
# started, the round it was excluded from, and how many of its updates
# from then on the run aggregated.
#
#   benchmarks/refereed_demo.sh [--rounds 30] [--aggregation centered_clip] [SCENARIO...]
#
# A scenario is PEERS:MODES (MODES as --byzantine takes them, or "clean"),
# e.g. 6:accuse 6:collude,lazy 6:lazy+16@3,lazy+16@3 10:flip,flip,flip.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=30 agg="" data=""
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=$2; shift 2 ;;
	--aggregation) agg=$2; shift 2 ;;
	--data) data=$2; shift 2 ;;
	--*) echo "unknown flag $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(6:clean 6:accuse 6:accuse-any 6:collude,lazy 6:lazy+16@3,lazy+16@3 6:flip,flip 6:alie,alie 6:alie+10,alie+10)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/vtrain" ./cmd/vtrain
specflag=()
if [ -n "$agg" ]; then
	printf '[aggregation]\nrule = "%s"\n' "$agg" >"$tmp/spec.toml"
	specflag=(--spec "$tmp/spec.toml")
fi
[ -n "$data" ] && dataflag=(--data "$data") || dataflag=()
printf '%-6s %-28s %-9s %-7s %-7s %-6s %-8s %s\n' peers byzantine accuracy honest_x agreed audit checks "misbehaving: mode start→excluded (aggregated)"
n=0
for sc in "${scenarios[@]}"; do
	peers=${sc%%:*} modes=${sc#*:} n=$((n + 1))
	args=(demo --peers "$peers" --rounds "$rounds" --json --out "$tmp/s$n" "${specflag[@]}" "${dataflag[@]}")
	[ "$modes" != clean ] && args+=(--byzantine "$modes")
	line=$("$tmp/vtrain" "${args[@]}" 2>"$tmp/s$n.err" | tail -1) || { echo "$sc: demo failed"; tail -5 "$tmp/s$n.err"; continue; }
	ledgers=$(/usr/bin/python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])["ledgers"]))' "$line")
	src=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["data"])' "$line")
	if [ "$src" = synthetic ]; then dflag=(--data synthetic); else dflag=(--data "${data:-${VTRAIN_FMNIST:-/usr/share/datasets/fashion-mnist}}"); fi
	if "$tmp/vtrain" audit --json "${dflag[@]}" $ledgers >"$tmp/s$n.audit" 2>&1; then audit=ok; else audit=FAILED; fi
	/usr/bin/python3 - "$line" "$sc" "$audit" "$tmp/s$n.audit" <<'PY'
import json, sys
d, sc, audit, ap = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
peers, modes = sc.split(":", 1)
out = []
for o in d["peer_outcomes"]:
    if o["behave"] and not o["outsider"]:
        ex = "r%d" % o["excluded_from"] if o["excluded_from"] is not None else "never"
        out.append("%s %d→%s (%d)" % (o["behave"], o.get("first_cheating_round") or 0, ex, o["aggregated_cheating_updates"]))
print("%-6s %-28s %-9.4f %-7d %-7s %-6s %-8s %s" % (peers, modes, d["test_accuracy"], len(d["honest_excluded"]), d["agreed"], audit,
      "%.1f%%" % (100 * d["challenge_compute_fraction"]), "; ".join(out) or "-"))
try:
    rep = json.load(open(ap))
    for lr in rep["ledgers"][:1]:
        for p in lr["peers"]:
            if p.get("revoked_updates") or p.get("false_verdicts"):
                print("       audit: %s… revoked %d updates (%d samples), contamination %d, false verdicts %d" % (
                    p["peer"][:12], p["revoked_updates"], p["revoked_samples"], p["contamination"], p["false_verdicts"]))
        r = lr["replay"]
        print("       audit: %d upheld, %d overturned, %d re-refereed, %d inconclusive, %d false verdicts logged" % (
            r["verdicts_upheld"], r["verdicts_overturned"], r["disputes_rerefereed"], r["disputes_inconclusive"], r["false_verdicts_logged"]))
except Exception as e:
    print("       audit report: %s" % e)
PY
done
