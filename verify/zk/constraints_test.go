package zk

import (
	"encoding/csv"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/constraints.csv with the current counts")

// TestConstraintCounts compiles every circuit vtrain ships and compares its
// constraint count with testdata/constraints.csv, so that a change that
// grows a circuit shows in review. go test -run ConstraintCounts -update
// rewrites the file.
func TestConstraintCounts(t *testing.T) {
	circuits := []struct {
		name string
		p    Params
	}{
		{"small-6x3-b2-d3", small},
		{"fashion-784x10-b1-d16", FashionParams(1)},
		{"fashion-784x10-b4-d16", FashionParams(4)},
		{"fashion-784x10-b16-d16", FashionParams(16)},
	}
	path := filepath.Join("testdata", "constraints.csv")
	want := map[string]int{}
	if !*update {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows[1:] {
			n, err := strconv.Atoi(r[len(r)-1])
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			want[r[0]] = n
		}
	}
	out := [][]string{{"circuit", "features", "classes", "batch", "depth", "lr", "constraints"}}
	for _, c := range circuits {
		if testing.Short() && c.p.Features > 100 { // the race detector makes these minutes
			continue
		}
		ccs, err := Compile(c.p)
		if err != nil {
			t.Fatal(err)
		}
		n := ccs.GetNbConstraints()
		out = append(out, []string{c.name, fmt.Sprint(c.p.Features), fmt.Sprint(c.p.Classes), fmt.Sprint(c.p.Batch),
			fmt.Sprint(c.p.Depth), fmt.Sprint(c.p.LR), fmt.Sprint(n)})
		if !*update && want[c.name] != n {
			t.Errorf("%s: %d constraints, %s says %d (run go test -run ConstraintCounts -update and review the change)", c.name, n, path, want[c.name])
		}
	}
	if *update {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w := csv.NewWriter(f)
		w.WriteAll(out)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
