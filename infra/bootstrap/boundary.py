"""The stack program's side of the deploy roles' contract: every IAM role a stack creates
carries the stack's permissions boundary (created by infra/bootstrap), or the deploy role may
not create it."""

from __future__ import annotations

import pulumi

from infra.bootstrap.policies import boundary_arn

ROLE_TYPE = "aws:iam/role:Role"


def apply_boundary(account: pulumi.Input[str], stack: str) -> None:
    """Set `permissionsBoundary` on every role this program declares, wherever it is declared."""
    arn = pulumi.Output.from_input(account).apply(lambda acct: boundary_arn(acct, stack))

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if args.type_ != ROLE_TYPE:
            return None
        return pulumi.ResourceTransformationResult({**args.props, "permissions_boundary": arn}, args.opts)

    # A stack transformation runs in this process (under the test mocks too) and reaches every
    # resource the program declares; the program uses no multi-language components.
    pulumi.runtime.register_stack_transformation(transform)
