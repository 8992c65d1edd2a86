package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/skiff-project/skiff/image/appc"
	"github.com/skiff-project/skiff/image/trust"
	"github.com/skiff-project/skiff/image/verify"
)

// trustFlags are the trust verb's flags.
type trustFlags struct {
	output
	prefix     string
	root       bool
	cosign     bool
	skipReview bool
	list       bool
	remove     string
}

// maxKeyDownload bounds a key or discovery page fetched over HTTP(S).
const maxKeyDownload = 1 << 20

func newTrustCmd(g *globals) *cobra.Command {
	f := &trustFlags{}
	c := &cobra.Command{
		Use:   "trust [--prefix=NAME | --root] [--cosign] [KEYFILE|URL...]",
		Short: "Trust, list and remove the keys that sign images",
		Long: `Trust adds public keys to the administrator's keystore in
LOCAL_CONFIG/trustedkeys (vendor keys live in SYSTEM_CONFIG/trustedkeys, same
layout). Every image skiff fetches must be signed by a key trusted for its name
unless --insecure-options=image is given.

OpenPGP keys (armored or binary) verify image files and URLs (.aci, oci-archive:,
docker-archive:, https://) through their detached FILE.asc signatures:

  trustedkeys/root.d/FINGERPRINT              trusted for every image
  trustedkeys/prefix.d/PREFIX/FINGERPRINT     trusted for names under PREFIX

Cosign public keys (PEM: ECDSA P-256, Ed25519 or RSA >= 2048 bits) verify
registry images (docker://) through the cosign signature stored at the tag
sha256-HEX.sig of the image's manifest; PREFIX is HOST/REPO:

  trustedkeys/cosign.d/root.d/FINGERPRINT           every registry image
  trustedkeys/cosign.d/prefix.d/HOST/REPO/FINGERPRINT

A cosign key's fingerprint is the sha256 of its DER public key. Keyless
(Fulcio certificate and Rekor transparency log) signatures are not verified:
they need services skiff does not contact.

Prefixes match whole '/'-separated segments: example.com/app covers
example.com/app and example.com/app/x, never example.com/apple. An empty
admin file named like a vendor key masks that key.

KEYFILE may be a file or an https:// URL (http:// only with
--insecure-options=http). With --prefix alone, the keys the prefix announces
by appc discovery (ac-discovery-pubkeys meta tags at
https://PREFIX?ac-discovery=1) are fetched; a HOST:PORT prefix says where
to connect, and the keys are trusted for the name without the port.

Before a key is added its fingerprint and user IDs are shown and you are
asked to confirm on the terminal; without a terminal, trust refuses unless
--skip-fingerprint-review is given (check the fingerprint some other way).

--remove FINGERPRINT stops trusting a key for every prefix: admin copies are
deleted, and a vendor key is masked by an empty admin file.`,
		Example: `  skiff trust --prefix=example.com/app ./pubkey.gpg
  skiff trust --prefix=example.com/app --skip-fingerprint-review https://example.com/pubkey.asc
  skiff trust --root ./org-root.gpg
  skiff trust --prefix=example.com/app               # keys announced by appc discovery
  skiff trust --prefix=docker://127.0.0.1:5000/team --cosign ./cosign.pub
  skiff trust --list --format=json
  skiff trust --remove 7ED831AA895E8CD14A40081E78BDB928521FA106`,
		RunE: func(cmd *cobra.Command, args []string) error { return runTrust(cmd, g, f, args) },
	}
	fl := c.Flags()
	fl.StringVar(&f.prefix, "prefix", "", "trust the keys for image names under this prefix (docker://HOST/REPO with --cosign)")
	fl.BoolVar(&f.root, "root", false, "trust the keys for every image")
	fl.BoolVar(&f.cosign, "cosign", false, "the keys are cosign PEM public keys for registry images")
	fl.BoolVar(&f.skipReview, "skip-fingerprint-review", false, "trust without showing the fingerprint and asking (needed without a terminal)")
	fl.BoolVar(&f.list, "list", false, "list the trusted keys")
	fl.StringVar(&f.remove, "remove", "", "stop trusting the key with this fingerprint")
	f.output.register(c, "a line per key")
	return c
}

func runTrust(cmd *cobra.Command, g *globals, f *trustFlags, args []string) error {
	ks := trust.Keystore{LocalDir: g.localConfig, SystemDir: g.systemConfig}
	adding := f.prefix != "" || f.root || f.cosign || f.skipReview || len(args) > 0
	switch {
	case f.list && (adding || f.remove != ""), f.remove != "" && adding:
		return errors.New("trust: --list, --remove and adding keys (--prefix/--root) are separate uses; give one")
	case f.list:
		if err := f.output.check(); err != nil {
			return err
		}
		return listTrust(cmd.OutOrStdout(), ks, f.output)
	case f.remove != "":
		return removeTrust(cmd.OutOrStdout(), ks, f.remove)
	}
	if f.root == (f.prefix != "") {
		return errors.New("trust: give --prefix=NAME or --root (see 'skiff trust --help')")
	}
	in, err := parseInsecure(g.insecure)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	prefix := f.prefix
	switch {
	case f.cosign && !f.root && !strings.HasPrefix(prefix, "docker://"):
		return fmt.Errorf("trust --cosign: cosign keys are for registry images; give --prefix=docker://HOST/REPO, not %q", prefix)
	case !f.cosign && strings.HasPrefix(prefix, "docker://"):
		return fmt.Errorf("trust --prefix=%s: registry images are verified with cosign keys; add --cosign and give a PEM public key", prefix)
	}
	prefix = strings.TrimPrefix(prefix, "docker://")
	if len(args) == 0 {
		if f.root || f.cosign {
			return errors.New("trust: give the KEYFILE or URL of the key (only --prefix=NAME alone discovers keys)")
		}
		var name string
		if args, name, err = discoverPubkeys(ctx, in, prefix); err != nil {
			return err
		}
		prefix = name
	}
	for _, src := range args {
		data, err := readKeySource(ctx, in, src)
		if err != nil {
			return err
		}
		if err := addKey(cmd, ks, f, prefix, src, data); err != nil {
			return err
		}
	}
	return nil
}

// addKey shows the key, asks for confirmation unless told not to, and adds it.
func addKey(cmd *cobra.Command, ks trust.Keystore, f *trustFlags, prefix, src string, data []byte) error {
	where := "prefix " + fmt.Sprintf("%q", prefix)
	if f.root {
		where = "every image (root key)"
	}
	var (
		fpr, review string
		add         func() (string, error)
	)
	if f.cosign {
		k, err := trust.ParseCosignKey(data)
		if err != nil {
			return fmt.Errorf("trust: %s: %w", src, err)
		}
		if !f.root {
			where = "prefix \"docker://" + prefix + "\""
		}
		fpr = strings.ToUpper(k.Fingerprint)
		review = fmt.Sprintf("cosign %s public key, sha256 fingerprint:\n  %s\n", k.Algorithm, spaced(fpr))
		add = func() (string, error) {
			k, err := ks.AddCosign(prefix, f.root, strings.NewReader(string(data)))
			if err != nil {
				return "", err
			}
			return k.Fingerprint, nil
		}
	} else {
		e, err := trust.ReadOpenPGPKey(strings.NewReader(string(data)))
		if err != nil {
			return fmt.Errorf("trust: %s: %w", src, err)
		}
		fpr = strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint))
		review = fmt.Sprintf("OpenPGP key fingerprint:\n  %s\n", spaced(fpr))
		for _, id := range trust.UserIDs(e) {
			review += "  " + id + "\n"
		}
		if trust.Revoked(e) {
			review += "  WARNING: this key is revoked: images it signed will be refused\n"
		}
		add = func() (string, error) { return ks.Add(prefix, f.root, strings.NewReader(string(data))) }
	}
	stderr := cmd.ErrOrStderr()
	fmt.Fprintf(stderr, "Key %s for %s:\n%s", src, where, review)
	if !f.skipReview {
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return fmt.Errorf("trust: refusing to trust key %s for %s without review: stdin is not a terminal; check the fingerprint some other way and pass --skip-fingerprint-review", fpr, where)
		}
		fmt.Fprint(stderr, "Are you sure you want to trust this key (yes/no)? ")
		answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "yes" && a != "y" {
			return fmt.Errorf("trust: key %s not trusted (answered %q)", fpr, strings.TrimSpace(answer))
		}
	}
	got, err := add()
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "trusted key %s for %s\n", strings.ToUpper(got), where)
	return nil
}

// spaced groups a fingerprint by four hex digits, as gpg shows it.
func spaced(fpr string) string {
	var b strings.Builder
	for i := 0; i < len(fpr); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(fpr[i:min(i+4, len(fpr))])
	}
	return b.String()
}

func listTrust(w io.Writer, ks trust.Keystore, o output) error {
	entries, err := ks.List()
	if err != nil {
		return err
	}
	if o.isJSON() {
		if entries == nil {
			entries = []trust.Entry{}
		}
		for i := range entries { // as every other output shows them
			entries[i].Fingerprint = strings.ToUpper(entries[i].Fingerprint)
		}
		return o.writeJSON(w, entries)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if !o.noLegend {
		fmt.Fprintln(tw, "PREFIX\tKIND\tFINGERPRINT\tORIGIN\tIDENTITY")
	}
	for _, e := range entries {
		origin := e.Origin
		if e.Masked {
			origin += " (masked)"
		}
		prefix := e.DisplayPrefix()
		if e.Root {
			prefix = "(root)"
		}
		id := strings.Join(e.UserIDs, ", ")
		if e.Kind == trust.KindCosign {
			id = e.Algorithm
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", prefix, e.Kind, strings.ToUpper(e.Fingerprint), origin, id)
	}
	return tw.Flush()
}

func removeTrust(w io.Writer, ks trust.Keystore, fpr string) error {
	done, err := ks.Remove(fpr)
	for _, r := range done {
		verb := "removed"
		if r.MaskedVendor {
			verb = "masked vendor"
		}
		fmt.Fprintf(w, "%s %s key %s for %s (%s)\n", verb, r.Kind, strings.ToUpper(r.Fingerprint), r.DisplayPrefix(), r.Path)
	}
	if errors.Is(err, trust.ErrNoSuchKey) {
		return fmt.Errorf("trust --remove: %w; see 'skiff trust --list'", err)
	}
	return err
}

// keyClient fetches keys and discovery pages: https only unless
// --insecure-options=http, certificates checked unless tls.
func keyClient(in insecure) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: in.skips("tls")} //nolint:gosec // --insecure-options=tls
	return &http.Client{Transport: t, Timeout: time.Minute, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return checkKeyURL(req.URL, in)
	}}
}

func checkKeyURL(u *url.URL, in insecure) error {
	switch {
	case u.Scheme == "https", u.Scheme == "http" && in.skips("http"):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%s: plain HTTP is refused for keys; use https or pass --insecure-options=http", u.Redacted())
	}
	return fmt.Errorf("%s: scheme %q is not supported", u.Redacted(), u.Scheme)
}

// httpGet returns the body of a 200 answer to GET rawURL, bounded.
func httpGet(ctx context.Context, in insecure, rawURL string) ([]byte, int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, 0, err
	}
	if err := checkKeyURL(u, in); err != nil {
		return nil, 0, err
	}
	if u.Scheme == "http" {
		fmt.Fprintf(os.Stderr, "skiff: WARNING: fetching %s over plain HTTP (--insecure-options=http)\n", u.Redacted())
	} else if in.skips("tls") {
		fmt.Fprintf(os.Stderr, "skiff: WARNING: TLS certificate verification skipped for %s (--insecure-options=tls)\n", u.Redacted())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := keyClient(in).Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w%s", err, verify.FetchHint(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyDownload+1))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	if len(data) > maxKeyDownload {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: larger than %d bytes", u.Redacted(), maxKeyDownload)
	}
	return data, resp.StatusCode, nil
}

// readKeySource reads a key from a file or an http(s) URL.
func readKeySource(ctx context.Context, in insecure, src string) ([]byte, error) {
	if strings.HasPrefix(src, "https://") || strings.HasPrefix(src, "http://") {
		data, _, err := httpGet(ctx, in, src)
		if err != nil {
			return nil, fmt.Errorf("trust: fetching key: %w", err)
		}
		return data, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyDownload+1))
	if err != nil {
		return nil, fmt.Errorf("trust: %s: %w", src, err)
	}
	if len(data) > maxKeyDownload {
		return nil, fmt.Errorf("trust: %s: larger than %d bytes", src, maxKeyDownload)
	}
	return data, nil
}

// discoverPubkeys runs appc discovery for prefix (HOST[:PORT]/PATH): it
// reads https://HOST[:PORT]/PATH?ac-discovery=1, then each parent path,
// until a page announces ac-discovery-pubkeys for the name. It returns the
// key URLs and the name (without the port) they are trusted for.
func discoverPubkeys(ctx context.Context, in insecure, prefix string) ([]string, string, error) {
	hostport, path, _ := strings.Cut(prefix, "/")
	host, _, _ := strings.Cut(hostport, ":")
	name := host
	if path != "" {
		name += "/" + path
	}
	var tried []string
	for p := "/" + path; ; p = filepath.Dir(p) {
		u := "https://" + hostport + strings.TrimSuffix(p, "/") + "?ac-discovery=1"
		if p == "/" {
			u = "https://" + hostport + "/?ac-discovery=1"
		}
		tried = append(tried, u)
		page, code, err := httpGet(ctx, in, u)
		if err != nil && code/100 != 4 {
			return nil, "", fmt.Errorf("trust: discovering keys for %q: %w", name, err)
		}
		metas, _ := appc.ParseMeta(strings.NewReader(string(page)))
		if _, keys := appc.Best(metas, name, nil); len(keys) > 0 {
			return keys, name, nil
		}
		if p == "/" {
			break
		}
	}
	return nil, "", fmt.Errorf("trust: no ac-discovery-pubkeys for %q at %s; give the key file or URL", name, strings.Join(tried, ", "))
}
