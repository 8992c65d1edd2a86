// Package trust decides whether an image is signed by a key trusted for
// that image's name, and keeps those keys. Verification is on by default:
// every image skiff fetches as a file or URL comes with an OpenPGP detached
// signature (FILE.asc, see SignaturePathFor), and Keystore.VerifyDetached
// accepts it only if a key trusted for the image name made it; a registry
// image comes with a cosign signature, which Keystore.VerifyCosign checks.
//
// An OpenPGP signature is checked before anything is said about the key's
// scope: VerifySignature checks it against every trusted key, and Scope then
// holds the signer against the names the signed content gives the image (an
// archive's own ref name, an appc manifest's name; with none, root keys
// only); VerifyDetached is the two in that order. Signatures must be binary
// document signatures: a text-mode one (gpg --textmode, --clearsign) signs
// the content with its line endings canonicalised, so it also holds for
// other bytes, and is refused. Which names and records are required is
// image/verify's policy; this package checks signatures and keeps keys.
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
// # Cosign keys (registry images)
//
// Registry images (docker://HOST/REPO) are verified with cosign key
// signatures instead (cosign.go). Their public keys (PEM "PUBLIC KEY":
// ECDSA P-256, Ed25519, RSA >= 2048 bits) live in a tree of the same shape
// beside rkt's, so that the OpenPGP tree never meets a file it cannot parse:
//
//	LOCAL_CONFIG/trustedkeys/cosign.d/root.d/FINGERPRINT              every registry image
//	LOCAL_CONFIG/trustedkeys/cosign.d/prefix.d/HOST/REPO/FINGERPRINT  images of HOST/REPO...
//	SYSTEM_CONFIG/trustedkeys/cosign.d/...                            vendor, same layout
//
// FINGERPRINT is the lowercase hex sha256 of the key's DER encoding; the
// file holds the key as canonical PEM. PREFIX is HOST[:PORT]/REPO as skiff
// canonicalises references (docker.io/library/x), matched segment by segment,
// and masking by empty admin files works as for OpenPGP keys.
//
// A signature is found at the tag sha256-HEX.sig of the signed manifest
// (for a multi-platform image: of the index or of the platform manifest);
// each layer of that image is a simple-signing payload with its base64
// signature in the dev.cosignproject.cosign/signature annotation.
// VerifyCosign accepts an image when one payload verifies with a key trusted
// for HOST/REPO, names that repository (docker-reference) and the manifest
// digest being imported. Keyless signatures (a Fulcio certificate, a Rekor
// entry) are not verified: they need services an offline runtime cannot
// reach; such a signature is refused unless a trusted key also signed.
// Neither are OCI 1.1 referrers or sigstore bundles: only the .sig tag.
//
// List and Remove see both kinds; Remove deletes admin files and masks a
// vendor key with an empty admin file where the vendor file is.
//
// # Failures and their fixes
//
// Every failure names the image and is one of the sentinel errors below,
// checkable with errors.Is:
//
//   - ErrUnsigned: no signature next to the image (callers return it).
//   - ErrNoTrustedKeys: no key at all is trusted for the name.
//   - ErrUntrustedSigner: the signature is by a key not trusted for the name,
//     including a key trusted only for another prefix (the message names it).
//   - ErrBadSignature: the content does not match the signature (for cosign:
//     the signed digest is not the manifest's), or the signature is malformed
//     or expired.
//   - ErrKeyExpired, ErrKeyRevoked: the signing key is trusted but has expired
//     or been revoked; a new signature by a valid key is needed.
//   - ErrNameMismatch: a valid cosign signature by a trusted key vouches for
//     another repository (a signed image moved under another name).
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
