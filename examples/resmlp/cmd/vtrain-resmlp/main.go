// Command vtrain-resmlp is vtrain with the example user model resmlp
// (package resmlp) built in: the whole command line, the demo's nodes
// included, with --model resmlp or model.kind = "resmlp" in a spec.
package main

import (
	"os"

	"github.com/vtrain/vtrain/cli"
	_ "github.com/vtrain/vtrain/examples/resmlp"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
