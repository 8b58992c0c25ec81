// Package testenv decides what a test does when something outside Go that
// it needs (a compiler, a C library, a data set) is missing: on a
// developer's machine it skips with a message; in CI, which installs these
// dependencies, it fails, so that a broken install cannot turn into a
// silently skipped test.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// Strict reports whether a missing dependency fails the test rather than
// skipping it: when the environment sets CI=true (as CI systems and
// .ci/run do) or VTRAIN_REQUIRE_DEPS=1.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("VTRAIN_REQUIRE_DEPS") == "1"
}

// Require does nothing when ok is true. Otherwise it skips t with the
// message, or, under [Strict], fails it with the same message. Use it in
// place of t.Skip for missing dependencies only; skips that are a choice
// (testing.Short) stay skips.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("%s (a missing dependency fails the test when CI=true or VTRAIN_REQUIRE_DEPS=1)", msg)
	} else {
		t.Skip(msg + " (CI=true or VTRAIN_REQUIRE_DEPS=1 makes this a failure)")
	}
}
