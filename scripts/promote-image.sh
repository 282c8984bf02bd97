#!/usr/bin/env bash
# Copy the manifest dev tested to another repository, by digest, without rebuilding:
# `scripts/promote-image.sh SOURCE_REPO_URL DIGEST TARGET_REPO_URL TAG` (deploy.yml's prod job).
# Fails unless the copy has that very digest.
set -euo pipefail
source=$1 digest=$2 target=$3 tag=$4
aws ecr get-login-password | docker login --username AWS --password-stdin "${target%%/*}" >&2
docker buildx imagetools create --tag "$target:$tag" "$source@$digest" >&2 || echo "$target:$tag exists (a re-run)" >&2
copied=$(docker buildx imagetools inspect "$target:$tag" --format '{{json .Manifest}}' \
  | python -c 'import json, sys; print(json.load(sys.stdin)["digest"])')
test "$copied" = "$digest" || { echo "$target:$tag is $copied, not the tested $digest" >&2; exit 1; }
