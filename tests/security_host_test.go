//go:build functional

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// skiff runs as root and writes files at paths users name. A link someone
// left at such a path (in a shared /tmp, say) must not make skiff write the
// file it points to: --uuid-file-save, `image export` (and the temporary
// file beside its target) and `generate unit --output-dir` refuse a link and
// write through a new temporary file and a rename.
func TestUserGivenPathsAreNotWrittenThroughLinks(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(victim, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	intact := func(what string) {
		t.Helper()
		if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
			t.Errorf("%s wrote through a link to %s: it now starts %q", what, victim, b[:min(len(b), 40)])
			os.WriteFile(victim, []byte("keep\n"), 0o600)
		}
	}

	uf := link("uuid")
	r := e.skiff(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/true")...)
	intact("run --uuid-file-save")
	if r.code != 125 || !strings.Contains(r.stderr, uf+" is a symbolic link") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
		t.Errorf("run --uuid-file-save=LINK: exit %d, stderr %q; want 125 and the link named", r.code, r.stderr)
	}
	if ps := e.pods(); len(ps) != 0 {
		t.Errorf("a refused --uuid-file-save left pods: %+v", ps)
	}

	img := e.image("busybox")
	e.ok("--insecure-options=image", "fetch", img)
	out := filepath.Join(dir, "out.tar")
	link("out.tar.tmp")
	e.ok("image", "export", img, out)
	intact("image export (FILE.tmp)")
	if fi, err := os.Lstat(out); err != nil || !fi.Mode().IsRegular() || fi.Size() < 1024 {
		t.Errorf("export did not write %s: %v", out, err)
	}
	exp := link("exported.tar")
	e.fails(125, []string{exp, "symbolic link"}, "image", "export", img, exp)
	intact("image export FILE")

	units := filepath.Join(dir, "units")
	if err := os.Mkdir(units, 0o755); err != nil {
		t.Fatal(err)
	}
	svc := filepath.Join(units, "web.service")
	if err := os.Symlink(victim, svc); err != nil {
		t.Fatal(err)
	}
	e.fails(125, []string{svc, "symbolic link"}, "--insecure-options=image", "generate", "unit", "--unit-name=web",
		"--output-dir="+units, img)
	intact("generate unit --output-dir")
}
