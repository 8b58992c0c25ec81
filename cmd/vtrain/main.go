// Command vtrain is the one binary of vtrain: decentralized nodes and the
// demo, audits of their ledgers, local training, zk proofs, benchmarks and
// checkpoint export (package cli).
//
// Exit codes: 0 success, 1 a failure while running, 2 a usage error.
package main

import (
	"os"

	"github.com/vtrain/vtrain/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
