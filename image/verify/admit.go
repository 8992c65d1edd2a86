package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/image/trust"
)

// ErrNotVerified is matched by Admit's refusals: the stored image's record
// does not show a verification the policy accepts for the name.
var ErrNotVerified = errors.New("not verified for this name")

// cosignEvidence is what a cosign verification keeps in the record to be
// checked again: the signatures and the manifest digests they may cover.
type cosignEvidence struct {
	Digests    []digest.Digest         `json:"digests"` // top first; the last is the image
	Signatures []trust.CosignSignature `json:"signatures"`
}

// Bounds on the signatures kept per record.
const (
	maxKeptSignatures = 16
	maxKeptPayload    = 64 << 10
)

func cosignRecord(key *trust.CosignKey, repo string, digests []digest.Digest, sigs []trust.CosignSignature) store.Verification {
	ev := cosignEvidence{Digests: digests}
	size := 0
	for _, s := range sigs {
		if s.Certificate || len(ev.Signatures) == maxKeptSignatures || size+len(s.Payload) > maxKeptPayload {
			continue
		}
		size += len(s.Payload)
		ev.Signatures = append(ev.Signatures, s)
	}
	data, _ := json.Marshal(ev)
	return store.Verification{Kind: store.VerifiedCosign, Key: key.Fingerprint, Signed: repo, Evidence: data}
}

// Admit lets a stored image be used under name (a canonical image
// reference) only if the record of that name shows a verification the
// current keys accept for it, or, for a registry image, if any signature
// stored with the image verifies again for it. With Insecure it admits
// everything. It is the store.Gate every front end hands to the store.
func (p Policy) Admit(img *store.Image, name string) error {
	if p.Insecure {
		return nil
	}
	ref, err := reference.Parse(name)
	if err != nil {
		return p.notVerified(name, "its name is not an image reference")
	}
	v, ok := img.Verified[name]
	if ok && p.satisfies(img, ref, v) {
		return nil
	}
	if ref.Transport == reference.Docker {
		for _, other := range img.Verified {
			if other.Kind == store.VerifiedCosign && p.satisfies(img, ref, other) {
				return nil
			}
		}
	}
	switch {
	case !ok:
		return p.notVerified(name, "the store has no record of its verification")
	case v.Kind == store.Unverified:
		return p.notVerified(name, "it was fetched without verification (--insecure-options=image)")
	case v.Kind == store.VerifiedCosign && ref.Transport == reference.Docker:
		return p.notVerified(name, fmt.Sprintf("its stored cosign signature (key %s) no longer verifies with the keys trusted for %s", strings.ToUpper(v.Key), ref.Host+"/"+ref.Repo))
	case v.Kind == store.VerifiedOpenPGP && ref.Transport != reference.Docker:
		return p.notVerified(name, fmt.Sprintf("it was verified by key %s, which is no longer trusted for %q", strings.ToUpper(v.Key), v.Signed))
	}
	return p.notVerified(name, fmt.Sprintf("it was verified by a %s signature, which does not vouch for this name", v.Kind))
}

func (p Policy) notVerified(name, why string) error {
	return fmt.Errorf("image %q in the store: %w: %s; fetch it again verified ('skiff fetch %s'), or pass --insecure-options=image to use it unverified",
		name, ErrNotVerified, why, name)
}

// satisfies reports whether the record v shows a verification that the
// current keys accept for the image under ref.
func (p Policy) satisfies(img *store.Image, ref reference.Reference, v store.Verification) bool {
	switch v.Kind {
	case store.VerifiedCosign:
		if ref.Transport != reference.Docker {
			return false
		}
		var ev cosignEvidence
		if json.Unmarshal(v.Evidence, &ev) != nil || len(ev.Digests) == 0 || ev.Digests[len(ev.Digests)-1] != img.ID {
			return false
		}
		_, err := p.Keys.VerifyCosign(ref.String(), ref.Host+"/"+ref.Repo, ev.Digests, ev.Signatures)
		return err == nil
	case store.VerifiedOpenPGP:
		switch ref.Transport {
		case reference.Docker, reference.OCI:
			return false
		case reference.AppcName:
			if v.Signed != ref.Name {
				return false
			}
		}
		ok, err := p.Keys.Trusts(v.Key, v.Signed)
		return err == nil && ok
	}
	return false
}
