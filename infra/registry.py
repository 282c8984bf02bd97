"""Image layer: the ECR repository and the image built from the repository's Dockerfile."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RegistryArgs:
    name_prefix: str
    image_tag: str
    image_digest: str | None = None
    """Deploy this already-pushed digest (CI builds once per commit) instead of building."""
    gpu_image: bool = False
    """Also build the CUDA variant of the image for the GPU worker."""
    keep_images: int = 30


CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
GPU_TORCH_INDEX = "https://download.pytorch.org/whl/cu128"


class Registry(pulumi.ComponentResource):
    """Scan on push, immutable tags, and a lifecycle policy that bounds storage."""

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    """`repo:tag@sha256:...`: tasks pin the digest that was pushed."""
    gpu_image_ref: pulumi.Output[str] | None

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        repo = aws.ecr.Repository(
            f"{name}-repo",
            name=args.name_prefix,
            image_scanning_configuration={"scan_on_push": True},
            image_tag_mutability="IMMUTABLE",
            encryption_configurations=[{"encryption_type": "AES256"}],
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "drop untagged layers after a week",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": 7,
                            },
                            "action": {"type": "expire"},
                        },
                        {
                            "rulePriority": 2,
                            "description": f"keep the last {args.keep_images} images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": args.keep_images,
                            },
                            "action": {"type": "expire"},
                        },
                    ]
                }
            ),
            opts=child,
        )
        token = aws.ecr.get_authorization_token_output(registry_id=repo.registry_id)

        def build(suffix: str, torch_index: str) -> docker_build.Image:
            return docker_build.Image(
                f"{name}-image{suffix}",
                context=docker_build.BuildContextArgs(location=str(REPO_ROOT)),
                dockerfile=docker_build.DockerfileArgs(location=str(REPO_ROOT / "Dockerfile")),
                build_args={"TORCH_INDEX_URL": torch_index},
                platforms=[docker_build.Platform.LINUX_AMD64],
                push=True,
                tags=[repo.repository_url.apply(lambda url: f"{url}:{args.image_tag}{suffix}")],
                registries=[
                    docker_build.RegistryArgs(
                        address=repo.repository_url,
                        username=token.user_name,
                        password=token.password,
                    )
                ],
                opts=child,
            )

        if args.image_digest:
            # Built and smoke-tested once by CI; every stack runs that exact digest.
            digest = args.image_digest
            self.image_ref = repo.repository_url.apply(lambda url: f"{url}:{args.image_tag}@{digest}")
        else:
            self.image_ref = build("", CPU_TORCH_INDEX).ref
        self.gpu_image_ref = build("-gpu", GPU_TORCH_INDEX).ref if args.gpu_image else None
        self.repository_url = repo.repository_url
        self.repository_arn = repo.arn
        self.register_outputs({"repository_url": repo.repository_url, "image_ref": self.image_ref})
