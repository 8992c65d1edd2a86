package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrNoSuchKey is returned by Remove when no trusted key has the fingerprint.
var ErrNoSuchKey = errors.New("no trusted key has that fingerprint")

// Origins of a key, as Entry.Origin names them.
const (
	OriginAdmin  = "admin"  // LocalDir: what 'skiff trust' writes
	OriginVendor = "vendor" // SystemDir: shipped with the distribution
)

// Entry is one trusted key file.
type Entry struct {
	Kind        string   `json:"kind"`             // KindOpenPGP or KindCosign
	Root        bool     `json:"root"`             // trusted for every image (of its kind)
	Prefix      string   `json:"prefix,omitempty"` // the image-name prefix; cosign: HOST/REPO without docker://
	Fingerprint string   `json:"fingerprint"`      // lowercase hex
	Origin      string   `json:"origin"`           // OriginAdmin or OriginVendor
	Masked      bool     `json:"masked,omitempty"` // a vendor key masked by an empty admin file
	UserIDs     []string `json:"userIDs,omitempty"`
	Algorithm   string   `json:"algorithm,omitempty"` // cosign keys
	Path        string   `json:"path"`

	key any
}

// DisplayPrefix is the prefix as 'skiff trust' takes it: "docker://HOST/REPO"
// for cosign keys, or a phrase for root keys.
func (e Entry) DisplayPrefix() string {
	switch {
	case e.Root && e.Kind == KindCosign:
		return "every registry image (root)"
	case e.Root:
		return "every image (root)"
	case e.Kind == KindCosign:
		return "docker://" + e.Prefix
	}
	return e.Prefix
}

// List returns every trusted key file of both kinds in both trees (empty
// masking files excepted), admin keys first, then by kind, prefix and
// fingerprint.
func (k Keystore) List() ([]Entry, error) {
	var all []Entry
	for _, origin := range []struct{ dir, name string }{{k.LocalDir, OriginAdmin}, {k.SystemDir, OriginVendor}} {
		if origin.dir == "" {
			continue
		}
		for _, kind := range keyKinds {
			es, err := listTree(origin.dir, kind, origin.name)
			if err != nil {
				return nil, err
			}
			all = append(all, es...)
		}
	}
	masks, err := k.masks()
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].Origin == OriginVendor {
			all[i].Masked = masks[all[i].Kind+"/"+all[i].Fingerprint]
		}
	}
	rank := map[string]int{KindOpenPGP: 0, KindCosign: 1, OriginAdmin: 0, OriginVendor: 1}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		switch {
		case a.Origin != b.Origin:
			return rank[a.Origin] < rank[b.Origin]
		case a.Kind != b.Kind:
			return rank[a.Kind] < rank[b.Kind]
		case a.Root != b.Root:
			return a.Root
		case a.Prefix != b.Prefix:
			return a.Prefix < b.Prefix
		}
		return a.Fingerprint < b.Fingerprint
	})
	return all, nil
}

// masks returns "KIND/FINGERPRINT" of every empty admin file. Masking is
// per directory in KeysFor; for the list, a vendor key is shown masked when
// an empty admin file of its fingerprint exists anywhere in its kind's tree.
func (k Keystore) masks() (map[string]bool, error) {
	m := make(map[string]bool)
	if k.LocalDir == "" {
		return m, nil
	}
	for _, kind := range keyKinds {
		err := walkKeyFiles(k.LocalDir, kind, func(path, rel string, fi fs.FileInfo) error {
			if fi.Size() == 0 {
				m[kind.name+"/"+filepath.Base(path)] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// walkKeyFiles calls fn for every key file under root.d and prefix.d of
// kind's tree in configDir, with its directory relative to the tree.
func walkKeyFiles(configDir string, kind keyKind, fn func(path, rel string, fi fs.FileInfo) error) error {
	tree := treeDir(configDir, kind)
	for _, top := range []string{"root.d", "prefix.d"} {
		err := filepath.WalkDir(filepath.Join(tree, top), func(path string, de fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if strings.HasPrefix(de.Name(), ".") && path != filepath.Join(tree, top) {
				if de.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if de.IsDir() || isDir(de, path) {
				return nil
			}
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(tree, filepath.Dir(path))
			if err != nil {
				return err
			}
			return fn(path, rel, fi)
		})
		if err != nil {
			return fmt.Errorf("reading trusted keys: %w", err)
		}
	}
	return nil
}

func listTree(configDir string, kind keyKind, origin string) ([]Entry, error) {
	var es []Entry
	err := walkKeyFiles(configDir, kind, func(path, rel string, fi fs.FileInfo) error {
		if fi.Size() == 0 {
			return nil
		}
		f, err := readKeyFile(kind, path)
		if err != nil {
			return err
		}
		e := Entry{Kind: kind.name, Fingerprint: f.fingerprint, Origin: origin, Path: path, key: f.key}
		if rel == "root.d" {
			e.Root = true
		} else {
			e.Prefix = filepath.ToSlash(strings.TrimPrefix(rel, "prefix.d"+string(filepath.Separator)))
		}
		switch key := f.key.(type) {
		case *openpgp.Entity:
			e.UserIDs = UserIDs(key)
		case *CosignKey:
			e.Algorithm = key.Algorithm
		}
		es = append(es, e)
		return nil
	})
	return es, err
}

// UserIDs returns the user IDs of an OpenPGP key, sorted.
func UserIDs(e *openpgp.Entity) []string {
	var ids []string
	for id := range e.Identities {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// KeyID returns the 64-bit key ID of an OpenPGP key, uppercase hex.
func KeyID(e *openpgp.Entity) string {
	return fmt.Sprintf("%016X", e.PrimaryKey.KeyId)
}

// Revoked reports whether an OpenPGP key carries a revocation signature.
func Revoked(e *openpgp.Entity) bool {
	for _, r := range e.Revocations {
		if r.SigType == packet.SigTypeKeyRevocation {
			return true
		}
	}
	return false
}

// Removed is what Remove did to one key file.
type Removed struct {
	Entry
	MaskedVendor bool // the key is a vendor key: an empty admin file now masks it
}

// Remove stops trusting the key with fingerprint (hex, any case, spaces
// allowed) for every prefix it is trusted for: admin files are removed, and
// a vendor key is masked by an empty admin file at the same place (vendor
// files are never written to).
func (k Keystore) Remove(fingerprint string) ([]Removed, error) {
	fp := strings.ToLower(strings.ReplaceAll(fingerprint, " ", ""))
	if !isFingerprint(fp) {
		return nil, fmt.Errorf("removing key %q: not a 40 or 64 hex digit fingerprint (see 'skiff trust --list')", fingerprint)
	}
	entries, err := k.List()
	if err != nil {
		return nil, err
	}
	var done []Removed
	for _, e := range entries {
		if e.Fingerprint != fp || e.Masked {
			continue
		}
		switch e.Origin {
		case OriginAdmin:
			if err := os.Remove(e.Path); err != nil {
				return done, fmt.Errorf("removing key %s: %w", strings.ToUpper(fp), err)
			}
			done = append(done, Removed{Entry: e})
		case OriginVendor:
			kind := openpgpKind
			if e.Kind == KindCosign {
				kind = cosignKind
			}
			if err := k.write(kind, e.Prefix, e.Root, fp, nil); err != nil {
				return done, fmt.Errorf("masking vendor key %s: %w", strings.ToUpper(fp), err)
			}
			done = append(done, Removed{Entry: e, MaskedVendor: true})
		}
	}
	if len(done) == 0 {
		return nil, fmt.Errorf("removing key %s: %w", strings.ToUpper(fp), ErrNoSuchKey)
	}
	return done, nil
}
