package appc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-project/skiff/image/layer"
	"github.com/skiff-project/skiff/image/reference"
)

func TestParseMeta(t *testing.T) {
	page := `<!DOCTYPE html><html><head>
<meta name="go-import" content="example.com/x git https://x">
<meta name="ac-discovery" content="example.com https://example.com/{name}-{version}-{os}-{arch}.{ext}">
<META NAME="ac-discovery" content="  example.com/app   https://mirror.example.com/{name}.{ext}  "/>
<meta name="ac-discovery" content="too many fields here">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
</head><body><meta name="ac-discovery" content="late https://late/{ext}"></body></html>`
	metas, err := ParseMeta(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := []Meta{
		{"ac-discovery", "example.com", "https://example.com/{name}-{version}-{os}-{arch}.{ext}"},
		{"ac-discovery", "example.com/app", "https://mirror.example.com/{name}.{ext}"},
		{"ac-discovery-pubkeys", "example.com", "https://example.com/pubkeys.gpg"},
		{"ac-discovery", "late", "https://late/{ext}"},
	}
	if fmt.Sprint(metas) != fmt.Sprint(want) {
		t.Errorf("ParseMeta:\n got %v\nwant %v", metas, want)
	}
}

func TestBest(t *testing.T) {
	metas := []Meta{
		{"ac-discovery", "example.com", "https://s/{os}/{arch}/{name}-{version}.{ext}"},
		{"ac-discovery", "example.com", "https://m/{os}/{arch}/{name}-{version}.{ext}"},
		{"ac-discovery", "example.com", "https://s/{os}/{arch}/{name}-latest.{ext}"},
		{"ac-discovery", "example.com", "https://s/{name}-{unknown}.{ext}"},
		{"ac-discovery", "example.com", "https://s/{name}"},
		{"ac-discovery", "other.org", "https://o/{name}.{ext}"},
		{"ac-discovery-pubkeys", "example.com", "https://s/keys"},
		{"ac-discovery-pubkeys", "other.org", "https://o/keys"},
	}
	eps, keys := Best(metas, "example.com/app", map[string]string{"os": "linux", "arch": "amd64", "version": "1.0"})
	want := []Endpoint{
		{"https://s/linux/amd64/example.com/app-1.0.aci", "https://s/linux/amd64/example.com/app-1.0.aci.asc"},
		{"https://m/linux/amd64/example.com/app-1.0.aci", "https://m/linux/amd64/example.com/app-1.0.aci.asc"},
	}
	if fmt.Sprint(eps) != fmt.Sprint(want) || fmt.Sprint(keys) != "[https://s/keys]" {
		t.Errorf("with version: %v %v", eps, keys)
	}
	eps, _ = Best(metas, "example.com/app", map[string]string{"os": "linux", "arch": "amd64"})
	if len(eps) != 1 || eps[0].ACI != "https://s/linux/amd64/example.com/app-latest.aci" {
		t.Errorf("without version: %v", eps)
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add(`<meta name="ac-discovery" content="a https://a/{name}.{ext}">`)
	f.Fuzz(func(t *testing.T, page string) {
		metas, _ := ParseMeta(strings.NewReader(page))
		for _, m := range metas {
			if m.Prefix == "" || m.URL == "" || strings.ContainsAny(m.Prefix+m.URL, " \t\n") {
				t.Fatalf("bad meta %+v from %q", m, page)
			}
			eps, _ := Best([]Meta{m}, m.Prefix+"/x", map[string]string{"version": "1"})
			for _, ep := range eps {
				if strings.Contains(ep.ACI, "{ext}") || !strings.HasSuffix(ep.ASC, ".asc") && !strings.Contains(m.URL, "{ext}") {
					t.Fatalf("bad endpoint %+v from %q", ep, m.URL)
				}
			}
		}
	})
}

// testServer serves a discovery page at /app (and 404 below it), the ACI and
// its signature, over TLS with a self-signed certificate.
func testServer(t *testing.T, aci []byte, withSig bool) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host := strings.Split(srv.Listener.Addr().String(), ":")[0]
		switch {
		case r.URL.Path == "/" && r.URL.Query().Get("ac-discovery") == "1":
			fmt.Fprintf(w, `<html><head><meta name="ac-discovery" content="%s https://%s/images/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="%s https://%s/pubkeys.gpg"></head></html>`, host, r.Host, host, r.Host)
		case strings.HasSuffix(r.URL.Path, ".aci"):
			w.Write(aci)
		case strings.HasSuffix(r.URL.Path, ".aci.asc") && withSig:
			w.Write([]byte("signature"))
		default:
			http.NotFound(w, r)
		}
	})
	srv = httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused self-signed handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestOpenHTTPS(t *testing.T) {
	manifest := strings.Replace(testManifest, "example.com/hello", "127.0.0.1/hello", 1)
	srv := testServer(t, gzipped(aciTar(t, manifest)), true)
	tmp := t.TempDir()
	ctx := context.Background()
	ref := reference.Reference{Transport: reference.HTTPS, URL: srv.URL + "/x.aci"}

	_, err := Open(ctx, ref, Options{TmpDir: tmp})
	var cert *tls.CertificateVerificationError
	if !errors.As(err, &cert) {
		t.Errorf("self-signed server accepted without InsecureTLS: %v", err)
	}
	src, err := Open(ctx, ref, Options{TmpDir: tmp, InsecureTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	if src.Manifest.Name != "127.0.0.1/hello" || string(src.Signature) != "signature" || src.SignatureOrigin != ref.URL+".asc" {
		t.Errorf("source %+v", src)
	}
	src.Close()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("download not removed: %v", left)
	}

	plain := reference.Reference{Transport: reference.HTTPS, URL: strings.Replace(srv.URL, "https", "http", 1) + "/x.aci"}
	if _, err := Open(ctx, plain, Options{TmpDir: tmp}); !errors.Is(err, ErrPlainHTTP) {
		t.Errorf("http:// accepted: %v", err)
	}
	missing := reference.Reference{Transport: reference.HTTPS, URL: srv.URL + "/nope"}
	if _, err := Open(ctx, missing, Options{TmpDir: tmp, InsecureTLS: true}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
}

func TestOpenDiscovery(t *testing.T) {
	manifest := strings.Replace(testManifest, "example.com/hello", "127.0.0.1/hello", 1)
	srv := testServer(t, aciTar(t, manifest), true)
	hostport := strings.TrimPrefix(srv.URL, "https://")
	ctx := context.Background()
	opts := Options{TmpDir: t.TempDir(), InsecureTLS: true}

	ref, err := reference.Parse(hostport + "/hello:1.0")
	if err != nil {
		t.Fatal(err)
	}
	src, err := Open(ctx, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	wantKeys := "https://" + hostport + "/pubkeys.gpg"
	if src.Manifest.Name != "127.0.0.1/hello" || len(src.PubKeys) != 1 || src.PubKeys[0] != wantKeys ||
		!strings.HasSuffix(src.SignatureOrigin, "/images/127.0.0.1/hello-1.0-linux-"+Arch("amd64")+".aci.asc") {
		t.Errorf("source %+v", src)
	}
	if filepath.Dir(src.Path) != opts.TmpDir {
		t.Errorf("downloaded to %s", src.Path)
	}
	for in, want := range map[string]error{
		hostport + "/hello:2.0": ErrNameMismatch, // the server serves 1.0 whatever is asked
		hostport + "/other:1.0": ErrNameMismatch,
	} {
		ref, _ := reference.Parse(in)
		if _, err := Open(ctx, ref, opts); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", in, err, want)
		}
	}
}

func TestDiscoveryNotFound(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	ref, _ := reference.Parse(strings.TrimPrefix(srv.URL, "https://") + "/a/b:1")
	_, err := Open(context.Background(), ref, Options{TmpDir: t.TempDir(), InsecureTLS: true})
	if !errors.Is(err, ErrNotDiscovered) || !strings.Contains(err.Error(), "/a/b?ac-discovery=1") || !strings.Contains(err.Error(), "/a?ac-discovery=1") {
		t.Errorf("not discovered: %v", err)
	}
}

// A download larger than the layer limit is cut off, refused and removed.
func TestOpenHTTPSLimit(t *testing.T) {
	manifest := strings.Replace(testManifest, "example.com/hello", "127.0.0.1/hello", 1)
	aci := gzipped(aciTar(t, manifest))
	srv := testServer(t, aci, false)
	tmp := t.TempDir()
	ref := reference.Reference{Transport: reference.HTTPS, URL: srv.URL + "/x.aci"}
	defer layer.SetLimits(layer.CurrentLimits())
	layer.SetLimits(layer.Limits{MaxSize: int64(len(aci)) - 1, MaxEntries: 100})
	_, err := Open(context.Background(), ref, Options{TmpDir: tmp, InsecureTLS: true})
	if !errors.Is(err, layer.ErrTooLarge) || !strings.Contains(err.Error(), "--max-layer-size") {
		t.Errorf("a download over the limit: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("refused download not removed: %v", left)
	}
	layer.SetLimits(layer.Limits{MaxSize: int64(len(aci)), MaxEntries: 100})
	src, err := Open(context.Background(), ref, Options{TmpDir: tmp, InsecureTLS: true})
	if err != nil {
		t.Fatalf("a download at the limit: %v", err)
	}
	src.Close()
}
