package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// recorder stands in for a test: it records what Require does to it
// instead of stopping the goroutine.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skip(args ...any) { r.skipped, r.msg = true, fmt.Sprint(args...) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		ci, require string
		ok          bool
		skip, fail  bool
	}{
		{ci: "", require: "", ok: true},
		{ci: "true", require: "", ok: true},
		{ci: "", require: "", ok: false, skip: true},
		{ci: "false", require: "0", ok: false, skip: true},
		{ci: "1", require: "", ok: false, skip: true}, // only CI=true counts
		{ci: "true", require: "", ok: false, fail: true},
		{ci: "", require: "1", ok: false, fail: true},
	} {
		t.Setenv("CI", tc.ci)
		t.Setenv("VTRAIN_REQUIRE_DEPS", tc.require)
		r := &recorder{TB: t}
		Require(r, tc.ok, "clang %s", "not installed")
		name := fmt.Sprintf("CI=%q VTRAIN_REQUIRE_DEPS=%q ok=%v", tc.ci, tc.require, tc.ok)
		if r.skipped != tc.skip || r.failed != tc.fail {
			t.Errorf("%s: skipped %v, failed %v; want %v, %v", name, r.skipped, r.failed, tc.skip, tc.fail)
		}
		if (tc.skip || tc.fail) && !strings.HasPrefix(r.msg, "clang not installed") {
			t.Errorf("%s: message %q", name, r.msg)
		}
	}
}
