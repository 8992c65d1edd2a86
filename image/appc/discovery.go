package appc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"

	"golang.org/x/net/html"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/internal/lazyre"
)

// ErrNotDiscovered is returned when no discovery page offers a template that
// can be filled for the name and labels.
var ErrNotDiscovered = errors.New("no ac-discovery template found")

// maxDiscoveryPage bounds the HTML read from a discovery URL.
const maxDiscoveryPage = 1 << 20

// Meta is one ac-discovery or ac-discovery-pubkeys meta tag.
type Meta struct {
	Name   string // "ac-discovery" or "ac-discovery-pubkeys"
	Prefix string // the name prefix it applies to
	URL    string // a URL template (ac-discovery) or a key URL (pubkeys)
}

// ParseMeta returns the ac-discovery and ac-discovery-pubkeys meta tags of
// an HTML page: <meta name="ac-discovery" content="PREFIX TEMPLATE">. Tags
// whose content is not two fields are skipped.
func ParseMeta(r io.Reader) ([]Meta, error) {
	z := html.NewTokenizer(r)
	var metas []Meta
	for {
		switch z.Next() {
		case html.ErrorToken:
			if errors.Is(z.Err(), io.EOF) {
				return metas, nil
			}
			return metas, z.Err()
		case html.StartTagToken, html.SelfClosingTagToken:
			tag, hasAttr := z.TagName()
			if string(tag) != "meta" || !hasAttr {
				continue
			}
			var name, content string
			for more := true; more; {
				var k, v []byte
				k, v, more = z.TagAttr()
				switch string(k) {
				case "name":
					name = string(v)
				case "content":
					content = string(v)
				}
			}
			fields := strings.Fields(content)
			if (name == "ac-discovery" || name == "ac-discovery-pubkeys") && len(fields) == 2 {
				metas = append(metas, Meta{Name: name, Prefix: fields[0], URL: fields[1]})
			}
		}
	}
}

// Endpoint is where discovery says an image and its signature are.
type Endpoint struct {
	ACI, ASC string
}

// Render fills a discovery template for name and labels, once with ext
// "aci" and once with "aci.asc". It reports how many labels it used, and
// false when the template has no {ext} or a variable it cannot fill.
func Render(tmpl, name string, labels map[string]string) (Endpoint, int, bool) {
	if !strings.Contains(tmpl, "{ext}") {
		return Endpoint{}, 0, false
	}
	used := 0
	out := tmpl
	for k, v := range labels {
		if strings.Contains(out, "{"+k+"}") {
			out = strings.ReplaceAll(out, "{"+k+"}", v)
			used++
		}
	}
	out = strings.ReplaceAll(out, "{name}", name)
	if templateVarRE.MatchString(strings.ReplaceAll(out, "{ext}", "")) {
		return Endpoint{}, 0, false
	}
	return Endpoint{ACI: strings.ReplaceAll(out, "{ext}", "aci"), ASC: strings.ReplaceAll(out, "{ext}", "aci.asc")}, used, true
}

var templateVarRE = lazyre.New(`\{[^{}]*\}`)

// Best returns the endpoints of the best-matching ac-discovery templates for
// name (those filling the most labels, in page order) and the keys the
// pubkeys tags offer for it.
func Best(metas []Meta, name string, labels map[string]string) (eps []Endpoint, pubkeys []string) {
	best := -1
	for _, m := range metas {
		if !strings.HasPrefix(name, m.Prefix) {
			continue
		}
		if m.Name == "ac-discovery-pubkeys" {
			pubkeys = append(pubkeys, m.URL)
			continue
		}
		ep, used, ok := Render(m.URL, name, labels)
		switch {
		case !ok || used < best:
		case used > best:
			best, eps = used, []Endpoint{ep}
		default:
			eps = append(eps, ep)
		}
	}
	return eps, pubkeys
}

// discoveryLabels are the labels asked for: the version if given, and this
// platform's os and arch.
func discoveryLabels(version string) map[string]string {
	l := map[string]string{"os": "linux", "arch": Arch(runtime.GOARCH)}
	if version != "" {
		l["version"] = version
	}
	return l
}

// discover runs appc discovery for ref (spec/discovery.md): it reads
// https://HOST[:PORT]/PATH?ac-discovery=1, then each parent path while the
// answer is a 4xx or has no usable template, and downloads the image and
// signature from the first endpoint that serves the image.
func (src *Source) discover(ctx context.Context, c *http.Client, opts Options, ref reference.Reference) error {
	labels := discoveryLabels(ref.Tag)
	_, path, _ := strings.Cut(ref.Name, "/")
	var tried []string
	for p := "/" + path; ; p = parentPath(p) {
		u := "https://" + ref.Host + p + "?ac-discovery=1"
		tried = append(tried, u)
		metas, err := fetchMeta(ctx, c, opts, u)
		var se *statusError
		if err != nil && !(errors.As(err, &se) && se.code/100 == 4) {
			return fmt.Errorf("discovery: %w", err)
		}
		eps, keys := Best(metas, ref.Name, labels)
		src.PubKeys = append(src.PubKeys, keys...)
		if len(eps) > 0 {
			return src.downloadFirst(ctx, c, opts, eps)
		}
		if p == "" {
			break
		}
	}
	return fmt.Errorf("%w for %s (%s) at %s", ErrNotDiscovered, ref.Name, labelString(labels), strings.Join(tried, ", "))
}

// parentPath returns "/a" for "/a/b" and "" for "/a".
func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return ""
}

func fetchMeta(ctx context.Context, c *http.Client, opts Options, u string) ([]Meta, error) {
	resp, err := get(ctx, c, opts, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return ParseMeta(io.LimitReader(resp.Body, maxDiscoveryPage))
}

func (src *Source) downloadFirst(ctx context.Context, c *http.Client, opts Options, eps []Endpoint) error {
	var errs []error
	for _, ep := range eps {
		err := src.download(ctx, c, opts, ep.ACI, ep.ASC)
		if err == nil {
			return nil
		}
		src.Close()
		src.Path, src.temp = "", false
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
