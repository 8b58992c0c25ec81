package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/trainer"
)

func runExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", "export --checkpoint DIR --out FILE.safetensors", stderr)
	dir := fs.String("checkpoint", "", "checkpoint directory written by 'vtrain train --out' (required)")
	out := fs.String("out", "", "safetensors file to write (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *out == "" {
		return usagef("--checkpoint and --out are required")
	}
	ck, err := trainer.ReadCheckpoint(*dir)
	if err != nil {
		return err
	}
	spec := ck.Manifest.Config.Model
	b := safetensors.Encode(trainer.TorchTensors(spec, ck.Params, ""), trainer.ModelMetadata(spec))
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %s, %d parameters, %d bytes (PyTorch names and shapes)\n", *out, spec, spec.NumParams(), len(b))
	return nil
}
