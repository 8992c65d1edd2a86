// Package auth finds registry credentials in files of the docker config.json
// format ({"auths":{"HOST":{"auth":"base64(user:password)"}}}), the format
// docker, podman and skopeo write. skiff reads, first match winning:
// $REGISTRY_AUTH_FILE, LOCAL_CONFIG/auth.d/*.json (in name order) and
// ~/.docker/config.json. It never writes them and runs no credential helpers.
package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxFile bounds an auth file read into memory.
const maxFile = 1 << 20

// Credential is what a file holds for one registry.
type Credential struct {
	Username      string
	Password      string
	IdentityToken string // an OAuth2 refresh token, exchanged for a bearer token
}

// Credentials maps registry hosts ("HOST[:PORT]") to their credentials.
type Credentials map[string]Credential

type fileEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// Parse parses one auth file. Hosts are normalised: a scheme and path
// ("https://index.docker.io/v1/") are dropped, and docker.io's aliases
// become "docker.io".
func Parse(data []byte) (Credentials, error) {
	var f struct {
		Auths map[string]fileEntry `json:"auths"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	creds := Credentials{}
	for key, e := range f.Auths {
		host := NormalizeHost(key)
		if host == "" {
			return nil, fmt.Errorf("auths: empty registry name %q", key)
		}
		c := Credential{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("auths %q: auth is not base64: %w", key, err)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("auths %q: auth is not base64 of USER:PASSWORD", key)
			}
			c.Username, c.Password = user, pass
		}
		if c == (Credential{}) {
			continue
		}
		creds[host] = c
	}
	return creds, nil
}

// NormalizeHost turns an auths key or a registry name into the form
// Credentials are keyed by.
func NormalizeHost(key string) string {
	h := strings.TrimSpace(key)
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	h, _, _ = strings.Cut(h, "/")
	h = strings.ToLower(strings.TrimSpace(h))
	switch h {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return h
}

// DefaultFiles lists the auth files skiff reads, in order, for the
// administrator's configuration directory localConfig. Files that do not
// exist are listed too; Load skips them.
func DefaultFiles(localConfig string) []string {
	var files []string
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		files = append(files, f)
	}
	matches, _ := filepath.Glob(filepath.Join(localConfig, "auth.d", "*.json")) // sorted
	files = append(files, matches...)
	if home, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(home, ".docker", "config.json"))
	}
	return files
}

// Load reads files in order; for a host in several, the first file wins.
// Missing files are skipped; a file that cannot be parsed is an error naming it.
func Load(files []string) (Credentials, error) {
	all := Credentials{}
	for _, name := range files {
		data, err := readFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("auth file %s: %w", name, err)
		}
		creds, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("auth file %s: %w", name, err)
		}
		for h, c := range creds {
			if _, ok := all[h]; !ok {
				all[h] = c
			}
		}
	}
	return all, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("larger than %d bytes", maxFile)
	}
	return data, nil
}

// Lookup returns the credential for a registry name ("HOST[:PORT]").
func (c Credentials) Lookup(registry string) (Credential, bool) {
	cred, ok := c[NormalizeHost(registry)]
	return cred, ok
}
