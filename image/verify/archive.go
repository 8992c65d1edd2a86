package verify

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/skiff-project/skiff/image/fetch"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
)

// maxSignature bounds a detached signature file; real ones are a few
// hundred bytes.
const maxSignature = 64 << 10

// fetchArchive verifies an oci-archive: or docker-archive: file and
// imports it from the bytes verified: the file is opened once and read once
// through the signature check (fetch.ReadArchive); the signer's key must be
// trusted for the names the verified content gives the image.
func (p Policy) fetchArchive(ctx context.Context, s *store.Store, ref reference.Reference, req Request, opts fetch.Options) (*store.Image, error) {
	image := req.Image
	if ref.Transport != reference.OCIArchive && ref.Transport != reference.DockerArchive {
		return nil, fmt.Errorf("image %q: signature verification for %s images is not supported (sign an oci-archive: or docker-archive: file instead); pass --insecure-options=image to run it unverified", image, ref.Transport)
	}
	if opts.Pull == fetch.PullNever {
		return p.stored(s, ref, req, opts.Pull)
	}
	sigPath := trust.SignaturePathFor(ref.Path)
	if req.Signature != "" {
		sigPath = req.Signature
	}
	sig, err := readSignatureFile(sigPath)
	if errors.Is(err, os.ErrNotExist) {
		names, _ := fetch.PeekArchiveNames(ref)
		return nil, fmt.Errorf("image %q is not signed (no %s); %s", image, sigPath, p.openpgpFix(trust.ErrUnsigned, trustNames(names), nil))
	}
	if err != nil {
		return nil, fmt.Errorf("image %q: signature: %w", image, err)
	}
	var signer *openpgp.Entity
	a, checkErr := fetch.ReadArchive(ref, func(content io.Reader) error {
		var err error
		signer, err = p.Keys.VerifySignature(image, content, bytes.NewReader(sig))
		return err
	})
	if a == nil {
		return nil, checkErr
	}
	defer a.Close()
	names, namesErr := a.Names()
	tn := trustNames(names)
	if checkErr != nil {
		var unknown *trust.UnknownSignerError
		if errors.As(checkErr, &unknown) {
			checkErr = p.Keys.ExplainUnknown(unknown, tn)
		}
		return nil, fmt.Errorf("%w; %s", checkErr, p.openpgpFix(checkErr, tn, nil))
	}
	if namesErr != nil {
		return nil, namesErr
	}
	if err := p.Keys.Scope(image, signer, tn); err != nil {
		return nil, fmt.Errorf("%w; %s", err, p.openpgpFix(err, tn, nil))
	}
	v := store.Verification{Kind: store.VerifiedOpenPGP, Key: hex.EncodeToString(signer.PrimaryKey.Fingerprint)}
	if len(tn) > 0 {
		v.Signed = tn[0]
	}
	return a.Import(ctx, s, v)
}

// trustNames are the names a signer must be trusted for, given the names
// an archive gives its image (tags and digests dropped, each once).
func trustNames(names []string) []string {
	var out []string
	for _, n := range names {
		if t := trust.ImageName(n); t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func readSignatureFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSignature+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSignature {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSignature)
	}
	return data, nil
}
