#!/usr/bin/env bash
# Installs everything the project needs, at the versions pinned in versions.env:
#   - a Python virtualenv in .venv with requirements-dev.txt, every version fixed by constraints.txt;
#   - kube-apiserver, kube-controller-manager, kubectl, etcd, cert-manager's
#     controller/cainjector/cmctl, helm, actionlint, helm-docs, prometheus and promtool,
#     built from their Go modules
#     into .cache/bin (no release-binary downloads, no container images);
#   - refwebhook, bench/modes.py's reference webhook, from bench/refwebhook (stdlib only).
# Each tool is skipped when .cache/bin already holds it at the pinned version,
# so a second run takes seconds.
#
#   - the node's Debian packages (podman, runc, mmdebstrap, CNI plugins, iptables), and
#     two images built with podman: the local base image and the Pods' pause image;
#   - wrk for the benchmarks, from the distribution's packages.
#
# `peers` (never part of `all`; `make bench-peers` runs it) builds Kyverno and Gatekeeper,
# which bench/peers.py runs beside ours, into .cache/bin, with their CRDs and manifests
# in .cache/kyverno and .cache/gatekeeper.
#
# Usage: hack/install.sh [python|go|node|bench|peers|all]   (default: all)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=SCRIPTDIR/../versions.env
source "$root/versions.env"
cache="$root/.cache"
bin="$cache/bin"
build="$cache/build"
mkdir -p "$bin" "$build"

log() { printf '[install] %s\n' "$*" >&2; }

# A stamp file next to each binary records the version it was built at.
have() { [[ -x "$bin/$1" && "$(cat "$bin/.$1.version" 2>/dev/null)" == "$2" ]]; }
stamp() { echo "$2" >"$bin/.$1.version"; }

timed() {
  local what=$1; shift
  local start=$SECONDS
  "$@"
  log "$what done in $((SECONDS - start)) s"
}

install_python() {
  local want
  want=$(sha256sum "$root/requirements.txt" "$root/requirements-dev.txt" "$root/constraints.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [[ -x "$root/.venv/bin/python" && "$(cat "$root/.venv/.requirements.sha256" 2>/dev/null)" == "$want" ]]; then
    log "python venv up to date"
    return
  fi
  log "creating .venv from requirements-dev.txt"
  # --clear: a package dropped from the requirements must not linger in an old venv
  # (a stale pytest plugin would still load).
  python3 -m venv --clear "$root/.venv"
  "$root/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/requirements-dev.txt" -c "$root/constraints.txt"
  # The project itself, editable and without dependencies (they are the lines above):
  # it puts the `pod-labeler` command ([project.scripts]) on the venv's PATH.
  "$root/.venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$root"
  echo "$want" >"$root/.venv/.requirements.sha256"
}

# tools.go of a build module: a file behind the `tools` build tag that imports the
# commands, so that `go mod tidy` keeps every module they need.
write_tools_go() {
  local dir=$1
  shift
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "%s"\n' "$@"
    printf ')\n'
  } >"$dir/tools.go"
}

# k8s.io/kubernetes replaces its k8s.io/* staging modules with local paths, so
# `go install` refuses it. A build module of our own requires it and points each
# staging module at its published v0.<minor>.<patch> version instead.
build_kubernetes() {
  local v=$KUBERNETES_VERSION
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl)
  local missing=()
  for cmd in "${cmds[@]}"; do have "$cmd" "$v" || missing+=("$cmd"); done
  if ((${#missing[@]} == 0)); then
    log "kubernetes $v already built"
    return
  fi
  local staging="v0.${v#v1.}"
  local dir="$build/kubernetes-$v"
  mkdir -p "$dir"
  local gomod
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module localbuild/kubernetes"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$gomod" | awk -v s="$staging" '{print "\t" $1 " => " $1 " " s}'
    echo ")"
  } >"$dir/go.mod"
  write_tools_go "$dir" "${cmds[@]/#/k8s.io/kubernetes/cmd/}"
  (cd "$dir" && go mod tidy)
  local minor=${v#v1.}; minor=${minor%%.*}
  local ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for cmd in "${missing[@]}"; do
    log "building $cmd $v"
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    stamp "$cmd" "$v"
  done
}

build_etcd() {
  have etcd "$ETCD_VERSION" && { log "etcd $ETCD_VERSION already built"; return; }
  local dir="$build/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  printf 'module localbuild/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$dir/go.mod"
  write_tools_go "$dir" go.etcd.io/etcd/server/v3
  (cd "$dir" && go mod tidy && go build -trimpath -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD_VERSION"
}

build_cert_manager() {
  local v=$CERT_MANAGER_VERSION
  if have cert-manager-controller "$v" && have cert-manager-cainjector "$v" && have cmctl "$v"; then
    log "cert-manager $v already built"
    return
  fi
  local dir="$build/cert-manager-$v"
  mkdir -p "$dir"
  # The one replace line of cert-manager's own go.mod at this version.
  printf 'module localbuild/certmanager\n\ngo 1.26\n\nrequire github.com/cert-manager/cert-manager %s\n\nreplace github.com/miekg/dns v1.1.41 => github.com/miekg/dns v1.1.34\n' "$v" >"$dir/go.mod"
  write_tools_go "$dir" github.com/cert-manager/cert-manager/cmd/{cainjector,controller,ctl}
  (cd "$dir" && go mod tidy)
  local ldflags="-X github.com/cert-manager/cert-manager/pkg/util.AppVersion=$v"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/cert-manager-controller" github.com/cert-manager/cert-manager/cmd/controller)
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/cert-manager-cainjector" github.com/cert-manager/cert-manager/cmd/cainjector)
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/cmctl" github.com/cert-manager/cert-manager/cmd/ctl)
  # The CRDs ship inside the module; keep a copy next to the binaries.
  local src
  src=$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
  rm -rf "$cache/cert-manager-crds" && mkdir -p "$cache/cert-manager-crds"
  cp "$src"/deploy/crds/crd-*.yaml "$cache/cert-manager-crds/"
  chmod -R u+w "$cache/cert-manager-crds"
  for name in cert-manager-controller cert-manager-cainjector cmctl; do stamp "$name" "$v"; done
}

# The node's container runtime. Debian's containerd 1.6 also works with kubelet 1.37,
# through a fallback that Kubernetes 1.38 removes; 2.x is built from its module instead.
# btrfs, devmapper and zfs snapshotters need C headers and are not used (overlayfs is).
build_containerd() {
  local v=$CONTAINERD_VERSION
  if have containerd "$v" && have containerd-shim-runc-v2 "$v" && have ctr "$v"; then
    log "containerd $v already built"
    return
  fi
  local dir="$build/containerd-$v"
  mkdir -p "$dir"
  printf 'module localbuild/containerd\n\ngo 1.26\n\nrequire github.com/containerd/containerd/v2 %s\n' "$v" >"$dir/go.mod"
  write_tools_go "$dir" github.com/containerd/containerd/v2/cmd/{containerd,containerd-shim-runc-v2,ctr}
  (cd "$dir" && go mod tidy)
  local ldflags="-X github.com/containerd/containerd/v2/version.Version=$v"
  local tags="no_btrfs no_devmapper no_zfs"
  for cmd in containerd ctr; do
    log "building $cmd $v"
    (cd "$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$bin/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd")
  done
  # The shim is started by containerd for every Pod: static, as containerd's own release builds it.
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$bin/containerd-shim-runc-v2" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2)
  for name in containerd ctr containerd-shim-runc-v2; do stamp "$name" "$v"; done
}

go_install() {
  local name=$1 pkg=$2 v=$3
  have "$name" "$v" && { log "$name $v already built"; return; }
  GOBIN="$bin" go install -trimpath "$pkg@$v"
  stamp "$name" "$v"
}

# Helm's own Makefile stamps its version and the Kubernetes version it assumes
# without a cluster (`helm template`, `helm lint`), taken from its client-go;
# without these, helm reports no version and assumes Kubernetes v1.20.
build_helm() {
  local gomod client_go minor
  gomod=$(cd "$build" && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")
  minor=$(echo "$client_go" | cut -d. -f2)  # client-go v0.N.x is Kubernetes 1.N
  # The stamp names the Kubernetes version too, so a helm built without it is rebuilt.
  local want="$HELM_VERSION k8s-1.$minor"
  have helm "$want" && { log "helm $HELM_VERSION already built"; return; }
  local ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$bin" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  stamp helm "$want"
}

# Prometheus's module has no replace directives, so `go install` builds it at its tag.
# Its release builds (.promu.yml) stamp the version into prometheus/common and add
# `netgo` and `builtinassets`; the last embeds the web UI, whose assets npm generates
# and the module lacks, so without it the server serves its API and no UI.
build_prometheus() {
  local v=$PROMETHEUS_VERSION
  if have prometheus "$v" && have promtool "$v"; then
    log "prometheus $v already built"
    return
  fi
  local src
  src=$(cd "$build" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/prometheus@$v" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  local ldflags="-X github.com/prometheus/common/version.Version=$(cat "$src/VERSION")"
  log "building prometheus and promtool $(cat "$src/VERSION") ($v)"
  CGO_ENABLED=0 GOBIN="$bin" go install -trimpath -tags netgo -ldflags "$ldflags" \
    "github.com/prometheus/prometheus/cmd/prometheus@$v" "github.com/prometheus/prometheus/cmd/promtool@$v"
  for name in prometheus promtool; do stamp "$name" "$v"; done
}

# The reference webhook of bench/modes.py: our own source, so the stamp is its hash. It
# runs as Pods on the local cluster, so it is also an image (a static binary, FROM
# scratch) named by that hash: localhost/refwebhook:<first 12 of the stamp>.
build_refwebhook() {
  local src="$root/bench/refwebhook" want
  want=$(cat "$src/go.mod" "$src/main.go" | sha256sum | cut -d' ' -f1)
  image_stamp_ok "localhost/refwebhook:${want:0:12}" refwebhook "$want" && [[ -x "$bin/refwebhook" ]] \
    && { log "refwebhook already built"; return; }
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$bin/refwebhook" .)
  local ctx="$build/refwebhook-image"
  rm -rf "$ctx" && mkdir -p "$ctx" && cp "$bin/refwebhook" "$ctx/"
  printf 'FROM scratch\nCOPY refwebhook /refwebhook\nUSER 65532:65532\nENTRYPOINT ["/refwebhook"]\n' >"$ctx/Containerfile"
  podman build --quiet --network=none -t "localhost/refwebhook:${want:0:12}" -f "$ctx/Containerfile" "$ctx" >/dev/null
  stamp refwebhook "$want"
}

# The peers bench/peers.py compares ours with. Each compiles with a build cache of its
# own (GOCACHE, about 2.6 GB for Kyverno), deleted once the binary is built; the modules
# stay in the shared module cache. Their CRDs and install manifests ship inside their
# modules: a copy is kept under .cache, as for cert-manager.
peers_build_cache="$build/peers-gocache"

# Logs what a peer's build left: the binary, and the build cache about to be deleted.
peer_built() {
  local name=$1
  log "$name: binary $(du -sh "$bin/$name" | cut -f1), build cache $(du -sh "$peers_build_cache" | cut -f1) (deleted)"
  rm -rf "$peers_build_cache"
}

peer_manifests() {
  local dest=$1 src=$2; shift 2
  rm -rf "$dest" && mkdir -p "$dest"
  local path
  for path in "$@"; do cp -r "$src/$path" "$dest/"; done
  chmod -R u+w "$dest"
}

# Kyverno's go.mod has one replace line (k8s.io/pod-security-admission => its own fork),
# so `go install` refuses it: a build module of our own copies that line.
build_kyverno() {
  local v=$KYVERNO_VERSION
  have kyverno "$v" && [[ -d "$cache/kyverno" ]] && { log "kyverno $v already built"; return; }
  local dir="$build/kyverno-$v"
  mkdir -p "$dir"
  local gomod src
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "github.com/kyverno/kyverno@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    printf 'module localbuild/kyverno\n\ngo 1.26\n\nrequire github.com/kyverno/kyverno %s\n\n' "$v"
    grep -E '^replace k8s\.io/pod-security-admission ' "$gomod"
  } >"$dir/go.mod"
  write_tools_go "$dir" github.com/kyverno/kyverno/cmd/kyverno
  (cd "$dir" && go mod tidy)
  log "building kyverno $v"
  (cd "$dir" && GOCACHE="$peers_build_cache" go build -trimpath \
    -ldflags "-s -w -X github.com/kyverno/kyverno/pkg/version.BuildVersion=$v" \
    -o "$bin/kyverno" github.com/kyverno/kyverno/cmd/kyverno)
  peer_built kyverno
  src=$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/kyverno/kyverno)
  peer_manifests "$cache/kyverno" "$src/config" crds install-latest-testing.yaml
  stamp kyverno "$v"
}

# Gatekeeper's main package is its module's root, and its go.mod has no replace line.
build_gatekeeper() {
  local v=$GATEKEEPER_VERSION
  have gatekeeper "$v" && [[ -d "$cache/gatekeeper" ]] && { log "gatekeeper $v already built"; return; }
  local src
  src=$(cd "$build" && GOFLAGS=-mod=mod go mod download -json "github.com/open-policy-agent/gatekeeper/v3@$v" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  log "building gatekeeper $v"
  GOCACHE="$peers_build_cache" GOBIN="$bin" go install -trimpath \
    -ldflags "-X github.com/open-policy-agent/gatekeeper/v3/pkg/version.Version=$v" \
    "github.com/open-policy-agent/gatekeeper/v3@$v"
  peer_built gatekeeper
  peer_manifests "$cache/gatekeeper" "$src" charts/gatekeeper/crds deploy/gatekeeper.yaml
  stamp gatekeeper "$v"
}

install_peers() {
  command -v go >/dev/null || { log "go is required (see README)"; exit 1; }
  timed kyverno build_kyverno
  timed gatekeeper build_gatekeeper
  log "module cache: $(du -sh "$(go env GOMODCACHE)" | cut -f1) (kept)"
}

# Debian packages, installed only where missing. The node: podman builds the images
# (no Docker engine), runc runs containers, mmdebstrap makes the local base image,
# the CNI plugins give Pods their network, iptables is kube-proxy's and the CNI's.
# wrk drives bench/server.py (a C program with no Go module).
NODE_PACKAGES=(podman runc mmdebstrap uidmap netavark containernetworking-plugins iptables conntrack)
BENCH_PACKAGES=(wrk)

apt_install() {
  local missing=() name
  for name in "$@"; do
    dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed' || missing+=("$name")
  done
  ((${#missing[@]} == 0)) && { log "packages already installed: $*"; return; }
  command -v apt-get >/dev/null || { log "missing packages: ${missing[*]}: install them with your package manager (Debian 12 names)"; exit 1; }
  ((EUID == 0)) || { log "missing packages: ${missing[*]}: run as root, or install them first"; exit 1; }
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # An apt index too old to know a package: refresh once and try again.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# podman's settings for this host (runc, ulimits): see localcp/containers.conf.
export CONTAINERS_CONF="$root/localcp/containers.conf"

image_stamp_ok() { podman image exists "$1" && [[ "$(cat "$bin/.$2.version" 2>/dev/null)" == "$3" ]]; }

# The base of the image `make up` runs, where no container registry can be reached:
# Debian bookworm (its python3 is 3.11, PYTHON_VERSION) made with mmdebstrap from the
# host's own apt sources. Released images use the Dockerfile's default base (the
# official python image) instead; docs/how-it-works.md says how the two differ.
build_local_base() {
  local want
  want=$(printf '%s\n' "$LOCAL_BASE_IMAGE" "$(declare -f build_local_base)" | sha256sum | cut -d' ' -f1)
  image_stamp_ok "$LOCAL_BASE_IMAGE" local-base "$want" && { log "local base image already built"; return; }
  local sources=/etc/apt/sources.list.d/debian.sources
  [[ -f $sources ]] || sources=/etc/apt/sources.list
  local tar="$build/local-base.tar"
  log "making the local base image $LOCAL_BASE_IMAGE (mmdebstrap bookworm)"
  # The hooks: trust the CAs the host trusts (pip in the Dockerfile's RUN steps must
  # reach the package index the host reaches); let pip install beside Debian's
  # packages; the `python` name the Dockerfile calls; pip from Debian's wheels
  # (Debian disables ensurepip).
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook='if [ -d /usr/local/share/ca-certificates ]; then cp -r /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/"; fi' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf /usr/bin/python3 "$1/usr/local/bin/python"' \
    --customize-hook='chroot "$1" sh -c "whl=\$(echo /usr/share/python-wheels/pip-*.whl); python3 \$whl/pip install --quiet --no-index --find-links /usr/share/python-wheels pip setuptools"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$tar" "$sources"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV LANG=C.UTF-8' \
    "$tar" "$LOCAL_BASE_IMAGE" >/dev/null
  rm -f "$tar"
  echo "$want" >"$bin/.local-base.version"
}

# The Pods' sandbox image, from localcp/pause (a few lines of static Go).
build_pause_image() {
  local src="$root/localcp/pause" want
  want=$(cat "$src/go.mod" "$src/main.go" <(echo "$PAUSE_IMAGE") | sha256sum | cut -d' ' -f1)
  image_stamp_ok "$PAUSE_IMAGE" pause "$want" && { log "pause image already built"; return; }
  local ctx="$build/pause-image"
  rm -rf "$ctx" && mkdir -p "$ctx"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/pause" .)
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Containerfile"
  podman build --quiet --network=none -t "$PAUSE_IMAGE" -f "$ctx/Containerfile" "$ctx" >/dev/null
  echo "$want" >"$bin/.pause.version"
}

install_go() {
  command -v go >/dev/null || { log "go is required (see README)"; exit 1; }
  timed etcd build_etcd
  timed helm build_helm
  timed actionlint go_install actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
  timed helm-docs go_install helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$HELM_DOCS_VERSION"
  timed prometheus build_prometheus
  timed cert-manager build_cert_manager
  timed kubernetes build_kubernetes
  timed containerd build_containerd
  timed refwebhook build_refwebhook
}

install_node() {
  timed "node packages" apt_install "${NODE_PACKAGES[@]}"
  timed "local base image" build_local_base
  timed "pause image" build_pause_image
}

case "${1:-all}" in
  python) timed python install_python ;;
  go) install_go ;;
  node) install_node ;;
  bench) timed wrk apt_install "${BENCH_PACKAGES[@]}" ;;
  peers) install_peers ;;
  all) timed python install_python; install_node; install_go; timed wrk apt_install "${BENCH_PACKAGES[@]}" ;;
  *) echo "usage: $0 [python|go|node|bench|peers|all]" >&2; exit 2 ;;
esac
