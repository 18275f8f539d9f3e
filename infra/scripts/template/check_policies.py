#!/usr/bin/env python3
"""Checks what each Lambda function's execution role may do, in the
translated template (translate.py's output): every (action, resource,
condition) the role grants -- its inline policies, AWS::IAM::Policy
resources attached to it and the AWS managed policies it lists, expanded --
must be exactly the list below. An extra grant fails (a privilege nobody
asked for), and so does a missing one (the list is stale, or a function
lost what it needs).

Resources are written as in the template, intrinsics folded to ${...}:
  {"Ref": "X"} -> ${X};  {"Fn::GetAtt": ["X", "Arn"]} -> ${X.Arn};
  {"Fn::Sub": "s"} -> s;  {"Fn::If": [c, a, b]} -> both a and b (the
  AWS::NoValue branch is dropped); a whole policy under Fn::If likewise.
A condition is part of the grant: losing `dynamodb:LeadingKeys` or
`ses:FromAddress` widens it as much as a new action does.

Usage: check_policies.py [.stack/template.translated.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# -- Conditions and resources used below --------------------------------------


def cond(c: dict | None) -> str:
    return "" if not c else json.dumps(c, sort_keys=True, separators=(",", ":"))


def leading_keys(*prefixes: str) -> str:
    return cond({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(prefixes)}})


FROM_MAIL_FROM = cond({"StringEquals": {"ses:FromAddress": "${MailFrom}"}})

TABLE = "${Table.Arn}"
PHOTOS = "${PhotoBucket.Arn}/photos/*"
SES_IDENTITIES = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*"
SES_CONFIG_SET = ("arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}"
                  ":configuration-set/${SesConfigurationSet}")
STREAM = "${Table.StreamArn}"


def grants(actions: list[str], resources: list[str], condition: str = "") -> set[tuple[str, str, str]]:
    return {(a, r, condition) for a in actions for r in resources}


# What SAM's generated execution role attaches to every function it makes a
# role for: CloudWatch Logs to any log group, and X-Ray.
SAM_BASIC_ROLE = grants(
    ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], ["*"]
) | grants(
    ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
     "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"], ["*"]
)

# -- The expected grants, one entry per function -----------------------------

EXPECTED: dict[str, set[tuple[str, str, str]]] = {
    # GET/POST /q/{code}, /s/{ref}, /static/{name}: the technician's form.
    "QrIntakeFunction": (
        # Writes a new report only as its inbox item (R#) and "received"
        # event, idempotency keys (I#) and the Salesforce asset cache (A#),
        # in the report's one transaction (each item authorized as its own
        # PutItem): no write on P#, so nothing it writes is a proposal past
        # RECEIVED.
        grants(["dynamodb:PutItem"], [TABLE], leading_keys("R#*", "I#*", "A#*"))
        # The rate-limit counters (RL#), nothing else, by UpdateItem.
        | grants(["dynamodb:UpdateItem"], [TABLE], leading_keys("RL#*"))
        # The reads before a form or a report, one BatchGetItem: the QR
        # code's revocation (QR#, never written here), the asset cache,
        # the idempotency key, the rate-limit windows.
        | grants(["dynamodb:BatchGetItem"], [TABLE],
                 leading_keys("QR#*", "A#*", "I#*", "RL#*"))
        # Single reads: the status page (P#, or R# before structuring), a
        # resend's idempotency key, a moved window and sticker codes (K#,
        # never written here).
        | grants(["dynamodb:GetItem"], [TABLE],
                 leading_keys("P#*", "R#*", "I#*", "RL#*", "K#*"))
        # Uploads the photo; never reads photos back.
        | grants(["s3:PutObject"], [PHOTOS])
        # The read-only Salesforce credential (asset lookup; never the
        # commit function's) and the QR verification keys.
        | grants(["secretsmanager:GetSecretValue"], ["${SalesforceReadSecret}", "${KeysSecret}"])
        # SAM's generated role (HTTP function, no stream): logs and X-Ray.
        | SAM_BASIC_ROLE
    ),
    # ANY /mcp: AI assistants propose records; nothing they do is a write
    # to Salesforce or a decision.
    "McpFunction": (
        # As qr-intake: an assistant's proposal is written only as an inbox
        # item (R#) with its event, idempotency keys (I#), the asset cache
        # (A#); per-token windows (RL#) by UpdateItem. No write on P# or T#.
        grants(["dynamodb:PutItem"], [TABLE], leading_keys("R#*", "I#*", "A#*"))
        | grants(["dynamodb:UpdateItem"], [TABLE], leading_keys("RL#*"))
        # Reads: get_proposal (P#, R#), the rest, and the caller's token by
        # its hash (T#).
        | grants(["dynamodb:GetItem"], [TABLE],
                 leading_keys("P#*", "R#*", "I#*", "A#*", "RL#*", "T#*"))
        # The read-only Salesforce credential (asset search) and the
        # status-link key.
        | grants(["secretsmanager:GetSecretValue"], ["${SalesforceReadSecret}", "${KeysSecret}"])
        # SAM's generated role (HTTP function, no stream): logs and X-Ray.
        | SAM_BASIC_ROLE
    ),
    # Stream step on RECEIVED: structures the notes, mails the reviewers.
    "StructureFunction": (
        # Reads the proposal or, before structuring, the inbox item (R#).
        grants(["dynamodb:GetItem"], [TABLE], leading_keys("P#*", "R#*"))
        # The only function that writes new proposals (P#): from an inbox
        # item, which it marks moved in the same transaction (R#).
        | grants(["dynamodb:PutItem"], [TABLE], leading_keys("P#*"))
        | grants(["dynamodb:UpdateItem"], [TABLE], leading_keys("R#*"))
        # Its 5-minute sweep finds stuck RECEIVED / unmailed / undecided
        # ones by status; the duplicate lookup, pending reports of an asset.
        | grants(["dynamodb:Query"], ["${Table.Arn}/index/by_status"])
        # The read-only Salesforce credential (duplicate lookup: open Cases).
        | grants(["secretsmanager:GetSecretValue"], ["${SalesforceReadSecret}"])
        # The photo, attached to the review mail / structuring.
        | grants(["s3:GetObject"], [PHOTOS])
        # The review mail, only from MailFrom (identity and, when set, the
        # configuration set).
        | grants(["ses:SendEmail"], [SES_IDENTITIES, SES_CONFIG_SET], FROM_MAIL_FROM)
        # Records that failed every retry go to the failure queue (the
        # event source mapping sends them with this role).
        | grants(["sqs:SendMessage"], ["${StreamFailures.Arn}"])
        # The event source mapping reads this table's stream, and no other.
        | grants(["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                 [STREAM])
        # ListStreams has no resource type in IAM: "*" is the only form. It
        # lists stream ARNs, never their records.
        | grants(["dynamodb:ListStreams"], ["*"])
        # Its own log group only (the group exists: no CreateLogGroup).
        | grants(["logs:CreateLogStream", "logs:PutLogEvents"], ["${StructureLogGroup.Arn}"])
        # Active tracing; X-Ray's put actions have no resource type.
        | grants(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"])
    ),
    # GET/POST /r/{token}, /r/{token}/photo: the review page and decision.
    "ApprovalFunction": (
        # Reads the proposal (R# too, for one whose P# item expired),
        # writes the decision and its audit event (P# only).
        grants(["dynamodb:GetItem"], [TABLE], leading_keys("P#*", "R#*"))
        | grants(["dynamodb:PutItem"], [TABLE], leading_keys("P#*"))
        # Shows the photo to the reviewer.
        | grants(["s3:GetObject"], [PHOTOS])
        # Verifies the signed review links.
        | grants(["secretsmanager:GetSecretValue"], ["${KeysSecret}"])
        # Only with AdminTokenHash set (Fn::If): the read-only /admin page
        # reads a proposal's events (P#) and lists proposals by status.
        | grants(["dynamodb:Query"], [TABLE], leading_keys("P#*"))
        | grants(["dynamodb:Query"], ["${Table.Arn}/index/by_status"])
        # SAM's generated role (HTTP function, no stream): logs and X-Ray.
        | SAM_BASIC_ROLE
    ),
    # Stream step on APPROVED (and the 5-minute sweep): commits to
    # Salesforce once, then publishes the handoff.
    "CommitFunction": (
        # The proposal and its commit steps/audit events (writes: P# only;
        # reads: R# too, as approval).
        grants(["dynamodb:GetItem"], [TABLE], leading_keys("P#*", "R#*"))
        | grants(["dynamodb:PutItem"], [TABLE], leading_keys("P#*"))
        # The sweep finds paused commits and unanswered reviews by status.
        | grants(["dynamodb:Query"], ["${Table.Arn}/index/by_status"])
        # Attaches the photo to the Salesforce record.
        | grants(["s3:GetObject"], [PHOTOS])
        # The handoff message.
        | grants(["sns:Publish"], ["${HandoffTopic}"])
        # Mail (needs-attention review rounds, the reporter's outcome), only
        # from MailFrom.
        | grants(["ses:SendEmail"], [SES_IDENTITIES, SES_CONFIG_SET], FROM_MAIL_FROM)
        # Salesforce credentials; the link key signs the status link in the
        # reporter's outcome mail.
        | grants(["secretsmanager:GetSecretValue"], ["${SalesforceSecret}", "${KeysSecret}"])
        # Failed records to the failure queue.
        | grants(["sqs:SendMessage"], ["${StreamFailures.Arn}"])
        # This table's stream only; ListStreams: "*" (see StructureFunction).
        | grants(["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                 [STREAM])
        | grants(["dynamodb:ListStreams"], ["*"])
        | grants(["logs:CreateLogStream", "logs:PutLogEvents"], ["${CommitLogGroup.Arn}"])
        | grants(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"])
    ),
}

# -- The rule behind the public functions' lists ------------------------------

# The functions anyone on the internet can call. Beyond matching their list,
# none of their grants may write a proposal item: every table write they
# have must be limited by dynamodb:LeadingKeys to patterns that cannot match
# a key `P#<id>` (IAM's StringLike: `*` any run, `?` one character). Then a
# compromised one can write only the intake's inbox items (R#), which the
# structure step alone turns into proposals (README, Security).
PUBLIC_FUNCTIONS = ("QrIntakeFunction", "McpFunction")
TABLE_WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem", "dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate",
                "dynamodb:PartiQLDelete", "dynamodb:ImportTable", "dynamodb:RestoreTableToPointInTime",
                "dynamodb:*", "*"}
PROPOSAL_KEY = "P#01JD0000000000000000000000"


def writes_proposals(got: set[tuple[str, str, str]]) -> list[str]:
    import fnmatch
    out = []
    for g in sorted(got):
        action, resource, condition = g
        if action not in TABLE_WRITES or not (resource.startswith(TABLE) or resource == "*"):
            continue
        c = json.loads(condition) if condition else {}
        patterns = (c.get("ForAllValues:StringLike") or {}).get("dynamodb:LeadingKeys")
        # Only ForAllValues limits every key of the request; with nothing
        # else in the condition, so no other operator can widen it.
        if not patterns or set(c) != {"ForAllValues:StringLike"}:
            out.append(f"writes the table without a LeadingKeys limit: {show(g)}")
        elif any(fnmatch.fnmatchcase(PROPOSAL_KEY, p) for p in patterns):
            out.append(f"may write proposal items (P#): {show(g)}")
    return out


# -- AWS managed policies, expanded (their published documents) ---------------

_AWS = "arn:aws:iam::aws:policy/"
MANAGED: dict[str, list[dict]] = {
    _AWS + "service-role/AWSLambdaBasicExecutionRole": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream",
                                       "logs:PutLogEvents"], "Resource": "*"},
    ],
    _AWS + "AWSXrayWriteOnlyAccess": [
        {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords",
                                       "xray:GetSamplingRules", "xray:GetSamplingTargets",
                                       "xray:GetSamplingStatisticSummaries"], "Resource": "*"},
    ],
    _AWS + "AWSXRayDaemonWriteAccess": [
        {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords",
                                       "xray:GetSamplingRules", "xray:GetSamplingTargets",
                                       "xray:GetSamplingStatisticSummaries"], "Resource": "*"},
    ],
    # Every stream in the account: what SAM attaches for a DynamoDB event.
    _AWS + "service-role/AWSLambdaDynamoDBExecutionRole": [
        {"Effect": "Allow", "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords",
                                       "dynamodb:GetShardIterator", "dynamodb:ListStreams",
                                       "logs:CreateLogGroup", "logs:CreateLogStream",
                                       "logs:PutLogEvents"], "Resource": "*"},
    ],
}

# -- Reading the translated template ------------------------------------------


class Unreadable(Exception):
    pass


def fold(value) -> list[str]:
    """A resource value -> the strings it may take (see the module doc)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in fold(v)]
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return [] if arg == "AWS::NoValue" else ["${" + arg + "}"]
        if fn == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else arg.split(".", 1)
            return ["${" + ".".join(parts) + "}"]
        if fn == "Fn::Sub" and isinstance(arg, str):
            return [arg]
        if fn == "Fn::If":
            return fold(arg[1]) + fold(arg[2])
    raise Unreadable(f"resource not understood: {json.dumps(value)}")


def fold_condition(c) -> str:
    """Intrinsics inside a condition -> ${...} strings, then canonical JSON."""
    def walk(v):
        if isinstance(v, dict):
            if len(v) == 1 and next(iter(v)) in ("Ref", "Fn::GetAtt", "Fn::Sub"):
                (s,) = fold(v)
                return s
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v
    return cond(walk(c)) if c else ""


def statement_grants(stmt: dict, where: str) -> set[tuple[str, str, str]]:
    if stmt.get("Effect") != "Allow":
        return set()
    if "NotAction" in stmt or "NotResource" in stmt:
        raise Unreadable(f"{where}: NotAction/NotResource grants are not allowed")
    actions = stmt.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    resources = fold(stmt.get("Resource", []))
    if not actions or not resources:
        raise Unreadable(f"{where}: a statement without Action or Resource")
    return grants(actions, resources, fold_condition(stmt.get("Condition")))


def document_grants(doc, where: str) -> set[tuple[str, str, str]]:
    stmts = doc.get("Statement", []) if isinstance(doc, dict) else []
    stmts = [stmts] if isinstance(stmts, dict) else stmts
    out: set[tuple[str, str, str]] = set()
    for i, s in enumerate(stmts):
        out |= statement_grants(s, f"{where} statement {i}")
    return out


def role_of(function: dict) -> str:
    role = (function.get("Properties") or {}).get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        target = role["Fn::GetAtt"]
        parts = target if isinstance(target, list) else target.split(".", 1)
        if parts[1] == "Arn":
            return parts[0]
    raise Unreadable(f"Role is not a role of this template: {json.dumps(role)}")


def conditional_policies(policies: list) -> list[dict]:
    """A policy under Fn::If (granted only when a parameter asks for it)
    counts as granted: both branches, the AWS::NoValue one dropped."""
    out = []
    for p in policies:
        if isinstance(p, dict) and list(p) == ["Fn::If"]:
            out += conditional_policies([b for b in p["Fn::If"][1:]
                                         if b != {"Ref": "AWS::NoValue"}])
        else:
            out.append(p)
    return out


def role_grants(resources: dict, role_id: str) -> set[tuple[str, str, str]]:
    role = resources.get(role_id)
    if not role or role.get("Type") != "AWS::IAM::Role":
        raise Unreadable(f"{role_id} is not an AWS::IAM::Role")
    props = role.get("Properties") or {}
    check_trust(role_id, props.get("AssumeRolePolicyDocument", {}))
    out: set[tuple[str, str, str]] = set()
    for p in conditional_policies(props.get("Policies", []) or []):
        out |= document_grants(p.get("PolicyDocument", {}), f"{role_id} {p.get('PolicyName')}")
    for arn in props.get("ManagedPolicyArns", []) or []:
        if not isinstance(arn, str) or arn not in MANAGED:
            raise Unreadable(f"{role_id}: managed policy {json.dumps(arn)} is not known here; "
                             "add its document to MANAGED or replace it with statements")
        out |= document_grants({"Statement": MANAGED[arn]}, f"{role_id} {arn}")
    # Policies defined elsewhere and attached to this role.
    for pid, res in resources.items():
        if res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            p = res.get("Properties") or {}
            roles = p.get("Roles", []) + ([p["RoleName"]] if "RoleName" in p else [])
            if any(r == {"Ref": role_id} or r == role_id for r in roles):
                out |= document_grants(p.get("PolicyDocument", {}), pid)
    return out


def check_trust(role_id: str, doc: dict) -> None:
    stmts = doc.get("Statement", [])
    stmts = [stmts] if isinstance(stmts, dict) else stmts
    for s in stmts:
        actions = s.get("Action")
        actions = [actions] if isinstance(actions, str) else actions
        services = (s.get("Principal") or {}).get("Service")
        services = [services] if isinstance(services, str) else services
        if (s.get("Effect") != "Allow" or actions != ["sts:AssumeRole"]
                or set(s.get("Principal", {})) != {"Service"} or services != ["lambda.amazonaws.com"]):
            raise Unreadable(f"{role_id}: trust policy must let only lambda.amazonaws.com assume it: "
                             f"{json.dumps(s)}")


def show(g: tuple[str, str, str]) -> str:
    a, r, c = g
    return f"{a} on {r}" + (f" if {c}" if c else "")


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else ROOT / ".stack" / "template.translated.json"
    resources = json.loads(path.read_text(encoding="utf-8")).get("Resources", {})
    functions = sorted(k for k, v in resources.items() if v.get("Type") == "AWS::Lambda::Function")
    passed = failed = 0
    for name in sorted(set(functions) | set(EXPECTED)):
        problems: list[str] = []
        if name not in resources:
            problems.append("expected here, not in the template")
        elif name not in EXPECTED:
            problems.append("no expected grants listed in check_policies.py")
        else:
            try:
                role = role_of(resources[name])
                got = role_grants(resources, role)
                for g in sorted(got - EXPECTED[name]):
                    problems.append(f"extra:   {show(g)}")
                for g in sorted(EXPECTED[name] - got):
                    problems.append(f"missing: {show(g)}")
                if name in PUBLIC_FUNCTIONS:
                    problems.extend(writes_proposals(got))
            except Unreadable as e:
                problems.append(str(e))
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"       {p}")
        else:
            passed += 1
            print(f"ok   {name} ({role}: {len(got)} grants, as listed)")
    print(f"template policies: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
