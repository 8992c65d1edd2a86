package trust

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

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

// VerifyDetached checks that signature, a detached OpenPGP signature (armored
// or binary), is a valid signature over the content read from signed, made by
// a key trusted for imageName that is neither expired nor revoked. It returns
// the signing key's entity (the primary key, also when a subkey signed).
// signed is read to the end only once the signature parsed and a trusted key
// was found for it.
func (k Keystore) VerifyDetached(imageName string, signed io.Reader, signature io.Reader) (*openpgp.Entity, error) {
	fail := func(kind error, cause error, format string, args ...any) error {
		return &verifyError{image: imageName, detail: fmt.Sprintf(format, args...), kind: kind, cause: cause}
	}

	keys, err := k.KeysFor(imageName)
	if err != nil {
		return nil, err
	}
	body, issuer, sigErr := readSignature(signature)
	if len(keys) == 0 {
		if sigErr == nil {
			if prefix := k.openpgpSignerElsewhere(issuerID(body)); prefix != "" {
				return nil, fail(ErrUntrustedSigner, nil, "signed by key %s which is trusted only for %s, not for %q", issuer, prefix, imageName)
			}
		}
		return nil, fail(ErrNoTrustedKeys, nil, "no key is trusted for %q", imageName)
	}
	if err := sigErr; err != nil {
		var ioErr *readError
		if errors.As(err, &ioErr) {
			return nil, fmt.Errorf("image %q: reading signature: %w", imageName, ioErr.err)
		}
		return nil, fail(ErrBadSignature, err, "malformed signature: %v", err)
	}

	src := &errReader{r: signed}
	_, signer, err := openpgp.VerifyDetachedSignature(keys, src, bytes.NewReader(body), nil)
	if src.err != nil {
		return nil, fmt.Errorf("image %q: reading signed content: %w", imageName, src.err)
	}
	key := issuer
	if signer != nil {
		key = fingerprintString(signer.PrimaryKey.Fingerprint)
	}
	switch {
	case err == nil:
		return signer, nil
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		if len(keys.KeysById(issuerID(body))) > 0 {
			return nil, fail(ErrUntrustedSigner, err, "signed by key %s which is trusted for %q but not usable for signing", key, imageName)
		}
		if prefix := k.openpgpSignerElsewhere(issuerID(body)); prefix != "" {
			return nil, fail(ErrUntrustedSigner, err, "signed by key %s which is trusted only for %s, not for %q", key, prefix, imageName)
		}
		return nil, fail(ErrUntrustedSigner, err, "signed by key %s which is not trusted for %q", key, imageName)
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return nil, fail(ErrKeyRevoked, err, "signed by key %s which has been revoked", key)
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return nil, fail(ErrKeyExpired, err, "signed by key %s which has expired", key)
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return nil, fail(ErrBadSignature, err, "signature by key %s has expired", key)
	default:
		var sigErr pgperrors.SignatureError
		if errors.As(err, &sigErr) && signer == nil {
			return nil, fail(ErrBadSignature, err, "signature by key %s does not match the content (tampered or corrupt): %v", key, err)
		}
		return nil, fail(ErrBadSignature, err, "signature by key %s not accepted: %v", key, err)
	}
}

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
		if sig.SigType != packet.SigTypeBinary && sig.SigType != packet.SigTypeText {
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
