#!/usr/bin/env bash
# Builds Kiln's guest kernel from Debian's linux-source-6.1 with the config fragment
# src/guest/kernel/kiln.config (applied on top of `make tinyconfig`), into a content-addressed cache.
#
# Usage: scripts/build-guest-kernel.sh [--cache-dir DIR] [--print-path] [--print-dir]
#
#   --cache-dir DIR  guest-kernel cache directory
#                    (default: ${KILN_CACHE_DIR:-/var/cache/kiln}/guest-kernel)
#   --print-path     print only the bzImage path on stdout, no progress on stderr
#   --print-dir      print only the cache entry directory on stdout, no progress on stderr
#
# Cache entry: DIR/<key>/{bzImage,vmlinux,config,version,fragment,key-input,build.log}
#   <key> = sha256 of (recipe version + linux-source package version + the fragment's contents).
# An existing entry is reused without rebuilding. Builds happen in DIR/.build-<key>.XXXXXX and are
# renamed into place only when complete; concurrent runs serialise on DIR/<key>.lock (flock).
# The kernel source is extracted once per source version into DIR/src/<version>/ (about 1.4 GB,
# shared read-only by builds; delete it to reclaim the space, the next build re-extracts it).
#
# Environment: KILN_CACHE_DIR, KILN_LINUX_SOURCE_TARBALL (default /usr/src/linux-source-6.1.tar.xz),
#              KILN_KERNEL_JOBS (default: nproc).
set -euo pipefail

# Bump whenever the build steps below change in a way that changes the output.
readonly RECIPE_VERSION="kiln-guest-kernel-recipe/2 (tinyconfig + kiln.config, ARCH=x86_64, O= build from a shared source tree)"
readonly SOURCE_PACKAGE="linux-source-6.1"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
fragment="${repo_root}/src/guest/kernel/kiln.config"
tarball="${KILN_LINUX_SOURCE_TARBALL:-/usr/src/${SOURCE_PACKAGE}.tar.xz}"
jobs="${KILN_KERNEL_JOBS:-$(nproc)}"

cache_dir="${KILN_CACHE_DIR:-/var/cache/kiln}/guest-kernel"
print_mode=""

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cache-dir) [[ $# -ge 2 ]] || { echo "error: --cache-dir needs a value" >&2; exit 2; }
                 cache_dir="$2"; shift 2 ;;
    --cache-dir=*) cache_dir="${1#*=}"; shift ;;
    --print-path) print_mode="path"; shift ;;
    --print-dir) print_mode="dir"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { [[ -n "${print_mode}" ]] || echo "build-guest-kernel: $*" >&2; }
die() { echo "build-guest-kernel: error: $*" >&2; exit 1; }

emit_result() {  # $1 = entry dir
  local entry="$1"
  case "${print_mode}" in
    path) echo "${entry}/bzImage" ;;
    dir)  echo "${entry}" ;;
    *)    log "kernel $(cat "${entry}/version") in ${entry} (bzImage, vmlinux for PVH, config)"
          echo "${entry}/bzImage" ;;
  esac
}

[[ -f "${fragment}" ]] || die "config fragment not found: ${fragment}"

# ---- cache key ---------------------------------------------------------------------------------
if pkg_version="$(dpkg-query -W -f='${Version}' "${SOURCE_PACKAGE}" 2>/dev/null)" && [[ -n "${pkg_version}" ]] \
   && [[ "${tarball}" == "/usr/src/${SOURCE_PACKAGE}.tar.xz" ]]; then
  source_id="${SOURCE_PACKAGE} ${pkg_version}"
elif [[ -f "${tarball}" ]]; then
  # Not the packaged tarball (or dpkg does not know it): identify the source by its hash.
  source_id="tarball sha256 $(sha256sum "${tarball}" | cut -d' ' -f1)"
else
  die "kernel source ${tarball} not found; install it with: apt-get install ${SOURCE_PACKAGE} bc flex bison libelf-dev libssl-dev"
fi
key_input="$(printf 'recipe: %s\nsource: %s\nfragment:\n%s\n' "${RECIPE_VERSION}" "${source_id}" "$(cat "${fragment}")")"
key="$(printf '%s' "${key_input}" | sha256sum | cut -d' ' -f1)"
entry="${cache_dir}/${key}"

# Fast path: a complete entry exists (entries only appear by atomic rename).
if [[ -f "${entry}/bzImage" ]]; then
  emit_result "${entry}"
  exit 0
fi

# ---- lock --------------------------------------------------------------------------------------
mkdir -p "${cache_dir}"
exec 9>"${cache_dir}/${key}.lock"
if ! flock -n 9; then
  log "another build of ${key:0:12} is running; waiting for it"
  flock 9
fi
if [[ -f "${entry}/bzImage" ]]; then   # built by whoever held the lock
  emit_result "${entry}"
  exit 0
fi

# ---- prerequisites -----------------------------------------------------------------------------
[[ -f "${tarball}" ]] || die "kernel source ${tarball} not found; install it with: apt-get install ${SOURCE_PACKAGE}"
missing=()
for tool in make gcc ld bc flex bison perl xz tar sha256sum; do
  command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
done
[[ -f /usr/include/gelf.h ]] || missing+=("libelf-dev (gelf.h)")
[[ -f /usr/include/openssl/ssl.h ]] || missing+=("libssl-dev (openssl/ssl.h)")
[[ ${#missing[@]} -eq 0 ]] || die "missing build tools: ${missing[*]} (apt-get install build-essential bc flex bison libelf-dev libssl-dev xz-utils)"

# ---- build -------------------------------------------------------------------------------------
# A killed build leaves only a .build-<key>.* directory; we hold the key's lock, so any such
# directory is stale.
rm -rf "${cache_dir}/.build-${key}."*
work="$(mktemp -d "${cache_dir}/.build-${key}.XXXXXX")"
build_log="${work}/build.log"
failed_log="${cache_dir}/${key}.failed.log"
extract_tmp=""
cleanup() { rm -rf "${work}" ${extract_tmp:+"${extract_tmp}"}; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

fail() {  # $1 = message
  echo "build-guest-kernel: error: $1" >&2
  if [[ -f "${build_log}" ]]; then
    cp -f "${build_log}" "${failed_log}" 2>/dev/null || true
    echo "---- last lines of the build log (full log: ${failed_log}) ----" >&2
    tail -n 60 "${build_log}" >&2
  fi
  exit 1
}

out="${work}/out"
mkdir -p "${out}"
start=${SECONDS}
log "building guest kernel ${key:0:12} from ${source_id} (${jobs} jobs; a few minutes)"

# ---- kernel source ---------------------------------------------------------------------------
# Extracted once per source version into DIR/src/<version>/ and shared, read-only, by all builds
# (they write only to O=<work>/out). Extracting and deleting the 1.4 GB tree for every build costs
# minutes of disk I/O on a busy host. Builds hold a shared lock on the tree; extraction and pruning
# of trees of other versions take it exclusively.
src_root="${cache_dir}/src"
src_name="$(printf '%s' "${source_id}" | tr -c 'A-Za-z0-9.+_-' '_')"
src="${src_root}/${src_name}"
mkdir -p "${src_root}"
exec 8>"${src_root}/${src_name}.lock"
while :; do
  flock -s 8
  [[ -f "${src}/.kiln-extracted" ]] && break
  flock -x 8
  [[ -f "${src}/.kiln-extracted" ]] && continue
  log "extracting ${tarball} into ${src}"
  rm -rf "${src}" "${src_root}/.extract-${src_name}."*
  extract_tmp="$(mktemp -d "${src_root}/.extract-${src_name}.XXXXXX")"
  tar -xf "${tarball}" -C "${extract_tmp}" --strip-components=1 --no-same-owner >>"${build_log}" 2>&1 \
    || fail "extracting ${tarball} failed"
  touch "${extract_tmp}/.kiln-extracted"
  mv -T "${extract_tmp}" "${src}"
  extract_tmp=""
  # Trees of other source versions are useless now (their tarball is gone); drop the unused ones.
  for other in "${src_root}"/*/; do
    other="$(basename "${other}")"
    [[ "${other}" == "${src_name}" ]] && continue
    ( exec 7>"${src_root}/${other}.lock" && flock -n -x 7 && rm -rf "${src_root:?}/${other}" ) || true
  done
done

# The caller's environment must not leak into the build.
unset ARCH CROSS_COMPILE LOCALVERSION KCONFIG_CONFIG KBUILD_OUTPUT KCFLAGS KAFLAGS KBUILD_EXTRA_SYMBOLS \
      INSTALL_PATH INSTALL_MOD_PATH CC LD
export KBUILD_BUILD_USER=kiln KBUILD_BUILD_HOST=kiln
kmake() { make -C "${src}" O="${out}" ARCH=x86_64 LOCALVERSION= "$@" >>"${build_log}" 2>&1; }

log "configuring: tinyconfig + $(basename "${fragment}")"
kmake tinyconfig || fail "make tinyconfig failed"
"${src}/scripts/kconfig/merge_config.sh" -m -O "${out}" "${out}/.config" "${fragment}" >>"${build_log}" 2>&1 \
  || fail "merging ${fragment} failed"
kmake olddefconfig || fail "make olddefconfig failed"

# Every option the fragment sets must have survived olddefconfig with the same value, and every
# option it turns off must be off (absent counts as off).
mismatches="$(awk '
  FNR == NR {
    if (match($0, /^CONFIG_[A-Za-z0-9_]+=/)) { name = substr($0, 1, RLENGTH - 1); final[name] = substr($0, RLENGTH + 1) }
    else if ($0 ~ /^# CONFIG_[A-Za-z0-9_]+ is not set$/) { final[$2] = "n" }
    next
  }
  /^CONFIG_[A-Za-z0-9_]+=/ {
    match($0, /^CONFIG_[A-Za-z0-9_]+=/); name = substr($0, 1, RLENGTH - 1); want = substr($0, RLENGTH + 1)
    got = (name in final) ? final[name] : "(absent: unmet dependency or unknown option)"
    if (got != want) printf "  %s: wanted %s, got %s\n", name, want, got
    next
  }
  /^# CONFIG_[A-Za-z0-9_]+ is not set$/ {
    if (($2 in final) && final[$2] != "n") printf "  %s: wanted off, got %s\n", $2, final[$2]
  }
' "${out}/.config" "${fragment}")"
if [[ -n "${mismatches}" ]]; then
  echo "build-guest-kernel: error: the final .config does not match ${fragment}:" >&2
  echo "${mismatches}" >&2
  cp -f "${out}/.config" "${cache_dir}/${key}.failed.config" 2>/dev/null || true
  echo "build-guest-kernel: (final .config kept as ${cache_dir}/${key}.failed.config)" >&2
  exit 1
fi

log "compiling"
kmake -j"${jobs}" bzImage || fail "kernel build failed"
release="$(make -s -C "${src}" O="${out}" ARCH=x86_64 LOCALVERSION= kernelrelease 2>>"${build_log}")" \
  || fail "make kernelrelease failed"

staged="${work}/entry"
mkdir -p "${staged}"
cp "${out}/arch/x86/boot/bzImage" "${staged}/bzImage"
cp "${out}/vmlinux" "${staged}/vmlinux"
cp "${out}/.config" "${staged}/config"
echo "${release}" >"${staged}/version"
cp "${fragment}" "${staged}/fragment"
printf '%s\n' "${key_input}" >"${staged}/key-input"
cp "${build_log}" "${staged}/build.log"
sync -f "${staged}/bzImage" 2>/dev/null || true
mv -T "${staged}" "${entry}"
rm -f "${failed_log}" "${cache_dir}/${key}.failed.config"
log "built ${release} in $((SECONDS - start)) s"
emit_result "${entry}"
