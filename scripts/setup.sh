#!/usr/bin/env bash
# Prepares a fresh Debian machine for mediaimport, idempotently:
#   1. Debian packages (ffmpeg, PostgreSQL server binaries, the image build tools; for
#      the local node containerd, runc, the CNI plugins, iptables, conntrack, socat, ethtool),
#   2. a virtualenv at .venv with the project installed editable,
#   3. the pinned Go binaries (etcd, Kubernetes, helm, versitygw), cached by version,
#      with kubectl and helm linked into .venv/bin,
#   4. the project's images (built while 3 compiles; cached by the hash of their inputs).
# A second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup] %s\n' "$*" >&2; }

# debootstrap, buildah and runc build the images without a registry (crun,
# buildah's default runtime, fails on hybrid cgroup hosts; runc is used instead).
# containerd, runc, the CNI plugins, iptables, conntrack, socat and ethtool run the
# local node (docs/local-stack.md).
DEBIAN_PACKAGES=(ffmpeg postgresql iproute2 debootstrap buildah runc
  containerd containernetworking-plugins iptables conntrack socat ethtool)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Reinstall only when the dependency list changed: pip resolving from scratch
# costs tens of seconds even when everything is present.
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  [[ -x .venv/bin/python ]] || { log "creating .venv"; python3 -m venv .venv; }
  log "installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi

# The images need only the virtualenv and Debian's tools, and their build is mostly
# downloading and unpacking: it runs while the Go binaries compile (minutes saved on a
# fresh machine; a warm run only hashes the inputs).
images_log=$(mktemp -t mediaimport-images.XXXXXX)
.venv/bin/mediaimport-dev images build >"$images_log" 2>&1 &
images_pid=$!
trap 'kill "$images_pid" 2>/dev/null || true; rm -f "$images_log"' EXIT

log "building pinned Go binaries (cached under ${MEDIAIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediaimport})"
bin_dir=$(scripts/build-binaries.sh | tail -n 1)
log "the project's images"
if ! wait "$images_pid"; then
  tail -n 40 "$images_log" >&2
  log "building the images failed (above); run: .venv/bin/mediaimport-dev images build"
  exit 1
fi
cat "$images_log" >&2
# The pinned clients next to the project's own commands, so that one PATH entry
# gives the kubectl and helm that match the local control plane.
for tool in kubectl helm; do ln -sfn "$bin_dir/$tool" ".venv/bin/$tool"; done
log "ready"
