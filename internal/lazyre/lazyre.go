// Package lazyre compiles a regular expression on its first use instead of
// at program start. skiff's binaries start several times for each pod (the
// stage1 binary four times: stage1's run, libcontainer's init, app-exec and
// app-exited), and most of those starts never use the expressions their
// packages declare; compiling them all in package initialisation cost about
// a millisecond per start (issue #18). An expression is compiled once, by
// the first caller, and is then safe for concurrent use as a
// regexp.Regexp is; a bad expression panics on that first use (as
// regexp.MustCompile would at start): each binary's tests call Check, which
// compiles every expression the binary's packages declared.
package lazyre

import (
	"fmt"
	"regexp"
	"sync"
)

// declared are the expressions of every New so far (package variables: all
// of a binary's, once its packages are initialised).
var (
	mu       sync.Mutex
	declared []string
)

// Regexp is a regular expression compiled on first use. Its methods are
// those of regexp.Regexp that skiff uses.
type Regexp struct {
	get func() *regexp.Regexp
}

// New returns expr, to be compiled on first use.
func New(expr string) *Regexp {
	mu.Lock()
	declared = append(declared, expr)
	mu.Unlock()
	return &Regexp{get: sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })}
}

// Regexp returns the compiled expression.
func (r *Regexp) Regexp() *regexp.Regexp { return r.get() }

// MatchString reports whether s contains a match of the expression.
func (r *Regexp) MatchString(s string) bool { return r.get().MatchString(s) }

// FindStringSubmatch is regexp.Regexp's.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.get().FindStringSubmatch(s) }

// ReplaceAllString is regexp.Regexp's.
func (r *Regexp) ReplaceAllString(src, repl string) string {
	return r.get().ReplaceAllString(src, repl)
}

// ReplaceAllStringFunc is regexp.Regexp's.
func (r *Regexp) ReplaceAllStringFunc(src string, repl func(string) string) string {
	return r.get().ReplaceAllStringFunc(src, repl)
}

// Check compiles every expression declared so far and returns how many
// there were, or an error naming the first that does not compile. A
// binary's test calls it to prove all of the binary's expressions good.
func Check() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for _, expr := range declared {
		if _, err := regexp.Compile(expr); err != nil {
			return 0, fmt.Errorf("lazyre: %q: %w", expr, err)
		}
	}
	return len(declared), nil
}

// T is what CheckIn needs of a *testing.T.
type T interface {
	Helper()
	Fatal(args ...any)
	Logf(format string, args ...any)
}

// CheckIn is a binary's test of its expressions: it fails t unless Check
// compiles every one.
func CheckIn(t T) {
	t.Helper()
	n, err := Check()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d expressions compile", n)
}
