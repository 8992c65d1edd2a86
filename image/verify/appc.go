package verify

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/skiff-project/skiff/image/appc"
	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
)

// fetchAppc brings an appc image into the store: it opens the .aci file (or
// downloads the URL, or discovers the name), verifies the signature for the
// name in the image's own manifest unless Insecure, and imports the
// verified bytes. Under --pull-policy=new a URL or a name already in the
// store is not fetched again (a file always is: it is cheap and may have
// changed), if Admit admits it.
func (p Policy) fetchAppc(ctx context.Context, s *store.Store, ref reference.Reference, req Request, opts fetch.Options) (*store.Image, error) {
	image := req.Image
	if opts.Pull == fetch.PullNever || opts.Pull == fetch.PullNew && ref.Transport != reference.ACI {
		if img, err := p.stored(s, ref, req, opts.Pull); img != nil || err != nil {
			return img, err
		}
	}
	p.warnTransport(ref, image, opts)
	release, err := s.Hold() // image gc keeps away from the download and the unrecorded layer
	if err != nil {
		return nil, err
	}
	defer release()
	aopts := appc.Options{TmpDir: appc.TmpDir(s), InsecureTLS: opts.InsecureTLS, AllowHTTP: opts.InsecureHTTP}
	src, err := appc.Open(ctx, ref, aopts)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w%s", image, err, FetchHint(err))
	}
	defer src.Close()
	if req.Signature != "" {
		if src.Signature, err = readSignatureFile(req.Signature); err != nil {
			return nil, fmt.Errorf("image %q: --signature: %w", image, err)
		}
		src.SignatureOrigin = req.Signature
	}
	if p.Insecure {
		p.warn("signature verification of image %q skipped (--insecure-options=image)", image)
		src.Verification = store.Verification{Kind: store.Unverified}
	} else if src.Verification, err = p.verifyAppc(src, image); err != nil {
		return nil, err
	}
	img, err := appc.Import(ctx, s, src)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", image, err)
	}
	return img, nil
}

// FetchHint names the insecure option that would get past a refusal.
func FetchHint(err error) string {
	var cert *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cert):
		return "; if you trust this server anyway, pass --insecure-options=tls"
	case errors.Is(err, appc.ErrPlainHTTP):
		return "; pass --insecure-options=http to allow it"
	}
	return ""
}

// verifyAppc checks an appc image's signature for the name in its manifest
// and returns the record of it.
func (p Policy) verifyAppc(src *appc.Source, image string) (store.Verification, error) {
	name := src.Manifest.Name
	var signer *openpgp.Entity
	err := src.Verify(func(name string, signed, sig io.Reader) error {
		var err error
		signer, err = p.Keys.VerifyDetached(name, signed, sig)
		return err
	})
	switch {
	case err == nil:
		return store.Verification{Kind: store.VerifiedOpenPGP, Key: hex.EncodeToString(signer.PrimaryKey.Fingerprint), Signed: name}, nil
	case errors.Is(err, trust.ErrUnsigned):
		return store.Verification{}, fmt.Errorf("image %q is not signed (no %s); %s", image, src.SignatureOrigin, p.openpgpFix(err, []string{name}, src.PubKeys))
	}
	return store.Verification{}, fmt.Errorf("%s: %w; %s", image, err, p.openpgpFix(err, []string{name}, src.PubKeys))
}
