package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// Kinds of Verification.
const (
	VerifiedOpenPGP = "openpgp"  // a detached OpenPGP signature over the image file
	VerifiedCosign  = "cosign"   // a cosign signature over the registry manifest
	Unverified      = "insecure" // nothing was checked (--insecure-options=image, a stage1 image)
)

// Verification is how an image came to be stored under one name: what
// checked it, by which key, for which signed name. The store keeps one per
// name in the image's record and gives it back in Image.Verified; what a
// record must show for the image to be used is the Gate's business
// (image/verify).
type Verification struct {
	Kind   string    `json:"kind"`             // VerifiedOpenPGP, VerifiedCosign or Unverified
	Key    string    `json:"key,omitempty"`    // the signing key's fingerprint, lowercase hex
	Signed string    `json:"signed,omitempty"` // the name the signature vouched for, the key was trusted for
	Time   time.Time `json:"time"`
	// Evidence is what the verifier keeps to check the image again later
	// (cosign: the signatures and the manifest digests they covered);
	// opaque to the store.
	Evidence json.RawMessage `json:"evidence,omitempty"`
}

// A Gate decides whether a stored image may be handed out, under the name it
// was asked for, to be run. image/verify's Policy is the gate every front end
// uses; stage1 images, which are trusted as installed, use TrustInstalled.
type Gate interface {
	Admit(img *Image, name string) error
}

// trustInstalled admits every image.
type trustInstalled struct{}

func (trustInstalled) Admit(*Image, string) error { return nil }

// TrustInstalled is the gate for images the administrator installed and
// that are not verified (the stage1 images): it admits every image.
var TrustInstalled Gate = trustInstalled{}

// Use returns the image stored under name (looked up as Lookup does) if gate
// admits it under that name. It is how fetchers hand out a stored image to
// be run: a stored image is never used without its gate's consent.
func (s *Store) Use(name string, gate Gate) (*Image, error) {
	if gate == nil {
		return nil, fmt.Errorf("image %q: no verification policy given", name)
	}
	img, err := s.Lookup(name)
	if err != nil {
		return nil, err
	}
	if err := gate.Admit(img, name); err != nil {
		return nil, err
	}
	return img, nil
}
