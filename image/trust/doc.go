// Package trust decides whether an image file is signed by a key trusted for
// that image's name. Verification is on by default: every image skiff fetches
// as a file or URL comes with an OpenPGP detached signature (FILE.asc, see
// SignaturePathFor), and Keystore.VerifyDetached accepts it only if a key
// trusted for the image name made it.
//
// # Keystore layout
//
// Keys live in two trees with rkt's layout, one per configuration directory:
//
//	LOCAL_CONFIG/trustedkeys/root.d/FINGERPRINT            admin, trusted for every image
//	LOCAL_CONFIG/trustedkeys/prefix.d/PREFIX/FINGERPRINT   admin, trusted for names under PREFIX
//	SYSTEM_CONFIG/trustedkeys/...                          vendor, same layout
//
// LOCAL_CONFIG is /etc/skiff and SYSTEM_CONFIG is /usr/lib/skiff by default;
// callers pass both (Keystore). A file holds one armored or binary OpenPGP
// public key and is named by that key's lowercase hex fingerprint. PREFIX is
// an image-name prefix whose '/'-separated segments are nested directories
// (prefix.d/example.com/app/FINGERPRINT). Prefixes match whole segments:
// "example.com/app" covers "example.com/app" and "example.com/app/x", never
// "example.com/apple".
//
// An empty admin file masks the vendor key with the same fingerprint: when the
// keys for a name are gathered, a vendor key is dropped if an empty admin file
// of that fingerprint sits in root.d or in any prefix directory that applies
// to the name. Hidden files (the temporaries of atomic writes) are ignored;
// any other file whose name is not a fingerprint, or whose key does not have
// the fingerprint it is named by, is an error rather than silently skipped.
//
// # Failures and their fixes
//
// Every failure names the image and is one of the sentinel errors below,
// checkable with errors.Is:
//
//   - ErrUnsigned: no signature next to the image (callers return it).
//   - ErrNoTrustedKeys: no key at all is trusted for the name.
//   - ErrUntrustedSigner: the signature is by a key not trusted for the name,
//     including a key trusted only for another prefix.
//   - ErrBadSignature: the content does not match the signature, or the
//     signature is malformed or expired.
//   - ErrKeyExpired, ErrKeyRevoked: the signing key is trusted but has expired
//     or been revoked; a new signature by a valid key is needed.
//
// For the first three the user's fix is to trust the publisher's key for the
// name, which writes it to LOCAL_CONFIG/trustedkeys/prefix.d/NAME/:
//
//	skiff trust --prefix=NAME KEYFILE
//
// or, knowingly and loudly, to skip verification with
// --insecure-options=image. Messages for users are composed by the caller
// (stage0's main), not here.
package trust
