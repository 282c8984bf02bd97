"""Edge protection layer: an AWS WAF web ACL on the public ALB.

AWS's managed rule groups (common exploits, known bad inputs, the Amazon IP reputation list) and
per-address rate limits, a tighter one for the requests that decode a photo and run the model.
Rate limits here stop a flood before it reaches a task; the app's own per-client limits
(PRETHRIFT_LIMITS_*) still apply behind it.
https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-list.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# Requests that decode an image and run CLIP: photo search and uploads.
PHOTO_PATHS: tuple[tuple[str, str], ...] = (("/api/search/image", "STARTS_WITH"), ("/api/items", "EXACTLY"))

MANAGED_RULE_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
)


@dataclass(frozen=True)
class WafArgs:
    name_prefix: str
    alb_arn: pulumi.Output[str]
    rate_limit: int
    """Requests per client address in 5 minutes, any path."""
    photo_rate_limit: int
    """The same for POSTs to PHOTO_PATHS."""


def _visibility(metric: str) -> Any:
    return {"cloudwatch_metrics_enabled": True, "sampled_requests_enabled": True, "metric_name": metric}


def _matches(field: dict[str, Any], value: str, how: str) -> dict[str, Any]:
    return {
        "byte_match_statement": {
            "field_to_match": field,
            "positional_constraint": how,
            "search_string": value,
            "text_transformations": [{"priority": 0, "type": "NONE"}],
        }
    }


def photo_requests() -> dict[str, Any]:
    """POST to photo search or to uploads."""
    return {
        "and_statement": {
            "statements": [
                _matches({"method": {}}, "POST", "EXACTLY"),
                {
                    "or_statement": {
                        "statements": [_matches({"uri_path": {}}, p, how) for p, how in PHOTO_PATHS]
                    }
                },
            ]
        }
    }


def _multipart() -> dict[str, Any]:
    return _matches({"single_header": {"name": "content-type"}}, "multipart/form-data", "STARTS_WITH")


def rules(args: WafArgs) -> list[Any]:
    """The web ACL's rules, cheapest verdicts first."""

    def managed(priority: int, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "priority": priority,
            "override_action": {"none": {}},
            "statement": {"managed_rule_group_statement": {"vendor_name": "AWS", "name": name, **extra}},
            "visibility_config": _visibility(name),
        }

    def rate(priority: int, name: str, limit: int, scope: dict[str, Any] | None) -> dict[str, Any]:
        statement: dict[str, Any] = {"limit": limit, "aggregate_key_type": "IP", "evaluation_window_sec": 300}
        if scope is not None:
            statement["scope_down_statement"] = scope
        return {
            "name": name,
            "priority": priority,
            "action": {"block": {}},
            "statement": {"rate_based_statement": statement},
            "visibility_config": _visibility(name),
        }

    return [
        managed(0, "AWSManagedRulesAmazonIpReputationList"),
        rate(1, "photo-rate-per-ip", args.photo_rate_limit, photo_requests()),
        rate(2, "rate-per-ip", args.rate_limit, None),
        # Photos are binary multipart bodies: the text signatures (XSS, LFI in the body) misfire on
        # JPEG bytes, and the 8 KB body-size rule would refuse every photo (the app bounds bodies
        # and pixels itself). Everything else gets the whole set.
        managed(
            3,
            "AWSManagedRulesCommonRuleSet",
            rule_action_overrides=[{"name": "SizeRestrictions_BODY", "action_to_use": {"count": {}}}],
            scope_down_statement={"not_statement": {"statement": _multipart()}},
        ),
        managed(4, "AWSManagedRulesKnownBadInputsRuleSet"),
    ]


class Waf(pulumi.ComponentResource):
    """A regional web ACL and its association with the ALB."""

    web_acl_arn: pulumi.Output[str]

    def __init__(self, name: str, args: WafArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Waf", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        acl = aws.wafv2.WebAcl(
            f"{name}-acl",
            name=f"{args.name_prefix}-edge",
            scope="REGIONAL",
            default_action=aws.wafv2.WebAclDefaultActionArgs(allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
            rules=rules(args),
            visibility_config=_visibility(f"{args.name_prefix}-edge"),
            opts=child,
        )
        aws.wafv2.WebAclAssociation(f"{name}-alb", resource_arn=args.alb_arn, web_acl_arn=acl.arn, opts=child)
        self.web_acl_arn = acl.arn
        self.register_outputs({"web_acl_arn": acl.arn})
