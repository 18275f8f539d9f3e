#!/usr/bin/env python3
"""Translates template.yaml with the SAM translator, offline, into the
CloudFormation template that a deploy hands to CloudFormation, and writes it
as JSON (default .stack/template.translated.json).

Linting the SAM source only checks the SAM shapes; a circular dependency or
an over-broad role appears only after translation, so test.sh lints and
checks this output too.

Offline, as `sam validate` and cfn-lint's former SAM transform do it:
- local `CodeUri`s become S3 URIs, which is what `sam package` (run by
  `sam deploy`) does before CloudFormation's transform sees the template;
- the region and account are fake (a boto3 session with a region and no
  credentials; nothing here makes a request);
- managed policy names resolve from the map bundled with samtranslator,
  never from IAM.

Usage: translate.py [template.yaml] [out.json]
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import boto3
import yaml
from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.parser.parser import Parser
from samtranslator.public.exceptions import InvalidDocumentException
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
ACCOUNT = "123456789012"
# What `sam package` would upload the code to; the bucket does not exist.
ARTIFACT_BUCKET = "fieldgate-artifacts-offline"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !GetAtt...)."""


def _tag(loader: _CfnLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


def load(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=_CfnLoader)  # noqa: S506 (SafeLoader subclass)


def package(template: dict) -> None:
    """Replaces local code paths with S3 URIs, as `sam package` does."""
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function":
            uri = props.get("CodeUri")
            if isinstance(uri, str) and not uri.startswith("s3://"):
                props["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{logical_id}.zip"
        if resource.get("Type") in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi"):
            uri = props.get("DefinitionUri")
            if isinstance(uri, str) and not uri.startswith("s3://"):
                props["DefinitionUri"] = f"s3://{ARTIFACT_BUCKET}/{logical_id}.yaml"


def translate(template: dict) -> dict:
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    session = boto3.session.Session(region_name=REGION)
    partition = "aws"
    policies = get_bundled_managed_policy_map(partition) or {}
    translator = Translator(
        managed_policy_map=None, sam_parser=Parser(), boto_session=session
    )
    return translator.translate(
        template,
        parameter_values={"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": partition},
        get_managed_policy_map=lambda: policies,
    )


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else ROOT / "template.yaml"
    out = Path(argv[2]) if len(argv) > 2 else ROOT / ".stack" / "template.translated.json"
    template = load(src)
    package(template)
    try:
        translated = translate(template)
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"{src}: SAM transform: {cause.message}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(translated, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"translated {src.name} -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
          f"({len(translated.get('Resources', {}))} resources)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
