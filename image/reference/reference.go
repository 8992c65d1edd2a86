// Package reference parses the strings users type to name an image source
// ("oci-archive:bb.tar:latest", "docker://quay.io/x/y:1") into a Reference
// that says which transport to use and what to fetch. It does no I/O.
package reference

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/internal/lazyre"
)

// Transport names the way an image is brought into the store.
type Transport string

// Transports skiff recognises. Only some are implemented by image/fetch; the
// others parse so that callers can say precisely what is not supported.
const (
	OCI           Transport = "oci"            // oci:DIR[:REF], an OCI image layout directory
	OCIArchive    Transport = "oci-archive"    // oci-archive:FILE[:REF], a tar of an image layout
	Docker        Transport = "docker"         // docker://HOST[:PORT]/REPO[:TAG|@DIGEST]
	DockerArchive Transport = "docker-archive" // docker-archive:FILE[:REF], "docker save" output
	ACI           Transport = "aci"            // FILE.aci, an appc image
	HTTPS         Transport = "https"          // https://URL (or http://URL), an appc image over HTTP(S)
	AppcName      Transport = "appc"           // HOST[:PORT]/PATH[:VERSION], an appc name found by discovery
)

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid image reference")

// Forms is the help text listing the accepted forms.
const Forms = "oci:DIR[:REF], oci-archive:FILE[:REF], docker://HOST[:PORT]/REPO[:TAG|@DIGEST], " +
	"docker-archive:FILE[:REF], FILE.aci, https://URL or an appc name DOMAIN/PATH[:VERSION]"

// Reference is a parsed image source. Which fields are set depends on Transport.
type Reference struct {
	Transport Transport
	Path      string        // oci, oci-archive, docker-archive, aci: the file or directory, as given
	Ref       string        // oci, oci-archive, docker-archive: the image's ref name, "" if none
	Host      string        // docker: registry host[:port], "docker.io" by default; appc: discovery host[:port]
	Repo      string        // docker: repository, "library/x" for official docker.io images
	Tag       string        // docker: tag, "latest" when neither tag nor digest is given; appc: version label, "" if none
	Name      string        // appc: the image name (Host without its port, then the path)
	Digest    digest.Digest // docker: manifest digest, "" if none
	URL       string        // https: the URL
}

var (
	// OCI image-spec annotation grammar for org.opencontainers.image.ref.name.
	refNameRE = lazyre.New(`^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$`)
	// Distribution repository path and tag grammars.
	repoRE = lazyre.New(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = lazyre.New(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	hostRE = lazyre.New(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$`)
)

// Parse parses an image source string. Errors wrap ErrInvalid and name s.
func Parse(s string) (Reference, error) {
	r, err := parse(s)
	if err != nil {
		return Reference{}, fmt.Errorf("%w %q: %s", ErrInvalid, s, err)
	}
	return r, nil
}

func parse(s string) (Reference, error) {
	if strings.ContainsAny(s, "\x00\n\r") {
		return Reference{}, errors.New("contains a control character")
	}
	switch {
	case strings.HasPrefix(s, "docker://"):
		return parseDocker(strings.TrimPrefix(s, "docker://"))
	case strings.HasPrefix(s, "https://"), strings.HasPrefix(s, "http://"):
		return parseHTTPS(s)
	}
	for _, t := range []Transport{OCIArchive, OCI, DockerArchive} {
		if rest, ok := strings.CutPrefix(s, string(t)+":"); ok {
			return parsePathRef(t, rest)
		}
	}
	if strings.HasSuffix(s, ".aci") && !strings.Contains(s, "://") {
		return Reference{Transport: ACI, Path: s}, nil
	}
	if looksLikePath(s) {
		return Reference{}, fmt.Errorf("no transport; for an image file write oci-archive:%[1]s (an OCI archive) or docker-archive:%[1]s ('docker save' output), for an OCI layout directory oci:%[1]s", s)
	}
	if host, _, ok := strings.Cut(s, "/"); ok && !strings.Contains(s, "://") && (strings.ContainsAny(host, ".:") || host == "localhost") {
		if registryHosts[host] || strings.HasSuffix(host, ".gcr.io") || strings.HasSuffix(host, ".amazonaws.com") {
			return Reference{}, fmt.Errorf("%s is a container registry, not an appc discovery host; write docker://%s", host, s)
		}
		return parseAppcName(s)
	}
	if !strings.Contains(s, ":/") && (!strings.Contains(s, ":") || tagRE.MatchString(s[strings.LastIndexByte(s, ':')+1:])) && !strings.ContainsAny(s, " \t") {
		return Reference{}, fmt.Errorf("no transport; for a registry image write docker://%s (docker.io's), or use one of %s", s, Forms)
	}
	return Reference{}, errors.New("no transport; use one of " + Forms)
}

// registryHosts serve container images only (no appc discovery): a name on
// one of them without docker:// is a registry image missing its transport.
var registryHosts = map[string]bool{
	"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true, "quay.io": true, "ghcr.io": true,
	"gcr.io": true, "registry.k8s.io": true, "k8s.gcr.io": true, "public.ecr.aws": true, "mcr.microsoft.com": true,
	"registry.gitlab.com": true, "registry.fedoraproject.org": true, "registry.access.redhat.com": true, "registry.redhat.io": true,
}

// looksLikePath tells a file name typed without its transport: an absolute
// or ./ path, or a name ending like an archive.
func looksLikePath(s string) bool {
	for _, p := range []string{"/", "./", "../", "~/"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	for _, x := range []string{".tar", ".tar.gz", ".tgz", ".oci"} {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

// parsePathRef splits PATH[:REF] at the first colon, like containers/image.
func parsePathRef(t Transport, rest string) (Reference, error) {
	path, ref, hasRef := strings.Cut(rest, ":")
	if path == "" {
		return Reference{}, fmt.Errorf("%s: empty path", t)
	}
	if hasRef && !refNameRE.MatchString(ref) {
		return Reference{}, fmt.Errorf("%s: invalid ref name %q", t, ref)
	}
	return Reference{Transport: t, Path: path, Ref: ref}, nil
}

func parseDocker(rest string) (Reference, error) {
	r := Reference{Transport: Docker}
	if name, dgst, ok := strings.Cut(rest, "@"); ok {
		d, err := digest.Parse(dgst)
		if err != nil {
			return Reference{}, fmt.Errorf("docker: digest %q: %v", dgst, err)
		}
		r.Digest, rest = d, name
	}
	host, repo, ok := strings.Cut(rest, "/")
	if !ok || !(strings.ContainsAny(host, ".:[") || host == "localhost") {
		host, repo = "docker.io", rest
	}
	if host == "docker.io" && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	if i := strings.LastIndexByte(repo, ':'); i >= 0 {
		r.Tag, repo = repo[i+1:], repo[:i]
		if !tagRE.MatchString(r.Tag) {
			return Reference{}, fmt.Errorf("docker: invalid tag %q", r.Tag)
		}
	}
	if !hostRE.MatchString(host) {
		return Reference{}, fmt.Errorf("docker: invalid registry host %q", host)
	}
	if !repoRE.MatchString(repo) || len(repo) > 255 {
		return Reference{}, fmt.Errorf("docker: invalid repository %q", repo)
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	r.Host, r.Repo = host, repo
	return r, nil
}

func parseHTTPS(s string) (Reference, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Reference{}, fmt.Errorf("https: %v", err)
	}
	if u.Host == "" {
		return Reference{}, errors.New("https: no host")
	}
	return Reference{Transport: HTTPS, URL: u.String()}, nil
}

// acIdentifierRE is appc's AC Identifier grammar (spec/types.md).
var acIdentifierRE = lazyre.New(`^[a-z0-9]+(?:[-._~/][a-z0-9]+)*$`)

// parseAppcName parses HOST[:PORT]/PATH[:VERSION]. The port only says where
// discovery connects (e.g. a test server on 127.0.0.1:PORT); it is not part
// of the image name.
func parseAppcName(s string) (Reference, error) {
	hostport, rest, _ := strings.Cut(s, "/")
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rest, s = rest[:i], rest[i+1:]
		if !tagRE.MatchString(s) {
			return Reference{}, fmt.Errorf("appc: invalid version %q", s)
		}
	} else {
		s = ""
	}
	if !hostRE.MatchString(hostport) || strings.HasPrefix(hostport, "[") {
		return Reference{}, fmt.Errorf("appc: invalid host %q", hostport)
	}
	host, _, _ := strings.Cut(hostport, ":")
	name := host + "/" + rest
	if !acIdentifierRE.MatchString(name) || len(name) > 255 {
		return Reference{}, fmt.Errorf("appc: invalid image name %q (lowercase letters, digits and -._~/)", name)
	}
	return Reference{Transport: AppcName, Host: hostport, Name: name, Tag: s}, nil
}

// String returns the canonical form of r; Parse(r.String()) gives r back.
func (r Reference) String() string {
	switch r.Transport {
	case OCI, OCIArchive, DockerArchive:
		if r.Ref != "" {
			return string(r.Transport) + ":" + r.Path + ":" + r.Ref
		}
		return string(r.Transport) + ":" + r.Path
	case Docker:
		s := "docker://" + r.Host + "/" + r.Repo
		if r.Tag != "" {
			s += ":" + r.Tag
		}
		if r.Digest != "" {
			s += "@" + r.Digest.String()
		}
		return s
	case ACI:
		return r.Path
	case HTTPS:
		return r.URL
	case AppcName:
		host, _, _ := strings.Cut(r.Name, "/")
		s := r.Host + strings.TrimPrefix(r.Name, host)
		if r.Tag != "" {
			s += ":" + r.Tag
		}
		return s
	}
	return ""
}
