package fetch

import (
	"strings"

	"github.com/skiff-project/skiff/image/reference"
)

// archiveNamePrefix marks, in the store, a name an archive gave its image
// that would otherwise read as another transport's reference.
const archiveNamePrefix = "archive:"

// contentNames returns the store names for the names an archive's content
// gives its image (RepoTags, org.opencontainers.image.ref.name). A name that
// reads as an image reference ("docker://...", an appc name such as
// "example.com/app:v1", a path) is kept as "archive:NAME", so that an archive
// never takes a name under which a registry image, a URL or a discovered
// appc image is stored and used; one that would still read as a reference
// is dropped, and so is a bare tag such as "latest", which is no image's
// name but the archive's (the image is named oci-archive:FILE:latest).
func contentNames(names []string) []string {
	var out []string
	for _, n := range names {
		if n == "" || !strings.ContainsAny(n, "/:") {
			continue // a bare tag ("latest") names no image store-wide: many archives say it
		}
		if _, err := reference.Parse(n); err != nil {
			out = append(out, n)
			continue
		}
		if _, err := reference.Parse(archiveNamePrefix + n); err != nil {
			out = append(out, archiveNamePrefix+n)
		}
	}
	return out
}
