#!/usr/bin/env bash
# Private peers in a live run (issue 17 part 1): the demo with the last
# peer training on private data and proving the step each decision draws,
# against the same training with every peer public, and with that private
# peer forging its proofs (the lone private peer of four: the rounds wait
# for it, privacy.wait, so its forged proof is judged within the run).
# Prints, per run: the agreed model's test
# accuracy, the proofs made, verified and refused per peer, exclusions,
# and the seconds the run took. The circuit's keys come from a
# single-party setup cached in the user cache directory (minutes, once).
#
#   benchmarks/private_demo.sh [--peers 4] [--rounds 10] [--data DIR|synthetic]
#
# KEEP=1 keeps the runs' outputs and the nodes' logs (each run's .err) in
# the temporary directory it prints.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=4 rounds=10 data=""
while [ $# -gt 0 ]; do
	case "$1" in
	--peers) peers=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--data) data=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
tmp=$(mktemp -d)
if [ -n "${KEEP:-}" ]; then
	echo "outputs in $tmp"
else
	trap 'rm -rf "$tmp"' EXIT
fi
go build -o "$tmp/vtrain" ./cmd/vtrain
extra=()
[ -n "$data" ] && extra=(--data "$data")
run() {
	local name=$1
	shift
	local line
	"$tmp/vtrain" demo --peers "$peers" --rounds "$rounds" --json --out "$tmp/$name" "${extra[@]}" "$@" 2>"$tmp/$name.err" | tail -1 >"$tmp/$name.json"
	/usr/bin/python3 - "$name" "$tmp/$name.json" <<'PY'
import json, sys
name, d = sys.argv[1], json.load(open(sys.argv[2]))
print(f"{name}: test accuracy {d['test_accuracy']:.4f}, agreed {d['agreed']}, {d['seconds']:.0f}s, {d['seconds_per_round']:.1f}s per round, excluded {[(x['index'], x['behave'], x['round']) for x in d['excluded']]}, honest excluded {d['honest_excluded']}")
for p in d['peer_outcomes']:
    print(f"  peer {p['index']} {p['behave'] or 'honest'}{' private' if p.get('private') else ''}: proofs made {p.get('proofs_made', 0)}, verified {p['proofs_verified']}, refused {p.get('proofs_refused', 0)}, member at end {p['member_at_end']}")
PY
	# The honest ledgers, together, as an auditor would.
	mapfile -t ledgers < <(/usr/bin/python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["ledgers"]))' "$tmp/$name.json")
	"$tmp/vtrain" audit "${extra[@]}" "${ledgers[@]}" 2>/dev/null | grep -E "^(ok|FAIL)|proofs of drawn steps|cross-checked" | sed -E 's/^ +//; s/^/  audit: /' | sort | uniq -c
}
run public --private 0
run private --private 1
run forger --private 1 --byzantine forge-proof
