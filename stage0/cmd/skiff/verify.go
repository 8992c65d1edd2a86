package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/trust"
)

// verify checks the detached OpenPGP signature beside an image file.
func verify(g *globals, ref reference.Reference, image string) error {
	fix := fmt.Sprintf("sign it (%s) and trust the signer's armored public key by saving it as %s/FINGERPRINT, or pass --insecure-options=image",
		trust.SignaturePathFor(ref.Path), filepath.Join(g.localConfig, "trustedkeys", "prefix.d", trustName(ref)))
	if ref.Transport != reference.OCIArchive {
		return fmt.Errorf("image %q: signature verification for %s images is not supported yet; %s", image, ref.Transport, "pass --insecure-options=image to run it unverified")
	}
	sigPath := trust.SignaturePathFor(ref.Path)
	sig, err := os.Open(sigPath)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image %q is not signed (no %s); %s", image, sigPath, fix)
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
	if _, err := ks.VerifyDetached(trustName(ref), content, sig); err != nil {
		return fmt.Errorf("%w; %s", err, fix)
	}
	return nil
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
