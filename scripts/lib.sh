# lib.sh: shell functions shared by scripts/build-test-images and scripts/build-stage1.
# Source it; it defines functions only and changes no shell options.

# die MESSAGE...: print "PROG: MESSAGE" on stderr and exit 1.
die() {
  echo "${0##*/}: $*" >&2
  exit 1
}

# need_cmd CMD...: fail with a hint when a command is missing.
need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found; run scripts/install-deps (as root) to install it"
  done
}

# need_file PATH PACKAGE: fail with a hint when a file from a Debian package is missing.
need_file() {
  [[ -e $1 ]] || die "$1 not found (Debian package $2); run scripts/install-deps (as root) to install it"
}

# fingerprint FILE...: one sha256 over the contents of the given files.
fingerprint() {
  sha256sum "$@" | sha256sum | cut -d' ' -f1
}

# oci_archive LAYOUT OUT: tar an OCI image layout into OUT atomically (temp file + rename),
# after dropping blobs no longer referenced (umoci config/repack leave old ones behind).
oci_archive() {
  local layout=$1 out=$2
  umoci gc --layout "$layout"
  tar -C "$layout" -cf "$out.tmp.$$" .
  mv -f "$out.tmp.$$" "$out"
}

# manifest_json LAYOUT REF: print the manifest that REF names in LAYOUT's index.json.
manifest_json() {
  local layout=$1 ref=$2 digest
  digest=$(jq -r --arg r "$ref" \
    '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest' \
    "$layout/index.json")
  [[ -n $digest ]] || die "no ref '$ref' in $layout/index.json"
  cat "$layout/blobs/sha256/${digest#sha256:}"
}
