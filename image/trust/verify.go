package trust

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The ways verification fails. Errors returned by VerifyDetached match exactly
// one of them with errors.Is (or none, for I/O errors reading the content or
// the keystore) and say which image and, where known, which key.
var (
	// ErrUnsigned means the image has no signature. VerifyDetached never
	// returns it: callers do, when SignaturePathFor(file) does not exist.
	ErrUnsigned = errors.New("image is not signed")
	// ErrNoTrustedKeys means no key at all is trusted for the image name.
	ErrNoTrustedKeys = errors.New("no keys are trusted for the image")
	// ErrUntrustedSigner means the signature was made by a key that is not
	// trusted for the image name (it may be trusted for another prefix).
	ErrUntrustedSigner = errors.New("image signed by an untrusted key")
	// ErrBadSignature means the content does not match the signature, or the
	// signature is malformed, unsupported or expired.
	ErrBadSignature = errors.New("bad image signature")
	// ErrKeyExpired means a trusted key made the signature but has expired.
	ErrKeyExpired = errors.New("signing key expired")
	// ErrKeyRevoked means a trusted key made the signature but was revoked.
	ErrKeyRevoked = errors.New("signing key revoked")
)

// maxSignatureSize bounds how much of a signature is read; a detached
// signature is a few hundred bytes.
const maxSignatureSize = 64 << 10

// SignaturePathFor returns where the detached signature of file is expected.
func SignaturePathFor(file string) string { return file + ".asc" }

// verifyError carries a sentinel (kind) and, optionally, the underlying
// go-crypto error; its text is "image NAME: DETAIL".
type verifyError struct {
	image  string
	detail string
	kind   error
	cause  error
}

func (e *verifyError) Error() string { return fmt.Sprintf("image %q: %s", e.image, e.detail) }

func (e *verifyError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// VerifyDetached checks that signature, a detached binary OpenPGP
// signature (armored or not), is a valid signature over the content read
// from signed, made by a key trusted for imageName that is neither expired
// nor revoked. It returns the signing key's entity (the primary key, also
// when a subkey signed). The signature is checked first, against every
// trusted key (VerifySignature); only a valid one is then held against the
// key's scope (Scope), so that tampered content is reported as such and
// never as a key trusted for another name.
func (k Keystore) VerifyDetached(imageName string, signed io.Reader, signature io.Reader) (*openpgp.Entity, error) {
	signer, err := k.VerifySignature(imageName, signed, signature)
	var unknown *UnknownSignerError
	if errors.As(err, &unknown) {
		return nil, k.ExplainUnknown(unknown, []string{imageName})
	}
	if err != nil {
		return nil, err
	}
	if err := k.Scope(imageName, signer, []string{imageName}); err != nil {
		return nil, err
	}
	return signer, nil
}

// UnknownSignerError is VerifySignature's error for a signature that no
// trusted key made (matches ErrUntrustedSigner). ExplainUnknown restates it
// for the names the image has.
type UnknownSignerError struct {
	Image  string // as VerifySignature was told
	Issuer string // the issuer's fingerprint or key ID, for messages
	id     uint64
	cause  error
}

func (e *UnknownSignerError) Error() string {
	return fmt.Sprintf("image %q: signed by key %s, which is not trusted", e.Image, e.Issuer)
}

func (e *UnknownSignerError) Unwrap() []error { return []error{ErrUntrustedSigner, e.cause} }

// VerifySignature checks that signature, a detached binary OpenPGP
// signature (armored or not), is a valid signature over the content read
// from signed, made by one of the trusted OpenPGP keys, whatever names it is
// trusted for, that is neither expired nor revoked; it returns that key. It
// does not say which names the signer may vouch for: Scope does, for a name
// the signed content gives itself, once the signature is known to be good.
// image names the image in errors. signed is read to the end only once the
// signature parsed and a trusted key made it; a signature no trusted key
// made fails with an *UnknownSignerError.
func (k Keystore) VerifySignature(image string, signed io.Reader, signature io.Reader) (*openpgp.Entity, error) {
	fail := func(kind error, cause error, format string, args ...any) error {
		return &verifyError{image: image, detail: fmt.Sprintf(format, args...), kind: kind, cause: cause}
	}
	body, issuer, err := readSignature(signature)
	if err != nil {
		var ioErr *readError
		if errors.As(err, &ioErr) {
			return nil, fmt.Errorf("image %q: reading signature: %w", image, ioErr.err)
		}
		if errors.Is(err, errTextMode) {
			return nil, fail(ErrBadSignature, err, "signature invalid: %v", err)
		}
		return nil, fail(ErrBadSignature, err, "malformed signature: %v", err)
	}
	keys, err := k.allOpenPGPKeys()
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", image, err)
	}
	src := &errReader{r: signed}
	_, signer, err := openpgp.VerifyDetachedSignature(keys, src, bytes.NewReader(body), nil)
	if src.err != nil {
		return nil, fmt.Errorf("image %q: reading signed content: %w", image, src.err)
	}
	key := issuer
	if signer != nil {
		key = fingerprintString(signer.PrimaryKey.Fingerprint)
	}
	switch {
	case err == nil:
		return signer, nil
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return nil, &UnknownSignerError{Image: image, Issuer: key, id: issuerID(body), cause: err}
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return nil, fail(ErrKeyRevoked, err, "signed by key %s which has been revoked", key)
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return nil, fail(ErrKeyExpired, err, "signed by key %s which has expired", key)
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return nil, fail(ErrBadSignature, err, "signature by key %s has expired", key)
	default:
		var sigErr pgperrors.SignatureError
		if errors.As(err, &sigErr) && signer == nil {
			return nil, fail(ErrBadSignature, err, "signature invalid: the signature by key %s does not match the content (tampered or corrupt): %v", key, err)
		}
		return nil, fail(ErrBadSignature, err, "signature by key %s not accepted: %v", key, err)
	}
}

// ExplainUnknown restates VerifySignature's *UnknownSignerError for the
// names the image has (the first is named): ErrNoTrustedKeys when no key at
// all is trusted for it, else ErrUntrustedSigner.
func (k Keystore) ExplainUnknown(e *UnknownSignerError, names []string) error {
	fail := func(kind error, format string, args ...any) error {
		return &verifyError{image: e.Image, detail: fmt.Sprintf(format, args...), kind: kind, cause: e.cause}
	}
	name := ""
	if len(names) > 0 {
		name = names[0]
	}
	keys, err := k.keysForName(name)
	if err != nil {
		return fmt.Errorf("image %q: %w", e.Image, err)
	}
	if len(keys) == 0 {
		if name == "" {
			return fail(ErrNoTrustedKeys, "no root key is trusted, and the image gives itself no name a prefix key could be trusted for")
		}
		return fail(ErrNoTrustedKeys, "no key is trusted for %q", name)
	}
	if len(keys.KeysById(e.id)) > 0 {
		return fail(ErrUntrustedSigner, "signed by key %s which is trusted for %q but not usable for signing", e.Issuer, name)
	}
	if name == "" {
		return fail(ErrUntrustedSigner, "signed by key %s which is not trusted", e.Issuer)
	}
	return fail(ErrUntrustedSigner, "signed by key %s which is not trusted for %q", e.Issuer, name)
}

// Scope checks that signer, which made a signature VerifySignature
// accepted, is trusted for every name in names: the names the signed
// content gives the image. With no names only a root key may vouch for it.
func (k Keystore) Scope(image string, signer *openpgp.Entity, names []string) error {
	fp := fingerprintString(signer.PrimaryKey.Fingerprint)
	if len(names) == 0 {
		names = []string{""}
	}
	for _, name := range names {
		keys, err := k.keysForName(name)
		if err != nil {
			return fmt.Errorf("image %q: %w", image, err)
		}
		if containsKey(keys, signer) {
			continue
		}
		kind, detail := ErrUntrustedSigner, fmt.Sprintf("signed by key %s which is not trusted for %q", fp, name)
		prefix := k.openpgpSignerElsewhere(signer.PrimaryKey.KeyId)
		switch {
		case name == "":
			detail = fmt.Sprintf("signed by key %s, which is not a root key, and the image gives itself no name a prefix key could be trusted for", fp)
		case prefix != "":
			detail = fmt.Sprintf("signed by key %s which is trusted only for %s, not for %q", fp, prefix, name)
		case len(keys) == 0:
			kind, detail = ErrNoTrustedKeys, fmt.Sprintf("no key is trusted for %q", name)
		}
		return &verifyError{image: image, detail: detail, kind: kind}
	}
	return nil
}

// Trusts reports whether the OpenPGP key with fingerprint (hex) is trusted
// for name ("" for an image without a name: root keys only) and can still
// sign: neither revoked nor expired now. It is how a stored image's record
// of an OpenPGP verification is held against the current keys.
func (k Keystore) Trusts(fingerprint, name string) (bool, error) {
	keys, err := k.keysForName(name)
	if err != nil {
		return false, err
	}
	for _, e := range keys {
		if strings.EqualFold(hex.EncodeToString(e.PrimaryKey.Fingerprint), fingerprint) {
			_, canSign := e.SigningKey(time.Now())
			return canSign && !e.Revoked(time.Now()), nil
		}
	}
	return false, nil
}

// containsKey reports whether keys hold the key e.
func containsKey(keys openpgp.EntityList, e *openpgp.Entity) bool {
	for _, k := range keys {
		if bytes.Equal(k.PrimaryKey.Fingerprint, e.PrimaryKey.Fingerprint) {
			return true
		}
	}
	return false
}

// keysForName is KeysFor, with "" meaning an image without a name, which
// only root keys may vouch for.
func (k Keystore) keysForName(name string) (openpgp.EntityList, error) {
	if name != "" {
		return k.KeysFor(name)
	}
	files, err := k.gatherDirs(openpgpKind, []string{"root.d"})
	if err != nil {
		return nil, err
	}
	return entities(files), nil
}

// allOpenPGPKeys returns every trusted OpenPGP key, whatever it is trusted
// for (masked vendor keys too: Scope refuses them).
func (k Keystore) allOpenPGPKeys() (openpgp.EntityList, error) {
	entries, err := k.List()
	if err != nil {
		return nil, err
	}
	var keys openpgp.EntityList
	for _, e := range entries {
		if ent, ok := e.key.(*openpgp.Entity); ok && e.Kind == KindOpenPGP {
			keys = append(keys, ent)
		}
	}
	return keys, nil
}

// ImageName is the name a signer's key must be trusted for when an image
// calls itself ref: ref without its ":TAG" or "@DIGEST"
// ("example.com/app:v1" is "example.com/app").
func ImageName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

// errTextMode refuses a text-mode signature: it is made over the content
// with its line endings canonicalised, so it also holds for other bytes than
// the ones signed, and images are binary files.
var errTextMode = errors.New("a text-mode signature (gpg --textmode or --clearsign) does not sign an image file exactly; sign it in binary mode ('gpg --detach-sign')")

// readSignature reads a detached signature, removes any armor and checks that
// it holds only signature packets, each naming its issuer. It returns the
// binary packets and the first issuer's fingerprint (or key ID) for messages.
// Errors reading r come back as *readError.
func readSignature(r io.Reader) (body []byte, issuer string, err error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSignatureSize+1))
	if err != nil {
		return nil, "", &readError{err}
	}
	if len(data) > maxSignatureSize {
		return nil, "", fmt.Errorf("larger than %d bytes", maxSignatureSize)
	}
	if isArmored(data) {
		block, err := armor.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, "", fmt.Errorf("bad armor: %w", err)
		}
		if block.Type != openpgp.SignatureType {
			return nil, "", fmt.Errorf("armored %q block, want %q", strings.ToLower(block.Type), strings.ToLower(openpgp.SignatureType))
		}
		if data, err = io.ReadAll(block.Body); err != nil {
			return nil, "", fmt.Errorf("bad armor: %w", err)
		}
	}

	packets := packet.NewReader(bytes.NewReader(data))
	for n := 0; ; n++ {
		p, err := packets.Next()
		if err == io.EOF {
			if n == 0 {
				return nil, "", errors.New("no signature packet")
			}
			return data, issuer, nil
		}
		if err != nil {
			return nil, "", err
		}
		sig, ok := p.(*packet.Signature)
		if !ok {
			return nil, "", fmt.Errorf("a detached signature holds only signature packets, found %T", p)
		}
		if sig.SigType == packet.SigTypeText {
			return nil, "", errTextMode
		}
		if sig.SigType != packet.SigTypeBinary {
			return nil, "", fmt.Errorf("signature of type %#x is not a document signature", uint8(sig.SigType))
		}
		if sig.IssuerKeyId == nil {
			return nil, "", errors.New("signature does not name its issuer")
		}
		if n == 0 {
			issuer = fingerprintString(sig.IssuerFingerprint)
			if issuer == "" {
				issuer = fmt.Sprintf("ID %016X", *sig.IssuerKeyId)
			}
		}
	}
}

// issuerID returns the issuer key ID of the first signature packet in body,
// which readSignature has checked.
func issuerID(body []byte) uint64 {
	p, err := packet.NewReader(bytes.NewReader(body)).Next()
	if sig, ok := p.(*packet.Signature); err == nil && ok && sig.IssuerKeyId != nil {
		return *sig.IssuerKeyId
	}
	return 0
}

func fingerprintString(fp []byte) string { return strings.ToUpper(hex.EncodeToString(fp)) }

// readError marks a failure to read the signature, as opposed to a malformed one.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// errReader remembers the first error its reader returned other than io.EOF,
// so that I/O failures on the content are not mistaken for bad signatures.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// openpgpSignerElsewhere returns the prefix of a trusted OpenPGP key with
// (a subkey of) key ID id, or "".
func (k Keystore) openpgpSignerElsewhere(id uint64) string {
	entries, err := k.List()
	if err != nil || id == 0 {
		return ""
	}
	for _, e := range entries {
		if ent, ok := e.key.(*openpgp.Entity); ok && !e.Masked && len(openpgp.EntityList{ent}.KeysById(id)) > 0 {
			return e.DisplayPrefix()
		}
	}
	return ""
}
