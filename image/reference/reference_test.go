package reference

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reference
	}{
		{"oci:/var/l", Reference{Transport: OCI, Path: "/var/l"}},
		{"oci:/var/l:latest", Reference{Transport: OCI, Path: "/var/l", Ref: "latest"}},
		{"oci-archive:bb.tar:busybox:1.36", Reference{Transport: OCIArchive, Path: "bb.tar", Ref: "busybox:1.36"}},
		{"docker-archive:x.tar", Reference{Transport: DockerArchive, Path: "x.tar"}},
		{"docker://busybox", Reference{Transport: Docker, Host: "docker.io", Repo: "library/busybox", Tag: "latest"}},
		{"docker://quay.io:443/a/b:v1", Reference{Transport: Docker, Host: "quay.io:443", Repo: "a/b", Tag: "v1"}},
		{"docker://localhost/a@sha256:" + strings.Repeat("a", 64),
			Reference{Transport: Docker, Host: "localhost", Repo: "a", Digest: digest.Digest("sha256:" + digestHex)}},
		{"etcd-v3.aci", Reference{Transport: ACI, Path: "etcd-v3.aci"}},
		{"https://example.com/x.aci", Reference{Transport: HTTPS, URL: "https://example.com/x.aci"}},
		{"http://example.com/x.aci", Reference{Transport: HTTPS, URL: "http://example.com/x.aci"}},
		{"example.com/app", Reference{Transport: AppcName, Host: "example.com", Name: "example.com/app"}},
		{"example.com/a/b:1.0", Reference{Transport: AppcName, Host: "example.com", Name: "example.com/a/b", Tag: "1.0"}},
		{"127.0.0.1:8443/app:v1", Reference{Transport: AppcName, Host: "127.0.0.1:8443", Name: "127.0.0.1/app", Tag: "v1"}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

var digestHex = strings.Repeat("a", 64)

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"", "busybox", "/tmp/x.tar", "oci:", "oci::latest", "oci:/x:", "oci:/x:bad ref",
		"docker://Busybox", "docker://x@sha256:12", "docker://a/b:bad:tag", "https://",
		"ftp://x/y.aci", "example.com/App", "example.com/a:b:c", "./x/y", "[::1]/x", "x.y/a:",
	} {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q): no error", in)
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "\""+in+"\"") {
			t.Errorf("Parse(%q): error %q does not wrap ErrInvalid or name the input", in, err)
		}
	}
	_, err := Parse("busybox")
	if !strings.Contains(err.Error(), "oci-archive:FILE[:REF]") {
		t.Errorf("bare name error does not list the forms: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"oci:/l:latest", "oci-archive:a.tar:b:c", "docker://quay.io:5000/a/b:t",
		"docker://a@sha256:" + digestHex, "x.aci", "https://h/p?q=1#f", "docker-archive:x",
		"example.com/app:1.0", "127.0.0.1:1/a/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(r.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, r.String(), err)
		}
		if again != r {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, r)
		}
	})
}

// A reference typed without its transport names the one it likely needs.
func TestParseErrorsSuggestTheTransport(t *testing.T) {
	for in, want := range map[string]string{
		"./bb.oci.tar":              "oci-archive:./bb.oci.tar",
		"/srv/images/web":           "oci:/srv/images/web",
		"bb.tar":                    "docker-archive:bb.tar",
		"docker.io/library/busybox": "write docker://docker.io/library/busybox",
		"quay.io/x/y:1":             "write docker://quay.io/x/y:1",
		"busybox:1.36":              "docker://busybox:1.36",
	} {
		_, err := Parse(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want a hint with %q", in, err, want)
		}
	}
}
