package verify

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/skiff-project/skiff/image/trust"
)

// openpgpFix says what to do about a refused OpenPGP-signed image whose
// signer must be trusted for names (none: an image that does not name
// itself); offered lists keys a publisher offers.
func (p Policy) openpgpFix(err error, names []string, offered []string) string {
	name := "NAME"
	if len(names) > 0 {
		name = names[0]
	}
	trustCmd := fmt.Sprintf("'skiff trust --prefix=%s KEYFILE' (it is saved in %s/)", name,
		filepath.Join(p.Keys.LocalDir, "trustedkeys", "prefix.d", name))
	if len(names) == 0 && !errors.Is(err, trust.ErrUnsigned) {
		trustCmd = "'skiff trust --root KEYFILE' (the image names itself nowhere in the archive, so only a key trusted for every image can vouch for it; or name it, e.g. 'skopeo copy oci-archive:FILE oci-archive:SIGNED.tar:NAME', and sign that)"
	}
	if len(offered) > 0 {
		trustCmd += " (the publisher offers keys at " + strings.Join(offered, ", ") + ")"
	}
	switch {
	case errors.Is(err, trust.ErrUnsigned):
		return "sign it with 'gpg --detach-sign' and trust the key with " + trustCmd + ", or pass --insecure-options=image"
	case errors.Is(err, trust.ErrNoTrustedKeys), errors.Is(err, trust.ErrUntrustedSigner):
		return "if you trust the signer, trust its public key with " + trustCmd + ", or pass --insecure-options=image"
	case errors.Is(err, trust.ErrKeyExpired), errors.Is(err, trust.ErrKeyRevoked):
		return "get the image signed again by a valid key and trust that key with " + trustCmd + ", or pass --insecure-options=image"
	}
	return "fetch the image and its signature again from a source you trust, or pass --insecure-options=image"
}
