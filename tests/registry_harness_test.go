//go:build functional

package tests

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testRegistry is Debian's docker-registry serving from a temporary
// directory on a free loopback port, with its own config.
type testRegistry struct {
	host string // 127.0.0.1:PORT
	dir  string
	log  string
}

// startRegistry starts a registry; authYAML, if not empty, is the config's
// "auth:" section (indented by two spaces).
func startRegistry(t *testing.T, authYAML string) *testRegistry {
	t.Helper()
	r := serveRegistry(t, "", authYAML)
	waitFor(t, 10*time.Second, "the registry to listen on "+r.host, func() bool {
		resp, err := http.Get("http://" + r.host + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return r
}

// serveRegistry starts docker-registry with its own config bound to a free
// loopback port: httpExtra is added to the config's "http:" section (e.g.
// tls), authYAML is its "auth:" section. It is stopped when the test ends.
func serveRegistry(t *testing.T, httpExtra, authYAML string) *testRegistry {
	t.Helper()
	need(t, "docker-registry", "skopeo")
	dir := t.TempDir()
	r := &testRegistry{host: freeAddr(t), dir: dir, log: filepath.Join(dir, "registry.log")}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), r.host) + httpExtra
	if authYAML != "" {
		cfg += "auth:\n" + authYAML
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	return r
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// push copies an oci-archive into the registry as REPO:TAG and returns
// the docker:// reference.
func (r *testRegistry) push(t *testing.T, archive, repoTag string, creds ...string) string {
	t.Helper()
	args := []string{"copy", "--quiet", "--dest-tls-verify=false"}
	if len(creds) == 2 {
		args = append(args, "--dest-creds="+creds[0]+":"+creds[1])
	}
	ref := "docker://" + r.host + "/" + repoTag
	args = append(args, "oci-archive:"+archive, ref)
	if out, err := exec.Command("skopeo", args...).CombinedOutput(); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return ref
}

// htpasswdAuth writes a bcrypt htpasswd file for user:password and returns
// the registry's auth section using it.
func htpasswdAuth(t *testing.T, user, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(user+":"+string(hash)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("  htpasswd:\n    realm: skiff-test\n    path: %s\n", p)
}

// writeAuthFile writes a docker config.json-format credentials file for host.
func writeAuthFile(t *testing.T, path, host, user, password string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	data := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// blobGets counts the registry's GET requests for blob digest d, from its log.
func (r *testRegistry) blobGets(t *testing.T, d string) int {
	t.Helper()
	data, _ := os.ReadFile(r.log)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"GET /v2/`) && strings.Contains(line, "/blobs/"+d) {
			n++
		}
	}
	return n
}
