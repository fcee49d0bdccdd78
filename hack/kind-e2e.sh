#!/usr/bin/env bash
# Runs the e2e suite (tests/e2e) against the chart installed on a kind cluster, from
# the image built from this tree. CI's kind job runs exactly this script, so a green
# run here is a green run there. Needs Docker.
#
#   1. the kind cluster from ci/kind-config.yaml (created if absent, else reused);
#   2. the image, built from the Dockerfile and loaded into the cluster's nodes;
#   3. cert-manager CERT_MANAGER_KIND_VERSION, from its release's static manifest;
#   4. the chart, with that image and imagePullPolicy Never;
#   5. `make test-e2e` (pytest -m e2e tests/e2e) with E2E_KUBECONFIG set to the cluster.
#
# Usage: hack/kind-e2e.sh [--teardown] [--no-test]
#   --teardown   delete the cluster when done, whether the run passed or not
#   --no-test    stop once the chart is installed (to poke at the cluster by hand)
# Environment (defaults in brackets):
#   KIND_CLUSTER_NAME [pod-labeler]   KIND_KUBECONFIG [.cache/kind/kubeconfig]
#   IMAGE_REPOSITORY [ghcr.io/pod-labeler/pod-labeler]
#   IMAGE_TAG [kind-<image id>: only a changed image rolls the Deployment]
#   E2E_RELEASE [webhook], E2E_RELEASE_NAMESPACE [pod-labeler]: what tests/e2e expects.
#
# Tools: kind at KIND_VERSION (built with `go install` into .cache/bin when the one on
# PATH is another version), kubectl and helm (`make install` builds both into
# .cache/bin; CI installs them with actions), docker.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=SCRIPTDIR/../versions.env
source "$root/versions.env"
export PATH="$root/.cache/bin:$root/.venv/bin:$PATH"

cluster=${KIND_CLUSTER_NAME:-pod-labeler}
kubeconfig=${KIND_KUBECONFIG:-$root/.cache/kind/kubeconfig}
repository=${IMAGE_REPOSITORY:-ghcr.io/pod-labeler/pod-labeler}
release=${E2E_RELEASE:-webhook}
namespace=${E2E_RELEASE_NAMESPACE:-pod-labeler}
teardown=false
run_tests=true

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --teardown) teardown=true ;;
    --no-test) run_tests=false ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

# Polls a command until it succeeds; on timeout, runs it once more so its error shows.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  log "waiting up to ${timeout}s for $what"
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what; last attempt:"
      "$@" || true
      return 1
    fi
    sleep 2
  done
}

ensure_kind() {
  local have=""
  command -v kind >/dev/null && have=$(kind version | awk '{print $2}')
  [[ $have == "$KIND_VERSION" ]] && return
  command -v go >/dev/null || die "kind $KIND_VERSION is needed (found: ${have:-none}), and go to build it"
  log "building kind $KIND_VERSION into .cache/bin (found: ${have:-none})"
  mkdir -p "$root/.cache/bin"
  GOBIN="$root/.cache/bin" go install "sigs.k8s.io/kind@$KIND_VERSION"
}

check_tools() {
  local tool
  for tool in docker kubectl helm make; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH (kubectl and helm: \`make install\` builds them)"
  done
  [[ -x $root/.venv/bin/pytest ]] || die ".venv has no pytest: run \`hack/install.sh python\`"
  docker info >/dev/null 2>&1 || die "docker cannot reach a Docker engine"
  ensure_kind
  local helm_version
  helm_version=$(helm version --template '{{.Version}}')
  [[ $helm_version == "$HELM_VERSION" ]] || log "note: helm is $helm_version, versions.env pins $HELM_VERSION"
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qxF "$cluster"; }

create_cluster() {
  mkdir -p "$(dirname "$kubeconfig")"
  if cluster_exists; then
    log "reusing kind cluster $cluster"
    kind export kubeconfig --name "$cluster" --kubeconfig "$kubeconfig"
  else
    log "creating kind cluster $cluster from ci/kind-config.yaml"
    kind create cluster --name "$cluster" --config "$root/ci/kind-config.yaml" \
      --kubeconfig "$kubeconfig" --wait 180s
  fi
  kubectl get nodes -o wide
}

# Sets $image to the built image, tagged by its content unless IMAGE_TAG says otherwise.
build_and_load_image() {
  local version revision id
  version=$(helm show chart "$root/chart" | awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}')
  revision=$(git -C "$root" rev-parse --verify --quiet HEAD 2>/dev/null || echo unknown)
  log "building the image (version $version, revision $revision)"
  docker build --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    --tag "$repository:kind-build" "$root"
  id=$(docker image inspect --format '{{.Id}}' "$repository:kind-build")
  id=${id#sha256:}
  image="$repository:${IMAGE_TAG:-kind-${id:0:12}}"
  docker tag "$repository:kind-build" "$image"
  log "loading $image into the nodes of $cluster"
  kind load docker-image "$image" --name "$cluster"
}

# A throwaway Issuer that the API server only accepts once cert-manager's webhook
# answers with a CA bundle the API server trusts (server-side dry run: nothing is
# stored). This is what cert-manager's own "verify the installation" step checks.
issuer_dry_run() {
  kubectl apply --dry-run=server -f - <<'YAML'
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: kind-e2e-probe
  namespace: default
spec:
  selfSigned: {}
YAML
}

install_cert_manager() {
  local url="https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_KIND_VERSION/cert-manager.yaml"
  log "installing cert-manager $CERT_MANAGER_KIND_VERSION"
  kubectl apply -f "$url"
  kubectl -n cert-manager rollout status deployment/cert-manager deployment/cert-manager-cainjector \
    deployment/cert-manager-webhook --timeout=300s
  wait_for 180 "cert-manager's webhook to accept an Issuer" issuer_dry_run
}

webhook_has_ca_bundle() {
  local bundles
  bundles=$(kubectl get mutatingwebhookconfigurations -l "app.kubernetes.io/instance=$release" \
    -o jsonpath='{.items[*].webhooks[*].clientConfig.caBundle}')
  [[ -n $bundles ]]
}

install_chart() {
  log "installing the chart as release $release in namespace $namespace"
  helm upgrade --install "$release" "$root/chart" --namespace "$namespace" --create-namespace \
    --set-string "image.repository=${image%:*}" --set-string "image.tag=${image##*:}" \
    --set-string image.pullPolicy=Never --wait --timeout 5m
  wait_for 120 "cert-manager to inject the CA into the release's webhook configuration" \
    webhook_has_ca_bundle
  kubectl -n "$namespace" get pods -o wide
}

# `make test-e2e` is the one definition of how the suite runs, on any cluster.
run_e2e() {
  log "running tests/e2e against $cluster"
  E2E_RELEASE=$release E2E_RELEASE_NAMESPACE=$namespace \
    make -C "$root" --no-print-directory test-e2e "E2E_KUBECONFIG=$kubeconfig"
}

delete_cluster() {
  log "deleting kind cluster $cluster"
  kind delete cluster --name "$cluster" --kubeconfig "$kubeconfig"
}

check_tools
if $teardown; then
  trap delete_cluster EXIT
fi
export KUBECONFIG=$kubeconfig
create_cluster
build_and_load_image
install_cert_manager
install_chart
if $run_tests; then
  run_e2e
else
  log "chart installed; KUBECONFIG=$kubeconfig reaches the cluster"
fi
