#!/usr/bin/env bash
# Build the image for a commit and push it, once: `scripts/push-image.sh REPO_URL TAG [build
# options...]` prints the pushed digest (deploy.yml's build job). ECR tags are immutable, so a
# re-run of the same commit finds the image it already pushed and reuses its digest.
set -euo pipefail
repo=$1 tag=$2
shift 2
aws ecr get-login-password | docker login --username AWS --password-stdin "${repo%%/*}" >&2
digest=$(aws ecr describe-images --repository-name "${repo#*/}" --image-ids imageTag="$tag" \
  --query 'imageDetails[0].imageDigest' --output text 2>/dev/null || true)
if [ -z "$digest" ] || [ "$digest" = "None" ]; then
  metadata=$(mktemp)
  docker buildx build --platform linux/amd64 --push --tag "$repo:$tag" --metadata-file "$metadata" "$@" . >&2
  digest=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$metadata")
fi
echo "$digest"
