"""Image layer: the image the tasks run, by digest, from the ECR repository the bootstrap made.

The repository and its lifecycle policy belong to the account bootstrap (infra/bootstrap): the
deploy workflow's build job pushes to it before this stack's first `up`, so it must exist before
the stack does. The stack only looks it up by name. Nothing is built here: CI builds each image
once per commit (the GPU variant too, tagged `<tag>-gpu`) and every stack runs those digests."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

GPU_TAG_SUFFIX = "-gpu"
"""The CUDA build of the image is pushed to the same repository as `<tag>-gpu`."""


@dataclass(frozen=True)
class RegistryArgs:
    repository_name: str
    """The bootstrap's repository for this stack (the stack's name prefix, e.g. prethrift-dev)."""
    image_tag: str
    image_digest: str | None = None
    """`sha256:...` CI pushed for `image_tag`; without it (a preview before the first deploy, a
    by-hand plan) the tasks name the immutable tag alone."""
    gpu_image: bool = False
    """The stack runs the GPU worker, from the CUDA variant of the image."""
    gpu_image_digest: str | None = None


def image_ref(repository_url: pulumi.Input[str], tag: str, digest: str | None) -> pulumi.Output[str]:
    """`repo:tag@sha256:...`: ECS pulls exactly the digest CI tested, whatever the tag says."""
    return pulumi.Output.from_input(repository_url).apply(
        lambda url: f"{url}:{tag}@{digest}" if digest else f"{url}:{tag}"
    )


class Registry(pulumi.ComponentResource):
    """The stack's view of its image repository: URL, ARN (the execution role's pull right) and
    the image references its task definitions pin."""

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    gpu_image_ref: pulumi.Output[str] | None

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Registry", name, None, opts)
        repo = aws.ecr.get_repository_output(
            name=args.repository_name, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        self.repository_url = repo.repository_url
        self.repository_arn = repo.arn
        self.image_ref = image_ref(repo.repository_url, args.image_tag, args.image_digest)
        self.gpu_image_ref = (
            image_ref(repo.repository_url, args.image_tag + GPU_TAG_SUFFIX, args.gpu_image_digest)
            if args.gpu_image
            else None
        )
        self.register_outputs({"repository_url": repo.repository_url, "image_ref": self.image_ref})
