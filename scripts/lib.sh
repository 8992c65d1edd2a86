# lib.sh: shell functions shared by the scripts that build test images and stage1 images.
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

# stage1_systemd_rootfs ROOT BINARY FLAVOR [UNIT...]: lay out a stage1 rootfs whose PID 1 is
# systemd, copied from the installed Debian package (never taken from the host at run time):
# merged-/usr directories and symlinks; systemd, systemd-shutdown, systemctl (and
# systemd-executor where the package has it) with the `ldd` closure of those and of BINARY
# (skipped when BINARY is static) at Debian's /usr paths, the loader included; the units that
# halting and exiting need plus the extra UNITs; /etc/os-release naming FLAVOR, a root-only
# /etc/passwd and /etc/group, an empty /etc/machine-id (systemd makes a transient id per boot).
stage1_systemd_rootfs() {
  local r=$1 binary=$2 flavor=$3
  shift 3
  [[ -n $r && $r != / ]] || die "stage1_systemd_rootfs: refusing rootfs '$r'"
  need_file /usr/lib/systemd/systemd systemd
  mkdir -p "$r"/{proc,sys,dev,run,var,opt/stage2,skiff,etc/systemd/system} \
    "$r"/usr/{bin,sbin,lib,lib64,lib/skiff,lib/systemd/system}
  install -d -m 1777 "$r/tmp"
  ln -s usr/bin "$r/bin"
  ln -s usr/sbin "$r/sbin"
  ln -s usr/lib "$r/lib"
  ln -s usr/lib64 "$r/lib64"
  ln -s ../run "$r/var/run"   # systemd taints the system ("var-run-bad") otherwise

  # Executables and their shared-library closure. ldd already lists the transitive closure;
  # each library goes in at its /usr path, with its soname symlink and the file it names.
  local progs=(/usr/lib/systemd/systemd /usr/lib/systemd/systemd-shutdown /usr/bin/systemctl)
  [[ -e /usr/lib/systemd/systemd-executor ]] && progs+=(/usr/lib/systemd/systemd-executor)
  local p deps a b c libs=() files=()
  for p in "${progs[@]}"; do
    need_file "$p" systemd
  done
  for p in "${progs[@]}" "$binary"; do
    if ! deps=$(ldd "$p" 2>&1); then
      [[ $p == "$binary" && $deps == *"not a dynamic executable"* ]] && continue
      die "ldd $p failed: $deps"
    fi
    while read -r a b c _; do
      if [[ $b == "=>" && $c == /* ]]; then libs+=("$c")
      elif [[ $a == /* ]]; then libs+=("$a")                 # the loader
      elif [[ $b == "=>" && $c == "not" ]]; then die "$p: library $a not found (ldd)"
      fi
    done <<<"$deps"
  done
  # Map to merged-/usr paths, then add the real files the soname symlinks point to.
  usrpath() { sed -E 's#^/(lib|lib64|bin|sbin)/#/usr/\1/#'; }
  mapfile -t libs < <(printf '%s\n' "${libs[@]}" | usrpath | sort -u)
  mapfile -t files < <({ printf '%s\n' "${progs[@]}" "${libs[@]}"; readlink -f "${libs[@]}" | usrpath; } | sort -u)
  # tar rather than cp --parents: coreutils 9.1's cp -a --parents fails on parent directories here.
  tar -C / -cf - "${files[@]#/}" | tar -C "$r" -xpf -

  # Units: just what halting and exiting need, and the caller's.
  local units=(halt.target systemd-halt.service exit.target systemd-exit.service
    shutdown.target umount.target final.target "$@") u
  for u in "${units[@]}"; do
    need_file "/usr/lib/systemd/system/$u" systemd
  done
  cp -a "${units[@]/#//usr/lib/systemd/system/}" "$r/usr/lib/systemd/system/"

  printf '%s\n' 'NAME="skiff stage1"' 'ID=skiff-stage1' "PRETTY_NAME=\"skiff stage1 ($flavor flavor)\"" \
    "VARIANT_ID=$flavor" 'HOME_URL="https://github.com/skiff-project/skiff"' >"$r/etc/os-release"
  echo 'root:x:0:0:root:/:/usr/sbin/nologin' >"$r/etc/passwd"
  echo 'root:x:0:' >"$r/etc/group"
  : >"$r/etc/machine-id"
  chmod 0444 "$r/etc/machine-id"
}
