package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vtrain/vtrain/verify/zk"
)

const ceremonyTrust = `Trust: the keys are sound (nobody can prove a false training step) if at
least one participant of phase 1 and at least one participant of phase 2
drew its secret honestly and destroyed it; one person may take part in
both. vtrain ceremony contribute draws the secrets from crypto/rand and
keeps them only in its own memory, gone when it exits. If every
participant of one phase kept its secret and they pooled them, they could
forge proofs. Even they learn nothing of a prover's data: keys from a
transcript that verifies are well formed, and Groth16 proofs under
well-formed keys are zero-knowledge even to whoever knows the secrets.

Each phase ends with a public random beacon (--beacon, hex), reproduced by
every verifier. A beacon adds no secrecy (everyone knows it); it is
trusted only to be unpredictable until the last contribution of its phase
is published, so that the last participant cannot grind the final
parameters. Announce where it will come from before the phase starts
(a drand round, a block hash at a height after the deadline), and check
that the beacons the keys' ceremony.json names are the announced ones:
whoever runs init --phase 2 and finalize types them in.
`

func runCeremony(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, `Usage: vtrain ceremony init|contribute|verify|finalize [flags]

A multi-party Groth16 setup of the zk step circuit (gnark's mpcsetup), in
place of the single-party vtrain keygen:

  init --phase 1 --out P1         start phase 1 (powers of tau), sized for the circuit flags (or --power)
  contribute IN OUT               add a contribution to a transcript of either phase; prints its ID
  init --phase 2 --phase1 P1 --beacon HEX --out P2
                                  seal phase 1 with its beacon, start phase 2 for the circuit
  contribute IN OUT               (phase 2 participants, one after another)
  verify --phase1 P1 [--phase2 P2]
                                  check every contribution in order; lists their IDs
  finalize --phase1 P1 --phase2 P2 --beacon HEX --out DIR
                                  verify all, seal phase 2, write the keys and print the hash
                                  that the run spec pins as [privacy] vk_sha256

Each participant runs contribute on its own machine on the latest
transcript and passes the output on. A transcript holds every contribution
(each is a few hundred bytes per constraint); a contribution's ID is the
SHA-256 of its record and the next contribution is bound to it, so none can
be dropped, reordered or altered without verify failing. Keep your ID and
check that verify and the keys' ceremony.json list it.

`+ceremonyTrust)
		if len(args) == 0 {
			return usagef("missing ceremony step")
		}
		return nil
	}
	switch args[0] {
	case "init":
		return runCeremonyInit(args[1:], stdout, stderr)
	case "contribute":
		return runCeremonyContribute(args[1:], stdout, stderr)
	case "verify":
		return runCeremonyVerify(args[1:], stdout, stderr)
	case "finalize":
		return runCeremonyFinalize(args[1:], stdout, stderr)
	default:
		return usagef("unknown ceremony step %q (want init, contribute, verify or finalize)", args[0])
	}
}

func refuseExisting(path string) error {
	if _, err := os.Stat(path); err == nil {
		return usagef("%s exists: a transcript is never overwritten; choose another name", path)
	}
	return nil
}

func runCeremonyInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ceremony init", "ceremony init --phase 1|2 --out FILE [flags]", stderr)
	zf := addZKParamFlags(fs)
	phase := fs.Int("phase", 0, "1: start phase 1 (powers of tau); 2: seal phase 1 and start phase 2 for the circuit")
	power := fs.Int("power", 0, "phase 1: a domain of 2^power points (default: the smallest that holds the circuit)")
	phase1 := fs.String("phase1", "", "phase 2: the finished phase-1 transcript")
	beacon := fs.String("beacon", "", "phase 2: the beacon that seals phase 1 (hex), announced before phase 1 ended")
	out := fs.String("out", "", "write the new transcript here")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	if err := refuseExisting(*out); err != nil {
		return err
	}
	p, err := zf.params()
	if err != nil {
		return err
	}
	switch *phase {
	case 1:
		if *phase1 != "" || *beacon != "" {
			return usagef("--phase1 and --beacon start phase 2")
		}
		if *power == 0 {
			fmt.Fprintf(stderr, "vtrain: compiling the %d×%d batch-%d circuit to size phase 1\n", p.Features, p.Classes, p.Batch)
			ccs, err := zk.Compile(p)
			if err != nil {
				return err
			}
			*power = zk.CeremonyPower(ccs.GetNbConstraints())
		}
		if *power < 1 || *power > zk.MaxCeremonyPower {
			return usagef("--power %d out of range 1..%d", *power, zk.MaxCeremonyPower)
		}
		if err := zk.WriteFile(*out, func(w io.Writer) error { return zk.InitPhase1(w, *power) }); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "phase 1 transcript %s: a domain of 2^%d, no contribution yet\nnext: each participant runs 'vtrain ceremony contribute IN OUT' on the latest transcript\n", *out, *power)
		return nil
	case 2:
		if *phase1 == "" || *beacon == "" {
			return usagef("--phase 2 needs --phase1 and --beacon")
		}
		if *power != 0 {
			return usagef("--power applies to phase 1")
		}
		b, err := zk.ParseBeacon(*beacon)
		if err != nil {
			return usageError{err.Error()}
		}
		f, err := os.Open(*phase1)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(stderr, "vtrain: verifying phase 1 and computing phase 2's initial state (minutes at full size)\n")
		p1, err := zk.VerifyPhase1(f, b, nil)
		if err != nil {
			return err
		}
		if err := zk.WriteFile(*out, func(w io.Writer) error { return zk.InitPhase2(w, p1, p) }); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "phase 2 transcript %s: softmax regression %d×%d, batch %d, data depth %d, on phase 1's %d contributions\n",
			*out, p.Features, p.Classes, p.Batch, p.Depth, len(p1.Contributions))
		return nil
	default:
		return usagef("--phase must be 1 or 2")
	}
}

func runCeremonyContribute(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ceremony contribute", "ceremony contribute IN OUT", stderr)
	asJSON := fs.Bool("json", false, "print the contribution as one JSON object")
	pos, err := parsePositional(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("usage: vtrain ceremony contribute IN OUT")
	}
	in, out := pos[0], pos[1]
	if abs(in) == abs(out) {
		return usagef("IN and OUT are the same file")
	}
	if err := refuseExisting(out); err != nil {
		return err
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	var info zk.ContributionInfo
	if err := zk.WriteFile(out, func(w io.Writer) error { info, err = zk.Contribute(f, w); return err }); err != nil {
		return err
	}
	if *asJSON {
		b, _ := json.Marshal(info)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "phase %d contribution %d in %s (%.1fs)\nid %s\nKeep this ID: 'vtrain ceremony verify' and the keys' %s must list it.\nYour secret existed only in this process's memory and is gone with it.\n",
		info.Phase, info.Index, out, time.Since(start).Seconds(), info.ID, zk.CeremonyFile)
	return nil
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// openBoth opens the two transcripts of a ceremony (phase2 may be "").
func openBoth(phase1, phase2 string) (f1, f2 *os.File, err error) {
	if f1, err = os.Open(phase1); err != nil {
		return nil, nil, err
	}
	if phase2 != "" {
		if f2, err = os.Open(phase2); err != nil {
			f1.Close()
			return nil, nil, err
		}
	}
	return f1, f2, nil
}

func runCeremonyVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ceremony verify", "ceremony verify --phase1 FILE [--phase2 FILE] [--json]", stderr)
	phase1 := fs.String("phase1", "", "the phase-1 transcript")
	phase2 := fs.String("phase2", "", "the phase-2 transcript (its header names phase 1's beacon)")
	asJSON := fs.Bool("json", false, "print the verdict as one JSON object")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *phase1 == "" {
		return usagef("--phase1 is required")
	}
	f1, f2, err := openBoth(*phase1, *phase2)
	if err != nil {
		return err
	}
	defer f1.Close()
	var list []zk.ContributionInfo
	progress := func(i zk.ContributionInfo) {
		list = append(list, i)
		if !*asJSON {
			fmt.Fprintf(stdout, "phase %d contribution %d ok: %s\n", i.Phase, i.Index, i.ID)
		}
	}
	verdict := func(err error) error {
		if *asJSON {
			v := map[string]any{"ok": err == nil, "contributions": list}
			if err != nil {
				v["reason"] = err.Error()
			}
			b, _ := json.Marshal(v)
			fmt.Fprintln(stdout, string(b))
		} else if err == nil {
			fmt.Fprintf(stdout, "ok: %d contributions verified in order\n", len(list))
		}
		return err
	}
	if f2 == nil {
		_, err := zk.VerifyPhase1(f1, nil, progress)
		return verdict(err)
	}
	defer f2.Close()
	_, _, err = zk.VerifyCeremony(f1, f2, nil, progress)
	return verdict(err)
}

func runCeremonyFinalize(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ceremony finalize", "ceremony finalize --phase1 FILE --phase2 FILE --beacon HEX --out DIR", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: vtrain ceremony finalize --phase1 FILE --phase2 FILE --beacon HEX --out DIR\n\n"+
			"Verifies both transcripts, seals phase 2 with the beacon, writes the keys with "+zk.CeremonyFile+"\n"+
			"(every contribution ID and both beacons) and prints the verifying key's SHA-256,\n"+
			"the [privacy] vk_sha256 that a run spec pins.\n\n"+ceremonyTrust+"\nFlags:\n")
		fs.PrintDefaults()
	}
	phase1 := fs.String("phase1", "", "the phase-1 transcript")
	phase2 := fs.String("phase2", "", "the phase-2 transcript")
	beacon := fs.String("beacon", "", "the beacon that seals phase 2 (hex), announced before phase 2 ended")
	out := fs.String("out", "", "write params.json, step.vk, step.pk, "+zk.CircuitFile+" and "+zk.CeremonyFile+" into this directory")
	asJSON := fs.Bool("json", false, "print the ceremony record as one JSON object")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *phase1 == "" || *phase2 == "" || *beacon == "" || *out == "" {
		return usagef("--phase1, --phase2, --beacon and --out are required")
	}
	b, err := zk.ParseBeacon(*beacon)
	if err != nil {
		return usageError{err.Error()}
	}
	f1, f2, err := openBoth(*phase1, *phase2)
	if err != nil {
		return err
	}
	defer f1.Close()
	defer f2.Close()
	fmt.Fprintf(stderr, "vtrain: verifying both phases and sealing the keys (minutes at full size)\n")
	rec, keys, err := zk.VerifyCeremony(f1, f2, b, nil)
	if err != nil {
		return err
	}
	if err := keys.Save(*out); err != nil {
		return err
	}
	rj, _ := json.MarshalIndent(rec, "", "  ")
	if err := zk.WriteFile(filepath.Join(*out, zk.CeremonyFile), func(w io.Writer) error { _, err := w.Write(append(rj, '\n')); return err }); err != nil {
		return err
	}
	if *asJSON {
		j, _ := json.Marshal(rec)
		fmt.Fprintln(stdout, string(j))
		return nil
	}
	fmt.Fprintf(stdout, "keys in %s from %d phase-1 and %d phase-2 contributions (%d constraints)\nverifying key sha256 %s\n",
		*out, len(rec.Phase1), len(rec.Phase2), rec.Constraints, rec.VKSHA256)
	return nil
}
