// Package lazyre compiles a regular expression on its first use instead of
// at program start. skiff's binaries start several times for each pod (the
// stage1 binary four times: stage1's run, libcontainer's init, app-exec and
// app-exited), and most of those starts never use the expressions their
// packages declare; compiling them all in package initialisation cost about
// a millisecond per start (issue #18). An expression is compiled once, by
// the first caller, and is then safe for concurrent use as a
// regexp.Regexp is; a bad expression panics on that first use (as
// regexp.MustCompile would at start), so each one needs a test that uses it.
package lazyre

import (
	"regexp"
	"sync"
)

// Regexp is a regular expression compiled on first use. Its methods are
// those of regexp.Regexp that skiff uses.
type Regexp struct {
	get func() *regexp.Regexp
}

// New returns expr, to be compiled on first use.
func New(expr string) *Regexp {
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
