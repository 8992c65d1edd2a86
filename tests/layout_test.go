package tests

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the module root (tests/ sits just below it).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// TestEveryPackageHasOneDocComment: each package says what it is for, once.
func TestEveryPackageHasOneDocComment(t *testing.T) {
	root := repoRoot(t)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "build" || d.Name() == "bin") && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		pkgs, err := parser.ParseDir(token.NewFileSet(), path, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for name, p := range pkgs {
			docs := 0
			for _, f := range p.Files {
				if f.Doc != nil {
					docs++
				}
			}
			rel, _ := filepath.Rel(root, path)
			if docs != 1 {
				t.Errorf("package %s (%s) has %d doc comments, want exactly 1", name, rel, docs)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDependencyRules enforces DESIGN.md's rules: stage1 flavors never import
// image fetching, trust or stage0; stage0 never imports a stage1 flavor (only
// stage1/abi); the stage1 binary links no OpenPGP or registry code.
func TestDependencyRules(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not on PATH")
	}
	const mod = "github.com/skiff-project/skiff/"
	rules := []struct {
		pkg       string
		forbidden []string
		allowed   []string
	}{
		{"./stage1/...", []string{mod + "image", mod + "stage0", "github.com/ProtonMail/go-crypto", "golang.org/x/crypto/openpgp"}, nil},
		{"./stage0/...", []string{mod + "stage1", mod + "stage1-kvm"}, []string{mod + "stage1/abi"}},
		{"./stage1-kvm/...", []string{mod + "image", mod + "stage0", "github.com/ProtonMail/go-crypto", "golang.org/x/crypto/openpgp"}, nil},
	}
	root := repoRoot(t)
	for _, r := range rules {
		cmd := exec.Command("go", "list", "-deps", "-json=ImportPath", r.pkg)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v", r.pkg, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		for dec.More() {
			var p struct{ ImportPath string }
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
			if bad := violates(p.ImportPath, r.forbidden, r.allowed); bad != "" {
				t.Errorf("%s depends on %s (forbidden: %s)", r.pkg, p.ImportPath, bad)
			}
		}
	}
}

func violates(path string, forbidden, allowed []string) string {
	for _, a := range allowed {
		if path == a || strings.HasPrefix(path, a+"/") {
			return ""
		}
	}
	for _, f := range forbidden {
		if path == f || strings.HasPrefix(path, f+"/") {
			return f
		}
	}
	return ""
}
