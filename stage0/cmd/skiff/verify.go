package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-project/skiff/image/appc"
	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
)

// verify checks the detached OpenPGP signature beside an image file
// (oci-archive:, docker-archive:) before it is imported.
func verify(g *globals, ref reference.Reference, image, sigFile string) error {
	name := trustName(ref)
	if ref.Transport != reference.OCIArchive && ref.Transport != reference.DockerArchive {
		return fmt.Errorf("image %q: signature verification for %s images is not supported (sign an oci-archive: or docker-archive: file instead); pass --insecure-options=image to run it unverified", image, ref.Transport)
	}
	sigPath := trust.SignaturePathFor(ref.Path)
	if sigFile != "" {
		sigPath = sigFile
	}
	sig, err := os.Open(sigPath)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image %q is not signed (no %s); %s", image, sigPath, openpgpFix(g, trust.ErrUnsigned, name, nil))
	}
	if err != nil {
		return fmt.Errorf("image %q: signature: %w", image, err)
	}
	defer sig.Close()
	content, err := os.Open(ref.Path)
	if err != nil {
		return fmt.Errorf("image %q: %w", image, err)
	}
	defer content.Close()
	ks := trust.Keystore{LocalDir: g.localConfig, SystemDir: g.systemConfig}
	if _, err := ks.VerifyDetached(name, content, sig); err != nil {
		return fmt.Errorf("%s: %w; %s", image, err, openpgpFix(g, err, name, nil))
	}
	return nil
}

// openpgpFix says what to do about a refused OpenPGP-signed image whose
// signer must be trusted for name; offered lists keys a publisher offers.
func openpgpFix(g *globals, err error, name string, offered []string) string {
	trustCmd := fmt.Sprintf("'skiff trust --prefix=%s KEYFILE' (it is saved in %s/)", name,
		filepath.Join(g.localConfig, "trustedkeys", "prefix.d", name))
	if len(offered) > 0 {
		trustCmd += " (the publisher offers keys at " + strings.Join(offered, ", ") + ")"
	}
	switch {
	case errors.Is(err, trust.ErrUnsigned):
		return "sign it with 'gpg --armor --detach-sign' and trust the key with " + trustCmd + ", or pass --insecure-options=image"
	case errors.Is(err, trust.ErrNoTrustedKeys), errors.Is(err, trust.ErrUntrustedSigner):
		return "if you trust the signer, trust its public key with " + trustCmd + ", or pass --insecure-options=image"
	case errors.Is(err, trust.ErrKeyExpired), errors.Is(err, trust.ErrKeyRevoked):
		return "get the image signed again by a valid key and trust that key with " + trustCmd + ", or pass --insecure-options=image"
	}
	return "fetch the image and its signature again from a source you trust, or pass --insecure-options=image"
}

// trustName is the name an image file's signer must be trusted for: its ref
// name when one is asked for, else the file's name without extensions (root
// keys are trusted for every name).
func trustName(ref reference.Reference) string {
	if ref.Ref != "" {
		return ref.Ref
	}
	base := filepath.Base(ref.Path)
	if i := strings.Index(base, "."); i > 0 {
		base = base[:i]
	}
	return base
}

// isAppc reports whether images of transport t are appc images, which are
// fetched, verified and imported by fetchAppc.
func isAppc(t reference.Transport) bool {
	return t == reference.ACI || t == reference.HTTPS || t == reference.AppcName
}

// fetchAppc brings an appc image into the store: it opens the .aci file (or
// downloads the URL, or discovers the name), verifies the signature for the
// name in the image's own manifest unless --insecure-options=image, and
// imports the verified bytes.
// Under --pull-policy=new a URL or a name already in the store is not
// fetched again (a file always is: it is cheap and may have changed).
func fetchAppc(ctx context.Context, g *globals, in insecure, pull fetch.PullPolicy, s *store.Store, ref reference.Reference, image, sigFile string) (*store.Image, error) {
	if pull == fetch.PullNever || pull == fetch.PullNew && ref.Transport != reference.ACI {
		img, err := s.Lookup(ref.String())
		if err == nil {
			return img, nil
		}
		if pull == fetch.PullNever {
			return nil, fmt.Errorf("image %q: %w and --pull-policy=never; fetch it first ('skiff fetch %s')", image, fetch.ErrNotInStore, image)
		}
	}
	if ref.Transport != reference.ACI {
		if in.skips("tls") {
			fmt.Fprintf(os.Stderr, "skiff: WARNING: TLS certificate verification skipped for image %q (--insecure-options=tls)\n", image)
		}
		if in.skips("http") {
			fmt.Fprintf(os.Stderr, "skiff: WARNING: plain HTTP allowed for image %q (--insecure-options=http)\n", image)
		}
	}
	release, err := s.Hold() // image gc keeps away from the download and the unrecorded layer
	if err != nil {
		return nil, err
	}
	defer release()
	opts := appc.Options{TmpDir: appc.TmpDir(s), InsecureTLS: in.skips("tls"), AllowHTTP: in.skips("http")}
	src, err := appc.Open(ctx, ref, opts)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w%s", image, err, fetchHint(err))
	}
	if sigFile != "" {
		if src.Signature, err = os.ReadFile(sigFile); err != nil {
			return nil, fmt.Errorf("image %q: --signature: %w", image, err)
		}
		src.SignatureOrigin = sigFile
	}
	defer src.Close()
	if in.skips("image") {
		fmt.Fprintf(os.Stderr, "skiff: WARNING: signature verification of image %q skipped (--insecure-options=image)\n", image)
	} else if err := verifyAppc(g, src, image); err != nil {
		return nil, err
	}
	img, err := appc.Import(ctx, s, src)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", image, err)
	}
	_ = s.Touch(img.ID)
	return img, nil
}

// fetchHint names the insecure option that would get past a refusal.
func fetchHint(err error) string {
	var cert *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cert):
		return "; if you trust this server anyway, pass --insecure-options=tls"
	case errors.Is(err, appc.ErrPlainHTTP):
		return "; pass --insecure-options=http to allow it"
	}
	return ""
}

// verifyAppc checks an appc image's signature for the name in its manifest.
func verifyAppc(g *globals, src *appc.Source, image string) error {
	name := src.Manifest.Name
	ks := trust.Keystore{LocalDir: g.localConfig, SystemDir: g.systemConfig}
	err := src.Verify(func(name string, signed, sig io.Reader) error {
		_, err := ks.VerifyDetached(name, signed, sig)
		return err
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, trust.ErrUnsigned):
		return fmt.Errorf("image %q is not signed (no %s); %s", image, src.SignatureOrigin, openpgpFix(g, err, name, src.PubKeys))
	}
	return fmt.Errorf("%s: %w; %s", image, err, openpgpFix(g, err, name, src.PubKeys))
}
