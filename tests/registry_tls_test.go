//go:build functional

package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSignedCert writes a self-signed certificate for 127.0.0.1 (an IP
// SAN, no CA anyone trusts) and its key into dir.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "127.0.0.1", Organization: []string{"skiff-test"}},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "registry.crt"), filepath.Join(dir, "registry.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// startTLSRegistry starts docker-registry serving HTTPS only, with a
// self-signed certificate for 127.0.0.1, on a free loopback port.
func startTLSRegistry(t *testing.T) *testRegistry {
	t.Helper()
	certFile, keyFile := selfSignedCert(t, t.TempDir())
	r := serveRegistry(t, fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile), "")
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the test's own self-signed registry
	waitFor(t, 10*time.Second, "the TLS registry to listen on "+r.host, func() bool {
		resp, err := client.Get("https://" + r.host + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// It really is HTTPS only: plain HTTP gets no registry answer.
	if resp, err := http.Get("http://" + r.host + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("registry %s answers plain HTTP", r.host)
		}
	}
	return r
}

// A registry over HTTPS with a self-signed certificate: refused naming
// --insecure-options=tls (also when only http is allowed, which must not
// fall back to plain HTTP silently); with tls it is fetched and runs.
func TestRegistryTLSSelfSigned(t *testing.T) {
	e := newEnv(t)
	reg := startTLSRegistry(t)
	bb := reg.push(t, filepath.Join(e.images, "busybox.oci.tar"), "test/bb:v1")

	for _, insecure := range []string{"--insecure-options=image", "--insecure-options=image,http"} {
		r := e.fails(125, []string{bb, "--insecure-options=tls", "certificate"}, insecure, "fetch", bb)
		checkOneLine(t, r)
		if r.stdout != "" {
			t.Errorf("%s: failed fetch printed %q", insecure, r.stdout)
		}
	}
	// run fetches the same way and refuses the same way.
	r := e.fails(125, []string{bb, "--insecure-options=tls"}, e.runArgs(bb, "--", "/bin/true")...)
	checkOneLine(t, r)
	if l := e.imageList(); len(l) != 0 {
		t.Fatalf("refused fetches stored images: %+v", l)
	}

	r = e.ok("--insecure-options=image,tls", "fetch", bb)
	if !imageIDLine.MatchString(r.stdout) {
		t.Fatalf("fetch printed %q, want an image ID", r.stdout)
	}
	id := strings.TrimSpace(r.stdout)
	if l := e.imageList(); len(l) != 1 || l[0].ID != id || len(l[0].Names) != 1 || l[0].Names[0] != bb {
		t.Errorf("image list after TLS fetch: %+v", l)
	}

	run := e.skiff(append([]string{"--insecure-options=image,tls", "run"}, append(e.stage1, bb, "--", "/bin/echo", "over tls")...)...)
	if run.code != 0 || run.stdout != "over tls\n" {
		t.Fatalf("run from TLS registry: exit %d, %q, %q", run.code, run.stdout, run.stderr)
	}
	// An update goes back to the registry and still needs tls.
	e.fails(125, []string{bb, "--insecure-options=tls"}, "--insecure-options=image", "fetch", "--pull-policy=update", bb)
	if got := strings.TrimSpace(e.ok("--insecure-options=image,tls", "fetch", "--pull-policy=update", bb).stdout); got != id {
		t.Errorf("update fetch: %s, want %s", got, id)
	}
	e.ok("image", "verify")
}
