//go:build functional

package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
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

// tokenServer is a minimal bearer-token server for docker-registry's
// "auth: token:" (ES256 JWTs carrying their self-signed certificate in x5c).
// It grants pull and push on what is asked to user:password, nothing to others.
type tokenServer struct {
	url, certFile  string
	key            *ecdsa.PrivateKey
	der            []byte
	user, password string
}

func startTokenServer(t *testing.T, user, password string) *tokenServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "skiff-test-token"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ts := &tokenServer{key: key, der: der, user: user, password: password,
		certFile: filepath.Join(t.TempDir(), "token.crt")}
	os.WriteFile(ts.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A name, not 127.0.0.1: go-containerregistry refuses token realms on
	// private IP literals other than the registry's own host:port (SSRF guard).
	ts.url = fmt.Sprintf("http://localhost:%d/token", l.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{Handler: http.HandlerFunc(ts.serve)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ts
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != ts.user || p != ts.password {
		w.Header().Set("WWW-Authenticate", `Basic realm="skiff-test"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
		return
	}
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	var grants []access
	for _, scope := range r.URL.Query()["scope"] { // repository:NAME:pull,push
		parts := strings.Split(scope, ":")
		if len(parts) == 3 {
			grants = append(grants, access{parts[0], parts[1], strings.Split(parts[2], ",")})
		}
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": "skiff-test", "sub": u, "aud": r.URL.Query().Get("service"),
		"exp": now.Add(10 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": fmt.Sprint(now.UnixNano()), "access": grants})
	header, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ts.der)}})
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	rr, ss, err := ecdsa.Sign(rand.Reader, ts.key, sum[:])
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	sig := make([]byte, 64)
	rr.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	token := signing + "." + enc.EncodeToString(sig)
	json.NewEncoder(w).Encode(map[string]any{"token": token, "access_token": token, "expires_in": 600, "issued_at": now.UTC().Format(time.RFC3339)})
}

func (ts *tokenServer) authYAML() string {
	return fmt.Sprintf("  token:\n    realm: %s\n    service: skiff-test-registry\n    issuer: skiff-test\n    rootcertbundle: %s\n", ts.url, ts.certFile)
}

// A registry with bearer-token auth: the token server is asked with the
// credentials from auth.d; wrong ones give a one-line error.
func TestRegistryTokenAuth(t *testing.T) {
	e := newEnv(t)
	ts := startTokenServer(t, "bob", "t0ken")
	reg := startRegistry(t, ts.authYAML())
	bb := reg.push(t, filepath.Join(e.images, "busybox.oci.tar"), "team/bb:v1", "bob", "t0ken")

	r := e.fails(125, []string{bb, "unauthorized"}, fetchArgs(bb)...)
	checkOneLine(t, r)
	writeAuthFile(t, filepath.Join(e.local, "auth.d", "reg.json"), reg.host, "bob", "wrong")
	r = e.fails(125, []string{bb, "unauthorized", "rejected"}, fetchArgs(bb)...)
	checkOneLine(t, r)
	writeAuthFile(t, filepath.Join(e.local, "auth.d", "reg.json"), reg.host, "bob", "t0ken")
	if out := e.ok(fetchArgs(bb)...).stdout; !imageIDLine.MatchString(out) {
		t.Errorf("fetch with token auth printed %q", out)
	}
}
