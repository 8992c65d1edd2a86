package trust

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/skiff-project/skiff/internal/atomicfile"
)

// maxKeySize bounds what is read from a key file or a key given to Add. Real
// public keys, even RSA-4096 with many signatures, are far smaller.
const maxKeySize = 1 << 20

// Keystore is the pair of configuration directories whose trustedkeys/
// subdirectories hold the trusted keys: LocalDir for the administrator's keys
// (default /etc/skiff) and SystemDir for the vendor's (default /usr/lib/skiff).
// Either may be empty to mean "none".
type Keystore struct{ LocalDir, SystemDir string }

// KeysFor returns the OpenPGP keys trusted for imageName: those in root.d
// and those of every prefix directory whose prefix is imageName or a
// whole-segment prefix of it, from both trees, without vendor keys masked by
// empty admin files. Each key appears once. An empty list with a nil error
// means no key is trusted.
func (k Keystore) KeysFor(imageName string) (openpgp.EntityList, error) {
	files, err := k.gather(openpgpKind, imageName)
	if err != nil {
		return nil, err
	}
	return entities(files), nil
}

// entities are the OpenPGP keys of files gathered as openpgpKind.
func entities(files []keyFile) openpgp.EntityList {
	var keys openpgp.EntityList
	for _, f := range files {
		keys = append(keys, f.key.(*openpgp.Entity))
	}
	return keys
}

// gather returns the keys of kind trusted for imageName, admin keys first,
// each once, without masked vendor keys.
func (k Keystore) gather(kind keyKind, imageName string) ([]keyFile, error) {
	segs, err := splitName(imageName)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", imageName, err)
	}
	dirs := []string{"root.d"}
	for i := range segs {
		dirs = append(dirs, filepath.Join(append([]string{"prefix.d"}, segs[:i+1]...)...))
	}
	files, err := k.gatherDirs(kind, dirs)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", imageName, err)
	}
	return files, nil
}

// gatherDirs returns the keys of kind in the directories dirs of both
// trees, admin keys first, each once, without masked vendor keys.
func (k Keystore) gatherDirs(kind keyKind, dirs []string) ([]keyFile, error) {
	var admin, vendor []keyFile
	masked := make(map[string]bool)
	for _, d := range dirs {
		files, err := readKeyDir(k.LocalDir, kind, d)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if f.key == nil {
				masked[f.fingerprint] = true
			} else {
				admin = append(admin, f)
			}
		}
		files, err = readKeyDir(k.SystemDir, kind, d)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if f.key != nil {
				vendor = append(vendor, f)
			}
		}
	}

	var keys []keyFile
	seen := make(map[string]bool)
	for _, f := range admin {
		if !seen[f.fingerprint] {
			seen[f.fingerprint] = true
			keys = append(keys, f)
		}
	}
	for _, f := range vendor {
		if !seen[f.fingerprint] && !masked[f.fingerprint] {
			seen[f.fingerprint] = true
			keys = append(keys, f)
		}
	}
	return keys, nil
}

// keyKind is one kind of trusted key: where its tree starts under
// CONFIG/trustedkeys/ and how a key file is parsed into its fingerprint and
// key.
type keyKind struct {
	name  string // "openpgp" or "cosign", as --list shows it
	base  string // "" for OpenPGP (rkt's layout), "cosign.d" for cosign keys
	parse func(data []byte) (fingerprint string, key any, err error)
}

var (
	openpgpKind = keyKind{name: KindOpenPGP, parse: func(data []byte) (string, any, error) {
		e, err := parseKey(data)
		if err != nil {
			return "", nil, err
		}
		return hex.EncodeToString(e.PrimaryKey.Fingerprint), e, nil
	}}
	cosignKind = keyKind{name: KindCosign, base: "cosign.d", parse: func(data []byte) (string, any, error) {
		c, err := ParseCosignKey(data)
		if err != nil {
			return "", nil, err
		}
		return c.Fingerprint, c, nil
	}}
	// keyKinds are every kind, in the order --list shows them.
	keyKinds = []keyKind{openpgpKind, cosignKind}
)

// Kinds of key, as Entry.Kind names them.
const (
	KindOpenPGP = "openpgp"
	KindCosign  = "cosign"
)

// treeDir is CONFIG/trustedkeys[/BASE] for kind.
func treeDir(configDir string, kind keyKind) string {
	return filepath.Join(configDir, "trustedkeys", kind.base)
}

// relDir is the directory under a kind's tree for a root key or a prefix.
func relDir(prefix string, root bool) (string, error) {
	switch {
	case root && prefix != "":
		return "", fmt.Errorf("a root key takes no prefix, got %q", prefix)
	case root:
		return "root.d", nil
	}
	segs, err := splitName(prefix)
	if err != nil {
		return "", fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return filepath.Join(append([]string{"prefix.d"}, segs...)...), nil
}

// Add trusts the one OpenPGP public key read from key (armored or binary)
// for image names under prefix, or for every image if root is true (prefix
// must then be empty). It writes the key, armored, atomically to
// LocalDir/trustedkeys/{root.d,prefix.d/PREFIX}/FINGERPRINT, replacing an
// earlier copy or a masking empty file, and returns the fingerprint. Only the
// public part of a key is ever written.
func (k Keystore) Add(prefix string, root bool, key io.Reader) (fingerprint string, err error) {
	e, err := ReadOpenPGPKey(key)
	if err != nil {
		return "", fmt.Errorf("trusting key: %w", err)
	}
	fingerprint = hex.EncodeToString(e.PrimaryKey.Fingerprint)
	armored, err := armoredPublicKey(e)
	if err != nil {
		return "", fmt.Errorf("trusting key %s: %w", strings.ToUpper(fingerprint), err)
	}
	return fingerprint, k.write(openpgpKind, prefix, root, fingerprint, armored)
}

// ReadOpenPGPKey reads exactly one OpenPGP public key, armored or binary,
// from r (for showing it before it is trusted).
func ReadOpenPGPKey(r io.Reader) (*openpgp.Entity, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	return parseKey(data)
}

// write stores a key file of kind atomically in the admin tree.
func (k Keystore) write(kind keyKind, prefix string, root bool, fingerprint string, data []byte) error {
	if k.LocalDir == "" {
		return errors.New("trusting key: no local configuration directory")
	}
	rel, err := relDir(prefix, root)
	if err != nil {
		return fmt.Errorf("trusting key: %w", err)
	}
	full := filepath.Join(treeDir(k.LocalDir, kind), rel)
	if err := os.MkdirAll(full, 0o755); err != nil {
		return fmt.Errorf("trusting key %s: %w", strings.ToUpper(fingerprint), err)
	}
	if err := atomicfile.Write(filepath.Join(full, fingerprint), data, 0o644); err != nil {
		return fmt.Errorf("trusting key %s: %w", strings.ToUpper(fingerprint), err)
	}
	return nil
}

// armoredPublicKey serializes the public part of e, armored.
func armoredPublicKey(e *openpgp.Entity) ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := e.Serialize(w); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// keyFile is one entry of a key directory; key is nil for an empty file.
type keyFile struct {
	fingerprint string
	key         any // *openpgp.Entity or *CosignKey
}

// readKeyDir reads the key files of kind directly inside rel of configDir's
// tree. Subdirectories (longer prefixes) and hidden files are skipped; a
// missing directory holds no keys.
func readKeyDir(configDir string, kind keyKind, rel string) ([]keyFile, error) {
	if configDir == "" {
		return nil, nil
	}
	dir := filepath.Join(treeDir(configDir, kind), rel)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading trusted keys: %w", err)
	}
	var files []keyFile
	for _, de := range ents {
		name := de.Name()
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") || isDir(de, path) {
			continue
		}
		f, err := readKeyFile(kind, path)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// readKeyFile reads one key file, checking that its name is its key's
// fingerprint.
func readKeyFile(kind keyKind, path string) (keyFile, error) {
	name := filepath.Base(path)
	if !isFingerprint(name) {
		return keyFile{}, fmt.Errorf("trusted key file %s: name is not a lowercase hex key fingerprint", path)
	}
	data, err := readBounded(path)
	if err != nil {
		return keyFile{}, fmt.Errorf("reading trusted key: %w", err)
	}
	if len(data) == 0 {
		return keyFile{fingerprint: name}, nil
	}
	got, key, err := kind.parse(data)
	if err != nil {
		return keyFile{}, fmt.Errorf("trusted key file %s: %w", path, err)
	}
	if got != name {
		return keyFile{}, fmt.Errorf("trusted key file %s: holds key %s, not the key its name says", path, strings.ToUpper(got))
	}
	return keyFile{fingerprint: name, key: key}, nil
}

// isDir reports whether de is a directory or a symbolic link to one.
func isDir(de fs.DirEntry, path string) bool {
	if de.Type()&fs.ModeSymlink == 0 {
		return de.IsDir()
	}
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeySize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeySize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxKeySize)
	}
	return data, nil
}

// parseKey reads exactly one OpenPGP key, armored or binary.
func parseKey(data []byte) (*openpgp.Entity, error) {
	if len(data) > maxKeySize {
		return nil, fmt.Errorf("key larger than %d bytes", maxKeySize)
	}
	var (
		el  openpgp.EntityList
		err error
	)
	if isArmored(data) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("not an OpenPGP public key: %w", err)
	}
	switch len(el) {
	case 0:
		return nil, errors.New("not an OpenPGP public key: no key found")
	case 1:
		if fp := el[0].PrimaryKey.Fingerprint; len(fp) != 20 && len(fp) != 32 {
			return nil, fmt.Errorf("unsupported version %d key", el[0].PrimaryKey.Version)
		}
		return el[0], nil
	default:
		return nil, fmt.Errorf("holds %d keys, want exactly one", len(el))
	}
}

// isArmored reports whether data starts, after white space, with an ASCII
// armor header line.
func isArmored(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN PGP "))
}

// isFingerprint reports whether name is a v4 (40) or v6 (64) lowercase hex
// fingerprint.
func isFingerprint(name string) bool {
	if len(name) != 40 && len(name) != 64 {
		return false
	}
	for _, c := range name {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// splitName splits an image name or prefix into '/'-separated segments and
// refuses anything that could leave the prefix.d tree or means nothing as a
// name: empty, absolute, empty segments, "." or "..", backslashes, NULs.
func splitName(name string) ([]string, error) {
	if name == "" {
		return nil, errors.New("empty name")
	}
	if strings.HasPrefix(name, "/") {
		return nil, errors.New("name must not be an absolute path")
	}
	if strings.ContainsAny(name, "\\\x00") {
		return nil, errors.New("name must not contain a backslash or NUL")
	}
	segs := strings.Split(name, "/")
	for _, s := range segs {
		switch s {
		case "":
			return nil, errors.New("name has an empty segment")
		case ".", "..":
			return nil, fmt.Errorf("name must not contain a %q segment", s)
		}
	}
	return segs, nil
}
