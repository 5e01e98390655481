# shellcheck shell=bash
# Helpers of e2e-kind/run.sh, kept apart so that test/unit/kind-manifests.test.ts
# can run them (kind itself cannot run on this workplace's machines).

# The etcd image in the committed e2e-kind/flanneld-ts.yaml (ETCD_IMAGE in manifests.ts).
KIND_DEFAULT_ETCD_IMAGE=registry.k8s.io/etcd:3.5.16-0

# stdin: `kubeadm config images list` output; prints its etcd image, or fails.
kind_etcd_image() {
  local line found=''
  while read -r line; do
    case $line in
      */etcd:*)
        [ -z "$found" ] || { echo "kubeadm lists two etcd images: $found and $line" >&2; return 1; }
        found=$line
        ;;
    esac
  done
  [[ "$found" =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*/etcd:[A-Za-z0-9._-]+$ ]] || { echo "kubeadm lists no etcd image we can use (got '${found:-nothing}')" >&2; return 1; }
  printf '%s\n' "$found"
}

# $1: etcd image; stdin: e2e-kind/flanneld-ts.yaml; stdout: the same with that image.
kind_render_etcd_image() {
  local image=$1 text
  [[ "$image" =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*/etcd:[A-Za-z0-9._-]+$ ]] || { echo "not an etcd image reference: '$image'" >&2; return 1; }
  text=$(cat)
  grep -qF "image: $KIND_DEFAULT_ETCD_IMAGE" <<<"$text" || { echo "no 'image: $KIND_DEFAULT_ETCD_IMAGE' to replace in the manifest" >&2; return 1; }
  printf '%s\n' "${text//"image: $KIND_DEFAULT_ETCD_IMAGE"/"image: $image"}"
}

# $1: fs.inotify.max_user_instances, $2: fs.inotify.max_user_watches. kind's known
# issue: a multi-node cluster exhausts the defaults (128 instances on many
# distributions) and its pods fail with "too many open files".
kind_inotify_ok() {
  if [ "$1" -lt 512 ] || [ "$2" -lt 524288 ]; then
    echo "fs.inotify.max_user_instances=$1 and max_user_watches=$2 are too low for a three-node kind cluster (kind's known issue); raise them: sudo sysctl fs.inotify.max_user_instances=512 fs.inotify.max_user_watches=524288" >&2
    return 1
  fi
}
