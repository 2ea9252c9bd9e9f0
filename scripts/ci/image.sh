#!/usr/bin/env bash
# image.sh: builds the CPU image from docker/Dockerfile and checks that the container runs,
# on a Debian 12 machine WITHOUT Docker (buildah + podman instead). Not run by CI (.ci/run):
# it needs root, installs packages, and takes ~15 minutes on 2 cores. From the repository root:
#
#   sudo scripts/ci/image.sh
#
# Steps:
#   1. apt-get install buildah podman mmdebstrap runc.
#   2. Base images. Where Docker Hub is unreachable (PULL_BASES=0, the default) it builds
#      local STAND-INS under the names the Dockerfile uses:
#        docker.io/library/debian:12-slim        mmdebstrap --variant=minbase bookworm
#                                                (+ bookworm-updates, bookworm-security)
#        docker.io/library/golang:1.26-bookworm  that + the official image's build tools
#                                                + the local Go tree ($(go env GOROOT)) at
#                                                /usr/local/go, GOPATH=/go, GOTOOLCHAIN=local
#      With PULL_BASES=1 it pulls the real ones instead.
#   3. buildah bud -f docker/Dockerfile (docker format, so HEALTHCHECK is kept).
#   4. podman run: /healthz, /readyz, /v1/models, POST /v1/predict on the bundled demo
#      model "claims", an ONNX model (engine/onnx/testdata/mlp.onnx) mounted at /models,
#      the user (uid/gid 10001), and the image's HEALTHCHECK (podman healthcheck run).
#
# Environment:
#   WORK=/var/tmp/predictd-image   scratch dir (rootfs tarball, Go context, test model repo)
#   IMAGE=localhost/predictd:cpu   the tag to build
#   PORT=18080                     host port published to the container's 8080
#   PULL_BASES=0                   1: pull debian:12-slim / golang:1.26-bookworm from Docker Hub
#   BUILD_CA=<file>                CA bundle for a TLS-inspecting proxy, given to the build as
#                                  the secret build_ca (see docker/Dockerfile). Default: the
#                                  certificates in /usr/local/share/ca-certificates, if any.
#   SKIP_BUILD=1                   only run the checks against an existing $IMAGE
#
# Everything heavy runs under nice -n 19.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
WORK=${WORK:-/var/tmp/predictd-image}
IMAGE=${IMAGE:-localhost/predictd:cpu}
PORT=${PORT:-18080}
PULL_BASES=${PULL_BASES:-0}
NICE="nice -n 19"
mkdir -p "$WORK"

if [ "$(id -u)" != 0 ]; then
  echo "image.sh: run as root (rootful buildah/podman)" >&2
  exit 2
fi

# --- 1. tools -------------------------------------------------------------------------
if ! command -v buildah >/dev/null || ! command -v podman >/dev/null \
   || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  $NICE apt-get install -y -qq buildah podman mmdebstrap runc
fi
buildah --version
podman --version

# A private containers.conf, so the host's is left alone. Both settings were needed on the
# sandbox this was first run on (cgroup v1, no CAP_SYS_RESOURCE) and are harmless elsewhere:
# - podman's default RLIMIT_NOFILE is 1048576; without CAP_SYS_RESOURCE the runtime cannot
#   raise the hard limit ("setrlimit RLIMIT_NOFILE: Operation not permitted"): ask for less;
# - crun refuses hybrid cgroup v1 hosts ("cgroups in hybrid mode not supported"): use runc.
cat > "$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf

# --- 2. base images -----------------------------------------------------------------------
slim=docker.io/library/debian:12-slim
golang=docker.io/library/golang:1.26-bookworm
if [ "$PULL_BASES" = 1 ]; then
  podman pull "$slim"
  podman pull "$golang"
else
  if ! podman image exists "$slim"; then
    # minbase = essential + apt, like the official slim image; docs, man pages and
    # locales are dropped as debian:*-slim does.
    rm -f "$WORK/debian-12-slim.tar"
    $NICE mmdebstrap --variant=minbase --mode=root \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --aptopt='Acquire::Languages "none"' \
      bookworm "$WORK/debian-12-slim.tar" \
      "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian bookworm-updates main" \
      "deb http://deb.debian.org/debian-security bookworm-security main"
    $NICE podman import --change 'CMD ["bash"]' "$WORK/debian-12-slim.tar" "$slim"
    rm -f "$WORK/debian-12-slim.tar"
  fi
  if ! podman image exists "$golang"; then
    goroot=$(go env GOROOT)
    case $(cat "$goroot/VERSION") in
      go1.26*) ;;
      *) echo "image.sh: $goroot is not Go 1.26" >&2; exit 1 ;;
    esac
    ctx=$WORK/golang-ctx
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp -a "$goroot" "$ctx/go"
    gover=$(head -1 "$goroot/VERSION")
    # The official image is buildpack-deps:bookworm-scm + g++ gcc libc6-dev make pkg-config
    # + the Go release tree; this carries the same build tools (no mercurial/subversion).
    cat > "$ctx/Containerfile" <<EOF
FROM $slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates curl wget gnupg netbase procps \\
      git openssh-client g++ gcc libc6-dev make pkg-config \\
 && rm -rf /var/lib/apt/lists/*
ENV GOLANG_VERSION=${gover#go} GOTOOLCHAIN=local GOPATH=/go
ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY go /usr/local/go
RUN mkdir -p /go/src /go/bin && chmod -R 1777 /go
WORKDIR /go
EOF
    $NICE buildah bud --network host -f "$ctx/Containerfile" -t "$golang" "$ctx"
    rm -rf "$ctx"
  fi
fi

# --- 3. build -------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  secret=()
  ca=${BUILD_CA:-}
  if [ -z "$ca" ] && compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    ca=$WORK/build_ca.crt
    cat /usr/local/share/ca-certificates/*.crt > "$ca"
  fi
  if [ -n "$ca" ]; then
    secret=(--secret "id=build_ca,src=$ca")
  fi
  # --format docker: the OCI format has no HEALTHCHECK (buildah drops it with a warning).
  # --ignorefile: buildah 1.28 also finds docker/Dockerfile.dockerignore by itself; explicit here.
  # --network host: RUN steps reach the module proxy, Debian and npm as the host does.
  $NICE buildah bud --format docker --layers --network host "${secret[@]}" \
    --ignorefile docker/Dockerfile.dockerignore -f docker/Dockerfile -t "$IMAGE" .
fi
podman image inspect "$IMAGE" --format 'image {{.Id}} user={{.Config.User}} healthcheck={{.Config.Healthcheck.Test}}'

# --- 4. run and check ------------------------------------------------------------------------
name=predictd-image-check
models=$WORK/models
rm -rf "$models"
mkdir -p "$models/claims/1" "$models/mlp/1"
cp examples/models/claims/1/* "$models/claims/1/"
cp engine/onnx/testdata/mlp.onnx "$models/mlp/1/model.onnx"
cat > "$models/mlp/1/model.yaml" <<'EOF'
format: onnx
file: model.onnx
features: [m0, m1, m2, m3, m4, m5, m6, m7]
onnx:
  inputs:
    - {name: x, features: [m0, m1, m2, m3, m4, m5, m6, m7]}
  output: {name: score}
EOF
chmod -R a+rX "$models"

cleanup() { podman rm -f "$name" "$name-models" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

# expect WHAT PATTERN TEXT: fail unless TEXT matches the extended regex PATTERN.
expect() {
  if ! grep -Eq -- "$2" <<<"$3"; then
    echo "image.sh: FAIL $1: want /$2/, got: $3" >&2
    exit 1
  fi
  echo "ok   $1"
}

# wait_ready PORT: /readyz answers 200 within 30 s.
wait_ready() {
  for _ in $(seq 60); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "image.sh: /readyz on port $1 not ready after 30s" >&2
  return 1
}

claims='{"model":"claims","candidates":[{"id":"policy-1","features":{"VehBrand":6,"VehPower":3,"VehGas":0,"Region":4,"Area":0,"VehAge":18,"DrivAge":55,"BonusMalus":50,"Density":43}}]}'

echo "== the image as built: bundled demo model"
# podman has no systemd here to schedule the periodic HEALTHCHECK ("unable to get systemd
# connection to add healthchecks"); `podman healthcheck run` below runs it once instead.
podman run -d --name "$name" -p "127.0.0.1:$PORT:8080" "$IMAGE" >/dev/null
wait_ready "$PORT"
base=http://127.0.0.1:$PORT
expect "GET /healthz" '^ok' "$(curl -fsS "$base/healthz")"
expect "GET /readyz" '^ready' "$(curl -fsS "$base/readyz")"
models_json=$(curl -fsS "$base/v1/models")
expect "GET /v1/models serves claims" '"name": *"claims"' "$models_json"
out=$(curl -fsS "$base/v1/predict" -H 'Content-Type: application/json' -d "$claims")
echo "     $out"
# README.md's example: score 0.037479219013189013 for policy-1
expect "POST /v1/predict claims" '"score":0\.0374792' "$out"
expect "container user" '^uid=10001\(predictd\) gid=10001\(predictd\)' "$(podman exec "$name" id)"
expect "process user" 'predictd +predictd +/usr/local/bin/predictd serve' "$(podman top "$name" user group args)"
expect "HEALTHCHECK in image" 'curl -fsS -o /dev/null http://127.0.0.1:8080/healthz' \
  "$(podman image inspect "$IMAGE" --format '{{.Config.Healthcheck.Test}}')"
podman healthcheck run "$name"
expect "podman healthcheck run" '^healthy$' "$(podman inspect "$name" --format '{{.State.Health.Status}}')"
expect "HEALTHCHECK command inside" '^200$' \
  "$(podman exec "$name" curl -fsS -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/healthz)"
expect "predictd-loadtest in image" 'open-loop load generator' \
  "$(podman exec "$name" /usr/local/bin/predictd-loadtest --help 2>&1 || true)"
expect "scenarios in image" 'smoke\.yaml' "$(podman exec "$name" ls /usr/share/predictd/scenarios)"
# SIGTERM: predictd drains and exits 0 (docker/README.md: stop timeout > --shutdown-timeout).
podman stop -t 40 "$name" >/dev/null
expect "exit status after podman stop (SIGTERM)" '^0$' "$(podman inspect "$name" --format '{{.State.ExitCode}}')"

echo "== a model repository at /models (LightGBM + ONNX), Unix socket in /var/run/predictd"
row=$(python3 -c 'import json; d = json.load(open("engine/onnx/testdata/mlp.inputs.json")); r = dict(zip(d["features"], d["rows"][0])); print(json.dumps({"model": "mlp", "candidates": [{"id": "r0", "features": {f"m{i}": r[f"m{i}"] for i in range(8)}}]}))')
want=$(python3 -c 'import json; print(json.load(open("engine/onnx/testdata/mlp.expected.json"))["outputs"]["score"][0])')
podman run -d --name "$name-models" -p "127.0.0.1:$((PORT + 1)):8080" \
  -v "$models:/models:ro" -e PREDICTD_MODELS=/models \
  -e PREDICTD_UNIX=/var/run/predictd/predictd.sock "$IMAGE" >/dev/null
wait_ready $((PORT + 1))
base=http://127.0.0.1:$((PORT + 1))
expect "GET /v1/models: mlp on ONNX Runtime (CPU)" '"backend": *"onnx/cpu"' "$(curl -fsS "$base/v1/models")"
out=$(curl -fsS "$base/v1/predict" -H 'Content-Type: application/json' -d "$row")
echo "     $out (ONNX Runtime reference: $want)"
got=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["predictions"][0]["score"])' "$out")
expect "POST /v1/predict mlp matches the reference" '^ok$' \
  "$(python3 -c 'import sys; print("ok" if abs(float(sys.argv[1]) - float(sys.argv[2])) < 1e-5 else "off")' "$got" "$want")"
expect "Unix socket (uid 10001 writes /var/run/predictd)" '^ready' \
  "$(podman exec "$name-models" curl -fsS --unix-socket /var/run/predictd/predictd.sock http://predictd/readyz)"

echo "== logs (first lines)"
podman logs "$name" 2>&1 | sed -n 1,5p
podman logs "$name-models" 2>&1 | sed -n 1,5p
echo "image.sh: OK ($IMAGE)"
