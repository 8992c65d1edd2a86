//go:build functional

package tests

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cosignKey is a signing key made by the test, its public key saved as PEM.
type cosignKey struct {
	signer crypto.Signer
	pub    string // path of the PEM public key
}

func newCosignKey(t *testing.T, alg string) cosignKey {
	t.Helper()
	var (
		signer crypto.Signer
		err    error
	)
	switch alg {
	case "ecdsa":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), alg+".pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return cosignKey{signer: signer, pub: path}
}

// sign returns the base64 signature over payload as cosign makes it.
func (k cosignKey) sign(t *testing.T, payload []byte) string {
	t.Helper()
	var (
		sig []byte
		err error
	)
	if _, ok := k.signer.(ed25519.PrivateKey); ok {
		sig, err = k.signer.Sign(rand.Reader, payload, crypto.Hash(0))
	} else {
		h := sha256.Sum256(payload)
		sig, err = k.signer.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// cosignPayload is the simple-signing payload for repo and digest.
func cosignPayload(repo, digest string) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, repo, digest)
}

// manifestDigest returns the digest of REPO:TAG's manifest and the manifest.
func (r *testRegistry) manifestDigest(t *testing.T, repo, tag string) (string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.host+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s:%s: %s", repo, tag, resp.Status)
	}
	var m map[string]any
	json.Unmarshal(data, &m)
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data)), m
}

// putBlob uploads a blob to repo (monolithic upload) and returns its descriptor.
func (r *testRegistry) putBlob(t *testing.T, repo, mediaType string, data []byte) map[string]any {
	t.Helper()
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
	resp, err := http.Post("http://"+r.host+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + r.host + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+d, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT blob %s: %s", d, resp.Status)
	}
	return map[string]any{"mediaType": mediaType, "digest": d, "size": len(data)}
}

// sigLayer is one signature of a .sig image: the payload and its annotation.
type sigLayer struct {
	payload   []byte
	signature string
}

// pushSignature pushes, as cosign does, an image at REPO:sha256-HEX.sig
// whose layers are the signatures of manifest digest.
func (r *testRegistry) pushSignature(t *testing.T, repo, digest string, sigs ...sigLayer) {
	t.Helper()
	var layers []map[string]any
	for _, s := range sigs {
		l := r.putBlob(t, repo, "application/vnd.dev.cosign.simplesigning.v1+json", s.payload)
		l["annotations"] = map[string]string{"dev.cosignproject.cosign/signature": s.signature}
		layers = append(layers, l)
	}
	cfg := r.putBlob(t, repo, "application/vnd.oci.image.config.v1+json", []byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`))
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg, "layers": layers})
	tag := "sha256-" + strings.TrimPrefix(digest, "sha256:") + ".sig"
	req, _ := http.NewRequest(http.MethodPut, "http://"+r.host+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s:%s: %s %s", repo, tag, resp.Status, body)
	}
}

// signImage pushes k's signature of REPO's manifest d, naming HOST/REPO.
func (r *testRegistry) signImage(t *testing.T, repo, d string, k cosignKey) {
	t.Helper()
	p := cosignPayload(r.host+"/"+repo, d)
	r.pushSignature(t, repo, d, sigLayer{p, k.sign(t, p)})
}

type trustEntryJSON struct {
	Kind        string `json:"kind"`
	Root        bool   `json:"root"`
	Prefix      string `json:"prefix"`
	Fingerprint string `json:"fingerprint"`
	Origin      string `json:"origin"`
	Masked      bool   `json:"masked"`
}

func (e *env) trustList() []trustEntryJSON {
	e.t.Helper()
	var l []trustEntryJSON
	r := e.ok("trust", "--list", "--format=json")
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		e.t.Fatalf("trust --list --format=json: %v\n%s", err, r.stdout)
	}
	for i := range l { // upper-case, as skiff shows fingerprints everywhere; the tests compare gpg's lower-case
		if l[i].Fingerprint != strings.ToUpper(l[i].Fingerprint) {
			e.t.Errorf("trust --list --format=json: fingerprint %s is not upper-case", l[i].Fingerprint)
		}
		l[i].Fingerprint = strings.ToLower(l[i].Fingerprint)
	}
	return l
}

// Registry images are verified by default with cosign key signatures at the
// sha256-HEX.sig tag; each refusal is one line naming the image, the reason
// and the fix, and leaves nothing runnable (nor any layer) in the store.
func TestCosignRegistryImages(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, "")
	busybox, inspect := filepath.Join(e.images, "busybox.oci.tar"), filepath.Join(e.images, "inspect.oci.tar")
	ec, ed := newCosignKey(t, "ecdsa"), newCosignKey(t, "ed25519")
	team := "docker://" + reg.host + "/team"

	app := reg.push(t, busybox, "team/app:v1")
	dApp, _ := reg.manifestDigest(t, "team/app", "v1")
	reg.signImage(t, "team/app", dApp, ec)
	fetch := func(ref string) result { return e.skiff("--insecure-options=http", "fetch", "--quiet", ref) }
	refuse := func(ref string, want ...string) {
		t.Helper()
		r := e.fails(125, append([]string{ref}, want...), "--insecure-options=http", "fetch", "--quiet", ref)
		checkOneLine(t, r)
	}

	// Unsigned.
	unsigned := reg.push(t, busybox, "team/unsigned:v1")
	refuse(unsigned, "not signed", "sha256-", "skiff trust --prefix="+team+"/unsigned --cosign", "--insecure-options=image")
	// Signed, but no key trusted.
	refuse(app, "no cosign key is trusted", "skiff trust --prefix="+team+"/app --cosign")

	// Trusting needs a fingerprint review, or --skip-fingerprint-review without a terminal.
	e.fails(125, []string{"not a terminal", "--skip-fingerprint-review"}, "trust", "--prefix="+team, "--cosign", ec.pub)
	e.fails(125, []string{"--cosign"}, "trust", "--skip-fingerprint-review", "--prefix="+team, "--cosign=false", ec.pub)
	r := e.ok("trust", "--prefix="+team, "--cosign", "--skip-fingerprint-review", ec.pub)
	if !strings.Contains(r.stdout, "trusted key") || !strings.Contains(r.stderr, "ecdsa-p256") {
		t.Errorf("trust --cosign: %q %q", r.stdout, r.stderr)
	}
	l := e.trustList()
	if len(l) != 1 || l[0].Kind != "cosign" || l[0].Prefix != reg.host+"/team" || l[0].Origin != "admin" || len(l[0].Fingerprint) != 64 {
		t.Fatalf("trust --list: %+v", l)
	}
	ecFpr := l[0].Fingerprint
	if _, err := os.Stat(filepath.Join(e.local, "trustedkeys", "cosign.d", "prefix.d", reg.host, "team", ecFpr)); err != nil {
		t.Errorf("cosign key layout: %v", err)
	}

	// Accepted, and runs.
	if r := fetch(app); r.code != 0 || !imageIDLine.MatchString(r.stdout) || strings.Contains(r.stderr, "skipped (--insecure-options=image)") {
		t.Fatalf("signed image: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	args := append(append([]string{"--insecure-options=http", "run"}, e.stage1...), app, "--", "/bin/echo", "signed")
	if r := e.skiff(args...); r.code != 0 || r.stdout != "signed\n" {
		t.Fatalf("run signed image: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}

	// Signed by a key that is not trusted.
	wrong := reg.push(t, inspect, "team/wrong:v1")
	dInspect, m := reg.manifestDigest(t, "team/wrong", "v1")
	reg.signImage(t, "team/wrong", dInspect, ed)
	refuse(wrong, "not trusted for "+team+"/wrong")
	// ... trusted for another prefix only.
	e.ok("trust", "--prefix=docker://"+reg.host+"/elsewhere", "--cosign", "--skip-fingerprint-review", ed.pub)
	refuse(wrong, "trusted only for docker://"+reg.host+"/elsewhere", "skiff trust --prefix="+team+"/wrong --cosign")

	// Another repository's valid signature copied next to the same image.
	cp := reg.push(t, busybox, "team/copy:v1")
	p := cosignPayload(reg.host+"/team/app", dApp)
	reg.pushSignature(t, "team/copy", dApp, sigLayer{p, ec.sign(t, p)})
	refuse(cp, "vouches for", reg.host+"/team/app", "another repository")

	// A signature for other content (the tag's image was replaced).
	tampered := reg.push(t, inspect, "team/tampered:v1")
	p = cosignPayload(reg.host+"/team/tampered", dApp)
	reg.pushSignature(t, "team/tampered", dInspect, sigLayer{p, ec.sign(t, p)})
	refuse(tampered, "tampered", dApp)

	// A malformed signature.
	bad := reg.push(t, inspect, "team/bad:v1")
	reg.pushSignature(t, "team/bad", dInspect, sigLayer{cosignPayload(reg.host+"/team/bad", dInspect), "not base64!"})
	refuse(bad, "malformed")

	// Nothing of the refused images was stored or even downloaded.
	for _, img := range e.imageList() {
		for _, n := range img.Names {
			if strings.HasPrefix(n, "docker://") && n != app {
				t.Errorf("refused image stored: %v", img.Names)
			}
		}
	}
	for _, l := range m["layers"].([]any) {
		if d := l.(map[string]any)["digest"].(string); reg.blobGets(t, d) != 0 {
			t.Errorf("layer %s of refused images was downloaded", d)
		}
	}

	// Ed25519 keys work as well.
	edImg := reg.push(t, inspect, "team/ed:v1")
	reg.signImage(t, "team/ed", dInspect, ed)
	e.ok("trust", "--prefix=docker://"+reg.host+"/team/ed", "--cosign", "--skip-fingerprint-review", ed.pub)
	if r := fetch(edImg); r.code != 0 {
		t.Fatalf("ed25519-signed image: exit %d, %q", r.code, r.stderr)
	}

	// image verify re-verifies against the registry with the keys trusted now.
	r = e.ok("--insecure-options=http", "image", "verify", app)
	if !strings.Contains(r.stdout, app+": signature verified (cosign key "+strings.ToUpper(ecFpr)) {
		t.Errorf("image verify: %q", r.stdout)
	}
	r = e.ok("trust", "--remove", strings.ToUpper(ecFpr))
	if !strings.Contains(r.stdout, "removed cosign key") {
		t.Errorf("trust --remove: %q", r.stdout)
	}
	r = e.fails(125, []string{"failed signature re-verification"}, "--insecure-options=http", "image", "verify", app)
	if !strings.Contains(r.stdout, "signature REFUSED") {
		t.Errorf("image verify after removing the key: %q", r.stdout)
	}
	// A registry skiff may not reach (plain HTTP refused): reported, not a refusal.
	r = e.ok("image", "verify", app)
	if !strings.Contains(r.stdout, "not re-verified") {
		t.Errorf("image verify without reaching the registry: %q", r.stdout)
	}
	// Skipping verification is loud.
	r = e.skiff("--insecure-options=image,http", "fetch", "--quiet", unsigned)
	if !strings.Contains(r.stderr, "WARNING: signature verification") {
		t.Errorf("--insecure-options=image: %q", r.stderr)
	}
}
