"""The packaged prod template: what ops and security rely on is asserted, not assumed.

The template is built once by the same code as ``python -m infra.check``; these tests
read it as plain data and check it against the app's routes and the PynamoDB models.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from pynamodb.attributes import Attribute, TTLAttribute
from pynamodb.models import Model

from chalicelib.billing.models import ChannelDay, MeterMark, PrepaidAccount, PrepaidEntry
from chalicelib.channels.models import Channel
from chalicelib.checkout.models import Quota
from chalicelib.core.models import Audit
from chalicelib.orders.models import Order
from chalicelib.partners.models import OutboxEvent, PartnerBreaker, PartnerStats, ParkedRecord
from chalicelib.supply.models import Goods, Stock, Upload
from chalicelib.tables import ALL_MODELS
from infra.check import FUNCTION_ZIP_MAX, dangling_targets, layer_problems, package, unmanaged_functions
from infra.state_machines import FULFILMENT_FUNCTIONS, SETTLEMENT_FUNCTIONS, order_fulfilment, settlement
from infra.state_machines import REFUND_RETRY_FUNCTIONS, refund_retry
from infra.template import (
    FULFIL_MODELS, SETTLE_GRANTS, SETTLEMENT_MACHINE, STATE_MACHINE, UPLOAD_TABLE_ACTIONS, table_suffix,
)
from infra.template import REFUNDS_MODELS, RETRY_MACHINE
from chalicelib.sales.models import Sale, SaleBuyer, SaleShard

HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head")
SIGV4 = [{"sigv4": []}]
API, UPLOAD, RESOLVE = "app.app", "app.upload_created", "app.resolve_remote_orders"
WEBHOOKS = "app.deliver_webhooks"
REFUNDS = "app.resolve_refunds"
FIGURES = "app.order_figures"  # the orders stream's consumer
FULFIL = tuple(f"app.{name}" for name in FULFILMENT_FUNCTIONS)
DOOR = "app.channel_door"  # the function URL door: the channel-facing routes again
SETTLE = tuple(f"app.{name}" for name in SETTLEMENT_FUNCTIONS)
RETRY_REFUND = "app.retry_refund"  # the refund_retry state machine's task
START_SETTLEMENTS = "app.start_settlements"
LEDGERS, AUDIT = "app.ledger_uploaded", "app.invariant_audit"
CLOSE_SALES = "app.sale_sweep"  # sale orders' fulfilment from the buffer; ended sales' leftovers back to stock
WIDGETS = "app.ops_widgets"  # the ops dashboard's custom widgets
HANDLERS = (API, DOOR, UPLOAD, RESOLVE, WEBHOOKS, REFUNDS, FIGURES, *FULFIL, *SETTLE, START_SETTLEMENTS, LEDGERS,
            AUDIT, RETRY_REFUND, WIDGETS, CLOSE_SALES)
# Who calls ``config.session_key()``: sessions and one-time codes are served by the two doors only.
SESSION_KEY_HANDLERS = {API, DOOR}


@pytest.fixture(scope="module")
def sam_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package(tmp_path_factory.mktemp("infra"))


@pytest.fixture(scope="module")
def template(sam_path: Path) -> dict[str, Any]:
    return json.loads(sam_path.read_text())


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def function(resources: dict[str, Any], handler: str) -> dict[str, Any]:
    [found] = [r for r in of_type(resources, "AWS::Serverless::Function").values()
               if r["Properties"]["Handler"] == handler]
    return found


def role_of(resources: dict[str, Any], handler: str) -> str:
    return function(resources, handler)["Properties"]["Role"]["Fn::GetAtt"][0]


def table_ids(resources: dict[str, Any], *models: type[Model]) -> dict[type[Model], str]:
    by_name = {r["Properties"]["TableName"]: name for name, r in of_type(resources, "AWS::DynamoDB::Table").items()}
    return {m: by_name[f"channelmall-prod-{table_suffix(m)}"] for m in models}


def operations(template: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    for path, item in body["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


# --- API authorisation --------------------------------------------------------

def test_sigv4_is_the_iam_authoriser(template: dict[str, Any]) -> None:
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_every_ops_route_requires_iam(template: dict[str, Any]) -> None:
    ops = [(path, method, op) for path, method, op in operations(template) if path.startswith("/ops/")]
    assert len(ops) > 10
    open_ops = [f"{method.upper()} {path}" for path, method, op in ops if op.get("security") != SIGV4]
    assert open_ops == []


@pytest.mark.parametrize("path, method", [("/suppliers/applications", "post"), ("/supplier/goods", "post"),
                                          ("/supplier/goods", "get")])
def test_partner_routes_are_not_iam_authorised(template: dict[str, Any], path: str, method: str) -> None:
    [op] = [op for p, m, op in operations(template) if (p, m) == (path, method)]
    assert "security" not in op


def test_only_ops_routes_are_iam_authorised(template: dict[str, Any]) -> None:
    iam = {path for path, _, op in operations(template) if op.get("security") == SIGV4}
    assert iam and all(path.startswith("/ops/") for path in iam)


# --- tables -------------------------------------------------------------------

def key_schema(attributes: dict[str, Attribute]) -> list[dict[str, str]]:
    hash_key = [{"AttributeName": a.attr_name, "KeyType": "HASH"} for a in attributes.values() if a.is_hash_key]
    range_key = [{"AttributeName": a.attr_name, "KeyType": "RANGE"} for a in attributes.values() if a.is_range_key]
    return hash_key + range_key


def table_of(resources: dict[str, Any], model: type[Model]) -> dict[str, Any]:
    name = f"channelmall-prod-{table_suffix(model)}"
    [table] = [r for r in of_type(resources, "AWS::DynamoDB::Table").values() if r["Properties"]["TableName"] == name]
    return table


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_table_matches_model(resources: dict[str, Any], model: type[Model]) -> None:
    table = table_of(resources, model)["Properties"]
    assert table["KeySchema"] == key_schema(model.get_attributes())
    types = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
    keys = [a for a in model.get_attributes().values() if a.is_hash_key or a.is_range_key]
    indexes = {i.Meta.index_name: i for i in model._indexes.values()}
    for index in indexes.values():
        keys += [a for a in index.Meta.attributes.values() if a.is_hash_key or a.is_range_key]
    assert types == {a.attr_name: a.attr_type for a in keys}

    found = {g["IndexName"]: g for g in table.get("GlobalSecondaryIndexes", [])}
    assert set(found) == set(indexes)
    for name, index in indexes.items():
        assert found[name]["KeySchema"] == key_schema(index.Meta.attributes)
        assert found[name]["Projection"]["ProjectionType"] == index.Meta.projection.projection_type


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_table_is_durable_and_on_demand(resources: dict[str, Any], model: type[Model]) -> None:
    resource = table_of(resources, model)
    table = resource["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_ttl_where_the_model_has_one(resources: dict[str, Any], model: type[Model]) -> None:
    ttl = [a.attr_name for a in model.get_attributes().values() if isinstance(a, TTLAttribute)]
    spec = table_of(resources, model)["Properties"].get("TimeToLiveSpecification")
    assert spec == ({"AttributeName": ttl[0], "Enabled": True} if ttl else None)


# --- uploads bucket -------------------------------------------------------------

def test_bucket_is_private_and_encrypted(resources: dict[str, Any]) -> None:
    [bucket] = of_type(resources, "AWS::S3::Bucket").values()
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    rules = props["LifecycleConfiguration"]["Rules"]
    assert [(r["Prefix"], r["ExpirationInDays"], r["Status"]) for r in rules] == [
        ("uploads/", 90, "Enabled"), ("ledgers/", 90, "Enabled")]
    assert any("POST" in r["AllowedMethods"] for r in props["CorsConfiguration"]["CorsRules"])


def test_bucket_refuses_plain_http(resources: dict[str, Any]) -> None:
    [policy] = of_type(resources, "AWS::S3::BucketPolicy").values()
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy["Properties"]["PolicyDocument"]["Statement"])


# --- IAM ----------------------------------------------------------------------

def statements(resources: dict[str, Any], effect: str = "Allow") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, r in resources.items():
        props = r.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        documents += [props["PolicyDocument"]] if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") else []
        for document in documents:
            for statement in document["Statement"]:
                if statement["Effect"] == effect:
                    yield name, statement


def allow_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    return statements(resources, "Allow")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_data_permissions(resources: dict[str, Any]) -> None:
    statements = list(allow_statements(resources))
    assert statements
    for name, statement in statements:
        actions = as_list(statement["Action"])
        assert not {"*", "dynamodb:*", "s3:*"} & set(actions), name
        if any(a.startswith(("dynamodb:", "s3:")) for a in actions):
            assert "*" not in as_list(statement["Resource"]), name


def data_grants(resources: dict[str, Any], role: str, service: str) -> tuple[set[str], list[Any]]:
    grants = [s for name, s in allow_statements(resources) if name == role
              and any(a.startswith(f"{service}:") for a in as_list(s["Action"]))]
    return ({a for s in grants for a in as_list(s["Action"])}, [r for s in grants for r in as_list(s["Resource"])])


def index_arns(resources: dict[str, Any]) -> list[dict[str, Any]]:
    """Every index of every table in this template, by name and as the table's ``/index/*``."""
    arns = []
    for t, r in of_type(resources, "AWS::DynamoDB::Table").items():
        indexes = r["Properties"].get("GlobalSecondaryIndexes", []) + r["Properties"].get("LocalSecondaryIndexes", [])
        arns += [{"Fn::Sub": f"${{{t}.Arn}}/index/{i['IndexName']}"} for i in indexes]
        arns += [{"Fn::Sub": f"${{{t}.Arn}}/index/*"}] if indexes else []
    return arns


@pytest.mark.parametrize("handler", HANDLERS)
def test_functions_reach_only_this_templates_tables(resources: dict[str, Any], handler: str) -> None:
    """A function left on its static fallback policy (name patterns) would fail here."""
    tables = of_type(resources, "AWS::DynamoDB::Table")
    allowed = [{"Fn::GetAtt": [t, "Arn"]} for t in tables] + index_arns(resources) + [
        {"Fn::GetAtt": [t, "StreamArn"]} for t, r in tables.items() if "StreamSpecification" in r["Properties"]]
    _, table_arns = data_grants(resources, role_of(resources, handler), "dynamodb")
    assert table_arns
    assert [arn for arn in table_arns if arn not in allowed] == []


UPLOADS = {"Fn::Sub": "${UploadBucket.Arn}/uploads/*"}
IMAGES = {"Fn::Sub": "${UploadBucket.Arn}/images/*"}
SETTLEMENT_OBJECTS = {"Fn::Sub": "${UploadBucket.Arn}/settlement/*"}
LEDGER_FILES = {"Fn::Sub": "${UploadBucket.Arn}/ledgers/*"}
RESULTS = {"Fn::Sub": "${UploadBucket.Arn}/reconciliations/*"}
# both doors serve the partner routes: sign ledger upload links (ledgers/), write and read reconciliation results
RECONCILING = [(["s3:PutObject"], LEDGER_FILES), (["s3:GetObject", "s3:PutObject"], RESULTS)]


@pytest.mark.parametrize("handler, grants", [
    # the API signs upload POSTs (uploads/) and catalog image GETs (images/ only: never an unchecked upload), and
    # statement export links (settlement/); the door the channels' exports only
    (API, [(["s3:PutObject"], UPLOADS), (["s3:GetObject"], IMAGES), (["s3:GetObject"], SETTLEMENT_OBJECTS),
           *RECONCILING]),
    (DOOR, [(["s3:GetObject"], IMAGES), (["s3:GetObject"], {"Fn::Sub": "${UploadBucket.Arn}/settlement/*/channel/*"}),
            *RECONCILING]),
    # the ledger Lambda reads and deletes ledger files and writes result documents; the audit touches no object
    (LEDGERS, [(["s3:GetObject", "s3:DeleteObject"], LEDGER_FILES), (["s3:PutObject"], RESULTS)]), (AUDIT, []),
    # settlement: pages of parties, exports and margin files under settlement/, nothing else
    ("app.settle_freeze", [(["s3:PutObject"], SETTLEMENT_OBJECTS)]),
    ("app.settle_page", [(["s3:PutObject"], SETTLEMENT_OBJECTS)]),
    ("app.settle_platform", [(["s3:GetObject", "s3:PutObject"], SETTLEMENT_OBJECTS)]),
    ("app.settle_close", [(["s3:GetObject"], SETTLEMENT_OBJECTS)]), (START_SETTLEMENTS, []),
    # the processor reads and deletes uploads, and copies checked images to images/
    (UPLOAD, [(["s3:GetObject", "s3:DeleteObject"], UPLOADS), (["s3:PutObject"], IMAGES)]),
    (RESOLVE, []), (WEBHOOKS, []), (REFUNDS, []), (FIGURES, []), *((handler, []) for handler in FULFIL)])
def test_functions_reach_only_upload_objects(resources: dict[str, Any], handler: str, grants: list[Any]) -> None:
    role = role_of(resources, handler)
    found = [(as_list(s["Action"]), r) for name, s in allow_statements(resources) if name == role
             and any(a.startswith("s3:") for a in as_list(s["Action"])) for r in as_list(s["Resource"])]
    assert found == grants


def test_api_handler_reaches_every_table_index_and_transaction_action(resources: dict[str, Any]) -> None:
    actions, arns = data_grants(resources, role_of(resources, API), "dynamodb")
    # TransactWriteItems is authorised per item, by the action each item performs.
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem",
            "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem"} <= actions
    ids = table_ids(resources, *ALL_MODELS)
    for model, table in ids.items():
        assert {"Fn::GetAtt": [table, "Arn"]} in arns, model.__name__
        if model._indexes:
            assert {"Fn::Sub": f"${{{table}.Arn}}/index/*"} in arns, model.__name__
    assert {"Fn::Sub": f"${{{ids[Order]}.Arn}}/index/*"} in arns


def test_upload_processor_touches_only_goods_uploads_and_audit(resources: dict[str, Any]) -> None:
    role = role_of(resources, UPLOAD)
    actions, arns = data_grants(resources, role, "dynamodb")
    assert actions == set(UPLOAD_TABLE_ACTIONS)
    wanted = set(table_ids(resources, Goods, Stock, Upload, Audit).values())
    assert {a["Fn::GetAtt"][0] for a in arns} == wanted
    s3_actions, _ = data_grants(resources, role, "s3")
    assert s3_actions == {"s3:GetObject", "s3:DeleteObject", "s3:PutObject"}  # PutObject: images/ only (above)


def test_resolver_is_scheduled_with_its_own_timeout(resources: dict[str, Any]) -> None:
    props = function(resources, RESOLVE)["Properties"]
    [event] = props["Events"].values()
    assert (event["Type"], event["Properties"]["Schedule"]) == ("Schedule", "rate(5 minutes)")
    assert props["Timeout"] == 120
    assert props["Role"]["Fn::GetAtt"][0] not in {role_of(resources, API), role_of(resources, UPLOAD)}


def test_resolver_role_is_least_privilege(resources: dict[str, Any]) -> None:
    """Scan channels, Query the pending and unsplit indexes, read and update orders, quotas and stock; start
    executions; nothing else."""
    role = role_of(resources, RESOLVE)
    ids = table_ids(resources, Channel, Order, Quota, Goods, Stock, PartnerBreaker, PartnerStats, ChannelDay, MeterMark,
                    PrepaidAccount, PrepaidEntry, SaleShard, SaleBuyer)
    granted: dict[str, set[str]] = {}
    for name, statement in allow_statements(resources):
        if name == role and statement.get("Sid") not in ("OwnLogs", "Tracing"):
            for action in as_list(statement["Action"]):
                granted.setdefault(action, set()).update(json.dumps(r, sort_keys=True)
                                                         for r in as_list(statement["Resource"]))

    def arns(*values: Any) -> set[str]:
        return {json.dumps(v, sort_keys=True) for v in values}

    def table(model: type[Model]) -> dict[str, Any]:
        return {"Fn::GetAtt": [ids[model], "Arn"]}

    pending = Order.pending_index.Meta.index_name
    assert granted == {
        "dynamodb:Scan": arns(table(Channel)),
        # the pending index, and the unsplit one: paid orders whose fulfilment never started
        "dynamodb:Query": arns({"Fn::Sub": f"${{{ids[Order]}.Arn}}/index/{pending}"},
                               {"Fn::Sub": f"${{{ids[Order]}.Arn}}/index/{Order.unsplit_index.Meta.index_name}"}),
        # the channel's breaker read and moved, its calls counted (``partners.reliability``)
        # and a released order's prepaid price given back (in the release, or ``billing.give_back_legacy``)
        "dynamodb:GetItem": arns(table(Order), table(Quota), table(Stock), table(Goods), table(PartnerBreaker),
                                 table(PartnerStats), table(PrepaidEntry)),
        # (orders it confirms are metered by the orders stream's consumer, not here)
        # (a released flash-sale order's units back to its sale's shards and its member's count: ``sales.offers``)
        "dynamodb:UpdateItem": arns(table(Order), table(Quota), table(Stock), table(PartnerBreaker),
                                    table(PartnerStats), table(PrepaidAccount), table(SaleShard), table(SaleBuyer)),
        "dynamodb:DeleteItem": arns(table(PrepaidEntry)),
        # a release backfills the Stock items of goods from before them, as every reader does
        "dynamodb:BatchGetItem": arns(table(Goods), table(Stock), table(SaleShard), table(SaleBuyer)),
        "dynamodb:ConditionCheckItem": arns(table(Goods)),
        "dynamodb:PutItem": arns(table(Stock)),
        # an order the sweep confirms starts its fulfilment; a failed execution is found and restarted
        "states:StartExecution": arns({"Ref": "OrderFulfilmentStateMachine"}),
        "states:ListExecutions": arns({"Ref": "OrderFulfilmentStateMachine"}),
        "states:DescribeExecution": arns({"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
                                                     "execution:channelmall-prod-order_fulfilment:*"}),
    }
    tracing = [s for n, s in allow_statements(resources) if n == role and s.get("Sid") == "Tracing"]
    assert [set(as_list(s["Action"])) for s in tracing] == [{"xray:PutTraceSegments", "xray:PutTelemetryRecords"}]


def test_the_orders_stream_feeds_its_consumer_which_writes_only_figures(resources: dict[str, Any]) -> None:
    """The orders table streams new and old images to ``order_figures``, which reads that stream and writes its
    marks, the day counters, the partner-call minutes and parked records: nothing else."""
    ids = table_ids(resources, Order, MeterMark, ChannelDay, PartnerStats, ParkedRecord)
    assert resources[ids[Order]]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    [source] = function(resources, FIGURES)["Properties"]["Events"].values()
    assert source["Type"] == "DynamoDB" and source["Properties"]["Stream"] == {"Fn::GetAtt": [ids[Order], "StreamArn"]}
    assert source["Properties"]["StartingPosition"] == "TRIM_HORIZON"
    granted: dict[str, set[str]] = {}
    for name, statement in allow_statements(resources):
        if name == role_of(resources, FIGURES) and statement.get("Sid") not in ("OwnLogs", "Tracing"):
            for action in as_list(statement["Action"]):
                granted.setdefault(action, set()).update(json.dumps(r, sort_keys=True)
                                                         for r in as_list(statement["Resource"]))
    table = lambda model: json.dumps({"Fn::GetAtt": [ids[model], "Arn"]}, sort_keys=True)  # noqa: E731
    stream = {json.dumps({"Fn::GetAtt": [ids[Order], "StreamArn"]}, sort_keys=True)}
    assert granted == {
        **{a: stream for a in ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                               "dynamodb:ListStreams")},
        "dynamodb:PutItem": {table(MeterMark), table(ParkedRecord)},
        "dynamodb:UpdateItem": {table(ChannelDay), table(PartnerStats)}}


def test_only_sms_and_tracing_are_granted_on_any_resource(resources: dict[str, Any]) -> None:
    """SNS has no ARN for a phone number, so SMS needs "*": only sns:Publish, only for the two doors that send
    one-time codes (API Gateway's and the function URL's), never on topics."""
    wildcard = {(name, a) for name, s in allow_statements(resources) if "*" in as_list(s["Resource"])
                for a in as_list(s["Action"])}
    roles = {role_of(resources, h) for h in HANDLERS}
    doors = {role_of(resources, API), role_of(resources, DOOR)}
    assert {a for _, a in wildcard} <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "sns:Publish"}
    assert {name for name, a in wildcard if a == "sns:Publish"} == doors
    assert {name for name, _ in wildcard} <= roles
    for door in doors:
        denied = [s for n, s in statements(resources, "Deny") if n == door]
        assert any(as_list(s["Action"]) == ["sns:Publish"] and s["Resource"] == "arn:aws:sns:*:*:*" for s in denied)


# --- session key secret ---------------------------------------------------------

def test_session_key_secret_is_generated(resources: dict[str, Any]) -> None:
    [secret] = of_type(resources, "AWS::SecretsManager::Secret").values()
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] == 64
    assert "SecretString" not in secret["Properties"]


@pytest.mark.parametrize("handler", HANDLERS)
def test_only_functions_that_need_the_session_key_can_read_it(resources: dict[str, Any], handler: str) -> None:
    [secret] = of_type(resources, "AWS::SecretsManager::Secret")
    variables = function(resources, handler)["Properties"]["Environment"]["Variables"]
    grants = [s for name, s in allow_statements(resources) if name == role_of(resources, handler)
              and any(a.startswith("secretsmanager:") for a in as_list(s["Action"]))]
    if handler in SESSION_KEY_HANDLERS:
        assert variables["SESSION_KEY_SECRET_ARN"] == {"Ref": secret}
        assert [(as_list(s["Action"]), as_list(s["Resource"])) for s in grants] == [
            (["secretsmanager:GetSecretValue"], [{"Ref": secret}])]
    else:
        assert "SESSION_KEY_SECRET_ARN" not in variables
        assert grants == []


def test_nothing_else_can_read_secrets(resources: dict[str, Any]) -> None:
    [secret] = of_type(resources, "AWS::SecretsManager::Secret")
    readers = {name for name, s in allow_statements(resources) if any(a.startswith("secretsmanager:")
                                                                      for a in as_list(s["Action"]))}
    assert readers == {role_of(resources, h) for h in SESSION_KEY_HANDLERS}
    resources_granted = [r for _, s in allow_statements(resources)
                         if any(a.startswith("secretsmanager:") for a in as_list(s["Action"]))
                         for r in as_list(s["Resource"])]
    assert resources_granted and all(r == {"Ref": secret} for r in resources_granted)


def test_every_function_has_a_generated_role_and_log_group(resources: dict[str, Any]) -> None:
    """A function the merge template does not know yet keeps its static fallback policy; fail until it does."""
    functions = of_type(resources, "AWS::Serverless::Function")
    assert {f["Properties"]["Handler"] for f in functions.values()} == set(HANDLERS)
    for name, fn in functions.items():
        log_group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[log_group]["Type"] == "AWS::Logs::LogGroup", name
        role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        log_grants = [s["Resource"] for n, s in allow_statements(resources) if n == role and s.get("Sid") == "OwnLogs"]
        assert log_grants == [{"Fn::GetAtt": [log_group, "Arn"]}], name
    roles = [fn["Properties"]["Role"]["Fn::GetAtt"][0] for fn in functions.values()]
    log_groups = [fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for fn in functions.values()]
    assert len(set(roles)) == len(roles) and len(set(log_groups)) == len(log_groups)


@pytest.mark.parametrize("handler", HANDLERS)
def test_functions_use_the_real_bucket_and_prefix(resources: dict[str, Any], handler: str) -> None:
    variables = function(resources, handler)["Properties"]["Environment"]["Variables"]
    assert variables["UPLOAD_BUCKET"] == {"Ref": "UploadBucket"}
    assert variables["TABLE_PREFIX"] == "channelmall-prod-"


# --- events, alarms, dashboard -------------------------------------------------

def test_upload_rule_matches_s3_object_created_in_uploads(resources: dict[str, Any]) -> None:
    [event] = function(resources, "app.upload_created")["Properties"]["Events"].values()
    assert event["Type"] in ("CloudWatchEvent", "EventBridgeRule")
    pattern = event["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "uploads/"}]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "UploadBucket"}]


def test_ledger_rule_matches_s3_object_created_in_ledgers(resources: dict[str, Any]) -> None:
    [event] = function(resources, LEDGERS)["Properties"]["Events"].values()
    pattern = event["Properties"]["Pattern"]
    assert (pattern["source"], pattern["detail-type"]) == (["aws.s3"], ["Object Created"])
    assert pattern["detail"]["object"]["key"] == [{"prefix": "ledgers/"}]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "UploadBucket"}]


@pytest.mark.parametrize("handler, tables, indexes", [
    # its upload record, the channel, results kept, the period's books; the orders, members, parcels named
    (LEDGERS, {"LedgerUpload", "Channel", "Reconciliation", "BookEntry", "Order", "Member", "Parcel"},
     {"MemberTable/index/channel-index", "OrderTable/index/member-index"}),
    # every channel, its shards, members, their orders and grants, wallets and parcels; it writes its run only
    (AUDIT, {"Channel", "Quota", "Wallet", "Parcel", "AuditRun"},
     {"MemberTable/index/channel-index", "OrderTable/index/member-index", "GrantTable/index/member-index",
      "QuotaTable/index/channel-index"})])
def test_reconciliation_and_audit_reach_only_their_tables(resources: dict[str, Any], handler: str, tables: set[str],
                                                           indexes: set[str]) -> None:
    actions, arns = data_grants(resources, role_of(resources, handler), "dynamodb")
    assert not {"dynamodb:DeleteItem", "dynamodb:TransactWriteItems"} & actions
    assert {a["Fn::GetAtt"][0] for a in arns if "Fn::GetAtt" in a} == {f"{t}Table" for t in tables}
    assert {a["Fn::Sub"].removeprefix("${").replace(".Arn}", "") for a in arns if "Fn::Sub" in a} == indexes
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem"}
    written = {a["Fn::GetAtt"][0] for name, st in allow_statements(resources) if name == role_of(resources, handler)
               and writes & set(as_list(st["Action"])) for a in as_list(st["Resource"]) if "Fn::GetAtt" in a}
    assert written == ({"LedgerUploadTable", "ReconciliationTable"} if handler == LEDGERS else {"AuditRunTable"})


def test_alarms_page_ops(resources: dict[str, Any]) -> None:
    alarms = [r["Properties"] for r in of_type(resources, "AWS::CloudWatch::Alarm").values()
              if "MetricName" in r["Properties"]]  # one metric each; the anomaly alarm has its own test
    watched = {(a["Namespace"], a["MetricName"], json.dumps(a["Dimensions"][0]["Value"])) for a in alarms}
    for fn in of_type(resources, "AWS::Serverless::Function"):
        assert ("AWS/Lambda", "Errors", json.dumps({"Ref": fn})) in watched, fn
    assert any(metric == "5XXError" for _, metric, _ in watched)
    [topic] = of_type(resources, "AWS::SNS::Topic")
    assert all(a["AlarmActions"] == [{"Ref": topic}] and a["Threshold"] == 0
               and a["ComparisonOperator"] == "GreaterThanThreshold" for a in alarms)
    assert all(a["Period"] == 300 for a in alarms if a["Namespace"] != "ChannelMall")


def test_unresolved_remote_orders_page_ops(resources: dict[str, Any]) -> None:
    """Orders whose deduction is unknown hold quota and stock: any within 15 minutes pages ops."""
    [alarm] = [r["Properties"] for r in of_type(resources, "AWS::CloudWatch::Alarm").values()
               if r["Properties"].get("MetricName") == "RemoteUnresolved"]
    assert alarm["Namespace"] == "ChannelMall"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "channel-mall"}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == ("Sum", 0, "GreaterThanThreshold")
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 900
    [topic] = of_type(resources, "AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


@pytest.mark.parametrize("metric", [
    "ParcelsExpired", "ParcelExpiryRefused", "RefundUnresolved", "RefundRefusedByChannel", "RemoteSweepFailed",
    "RefundSweepFailed", "FulfilmentSweepFailed", "FulfilmentStartFailed", "FulfilmentRestarted", "RemoteUnresolved", "WebhooksParked",
    "WebhookEndpointDisabled", "WebhookSweepFailed",
    "PartnerBreakerOpened", "PartnerErrorRateHigh", "PrepaidLow", "PrepaidExhausted", "MeteringFailed",
    "StatementMismatch", "ReconciliationDifferences", "InvariantDrift", "InvariantAuditFailed",
    "RefundRetryNotStarted"])
def test_every_failure_the_app_counts_pages_ops(resources: dict[str, Any], metric: str) -> None:
    """Each of these counts means a member, a supplier or a channel is left waiting on ops: one alarm each,
    on the app's own metric (Powertools adds the service dimension), to the ops topic."""
    source = "\n".join(p.read_text() for p in (Path(__file__).resolve().parent.parent / "chalicelib").rglob("*.py"))
    assert f'count("{metric}"' in source, f"the app no longer counts {metric}"
    [alarm] = [r["Properties"] for r in of_type(resources, "AWS::CloudWatch::Alarm").values()
               if r["Properties"].get("MetricName") == metric]
    assert (alarm["Namespace"], alarm["Dimensions"]) == ("ChannelMall", [{"Name": "service", "Value": "channel-mall"}])
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == ("Sum", 0, "GreaterThanThreshold")
    [topic] = of_type(resources, "AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_webhook_sweep_runs_every_minute_with_least_privilege(resources: dict[str, Any]) -> None:
    """Scan channels, Query the outbox's pending index, update events (each booking conditional); nothing else."""
    props = function(resources, WEBHOOKS)["Properties"]
    [event] = props["Events"].values()
    assert (event["Type"], event["Properties"]["Schedule"]) == ("Schedule", "rate(1 minute)")
    assert props["Timeout"] == 120
    role = role_of(resources, WEBHOOKS)
    assert role not in {role_of(resources, h) for h in (API, UPLOAD, RESOLVE)}
    ids = table_ids(resources, Channel, OutboxEvent, PartnerBreaker, PartnerStats)
    granted: dict[str, set[str]] = {}
    for name, statement in allow_statements(resources):
        if name == role and statement.get("Sid") not in ("OwnLogs", "Tracing"):
            for action in as_list(statement["Action"]):
                granted.setdefault(action, set()).update(json.dumps(r, sort_keys=True)
                                                         for r in as_list(statement["Resource"]))
    pending = OutboxEvent.pending_index.Meta.index_name
    assert granted == {
        "dynamodb:Scan": {json.dumps({"Fn::GetAtt": [ids[Channel], "Arn"]}, sort_keys=True)},
        "dynamodb:Query": {json.dumps({"Fn::Sub": f"${{{ids[OutboxEvent]}.Arn}}/index/{pending}"}, sort_keys=True)},
        "dynamodb:UpdateItem": {json.dumps({"Fn::GetAtt": [ids[model], "Arn"]}, sort_keys=True)
                                for model in (OutboxEvent, PartnerBreaker, PartnerStats)},
        # the channel's webhook breaker (``partners.reliability``)
        "dynamodb:GetItem": {json.dumps({"Fn::GetAtt": [ids[model], "Arn"]}, sort_keys=True)
                             for model in (PartnerBreaker, PartnerStats)},
    }


def test_dashboard_shows_business_and_error_metrics(resources: dict[str, Any]) -> None:
    [dashboard] = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    body = json.loads(dashboard["Properties"]["DashboardBody"]["Fn::Sub"])
    rows = [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]
    shown = {m[1] for m in rows if isinstance(m[0], str)}
    assert {"GoodsPublished", "GoodsApproved", "ClientErrors", "ServerErrors", "UploadsProcessed",
            "UploadsRefused", "Errors", "Duration", "OrdersPlaced", "CheckoutRefused", "PointsGranted",
            "Entries", "EntryRefused", "RemoteUnresolved"} <= shown
    per_function = {m[3] for m in rows if isinstance(m[0], str) and m[1] == "Errors"}
    assert per_function == {f"${{{fn}}}" for fn in of_type(resources, "AWS::Serverless::Function")}
    searches = [m[0]["expression"] for m in rows if isinstance(m[0], dict)]
    for metric in ("PartnerCalls", "PartnerLatency"):
        assert any(e.startswith("SEARCH('{ChannelMall,channel,outcome,service}") and f'MetricName="{metric}"' in e
                   for e in searches), metric
    # operating data per channel (``metering.metric``: the channel, and the reason of a refusal)
    for dimensions, metric in (("channel", "ChannelOrders"), ("channel", "ChannelGMV"), ("channel", "InboundCalls"),
                               ("channel", "ChannelEntries"), ("channel,reason", "RedemptionRefused")):
        assert any(e.startswith(f"SEARCH('{{ChannelMall,{dimensions},service}}") and f'MetricName="{metric}"' in e
                   for e in searches), metric


def test_a_refusal_spike_pages_ops(resources: dict[str, Any]) -> None:
    """Refusals are part of the business (points run out): the alarm is a 5-minute sum above the band CloudWatch
    learns from the app's own ``RedemptionRefused`` count, not any refusal."""
    source = "\n".join(p.read_text() for p in (Path(__file__).resolve().parent.parent / "chalicelib").rglob("*.py"))
    assert 'count("RedemptionRefused")' in source
    [alarm] = [r["Properties"] for r in of_type(resources, "AWS::CloudWatch::Alarm").values()
               if "Metrics" in r["Properties"]]
    value, band = alarm["Metrics"]
    assert value["MetricStat"] == {"Metric": {"Namespace": "ChannelMall", "MetricName": "RedemptionRefused",
                                              "Dimensions": [{"Name": "service", "Value": "channel-mall"}]},
                                   "Period": 300, "Stat": "Sum"}
    assert band["Expression"] == f"ANOMALY_DETECTION_BAND({value['Id']}, 3)"
    assert (alarm["ThresholdMetricId"], alarm["ComparisonOperator"]) == (band["Id"], "GreaterThanUpperThreshold")
    [topic] = of_type(resources, "AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


# --- the order_fulfilment state machine -------------------------------------------

def test_fulfilment_machine_runs_the_infra_definition_on_the_fulfilment_functions(resources: dict[str, Any]) -> None:
    machine = resources[STATE_MACHINE]
    props = machine["Properties"]
    assert props["Definition"] == order_fulfilment() and dangling_targets(props["Definition"]) == []
    functions = {name: fn for name, fn in of_type(resources, "AWS::Serverless::Function").items()
                 if fn["Properties"]["Handler"] in FULFIL}
    assert props["DefinitionSubstitutions"] == {
        fn["Properties"]["Handler"].removeprefix("app."): {"Fn::GetAtt": [name, "Arn"]} for name, fn in functions.items()}
    waits = {name: s["SecondsPath"] for name, s in props["Definition"]["States"].items() if s["Type"] == "Wait"}
    assert waits == {"AwaitShipment": "$.shipping_seconds", "AwaitReceipt": "$.receipt_seconds"}  # from the input


def test_fulfilment_role_invokes_exactly_the_fulfilment_functions(resources: dict[str, Any]) -> None:
    machine = resources[STATE_MACHINE]
    role = resources[machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "states.amazonaws.com"}
    [policy] = role["Properties"]["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["lambda:InvokeFunction"]
    def keyed(values: list[Any]) -> list[str]:
        return sorted(json.dumps(v, sort_keys=True) for v in values)
    assert keyed(statement["Resource"]) == keyed(list(machine["Properties"]["DefinitionSubstitutions"].values()))


def test_only_checkout_and_the_sweeps_start_executions(resources: dict[str, Any]) -> None:
    """Checkout (both doors), the resolver's sweep, and the sale sweep draining the flash-sale buffer."""
    machine = STATE_MACHINE
    starters = {name for name, s in allow_statements(resources) if "states:StartExecution" in as_list(s["Action"])
                and s["Resource"] == {"Ref": machine}}
    assert starters == {role_of(resources, API), role_of(resources, DOOR), role_of(resources, RESOLVE),
                        role_of(resources, CLOSE_SALES)}
    for handler in HANDLERS:
        variables = function(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables.get("FULFILMENT_STATE_MACHINE_ARN") == (
            {"Ref": machine} if handler in (API, DOOR, RESOLVE, CLOSE_SALES) else None), handler
    granted = [s["Resource"] for _, s in allow_statements(resources) if "states:StartExecution" in as_list(s["Action"])
               and s["Resource"] not in ({"Ref": SETTLEMENT_MACHINE}, {"Ref": RETRY_MACHINE})
               and s.get("Sid") != "MapChildren"]
    assert granted == [{"Ref": machine}] * 4


@pytest.mark.parametrize("name", FULFILMENT_FUNCTIONS)
def test_fulfilment_tasks_reach_only_their_tables(resources: dict[str, Any], name: str) -> None:
    actions, arns = data_grants(resources, role_of(resources, f"app.{name}"), "dynamodb")
    assert "dynamodb:Scan" not in actions and "dynamodb:DeleteItem" not in actions
    calls_channels = (PartnerBreaker, PartnerStats) if name == "fulfil_deadline" else ()  # a remote parcel's refund
    metered = (ChannelDay, MeterMark) if name == "fulfil_deadline" else ()  # parcels given back (``metering``)
    sales = (SaleShard, SaleBuyer) if name == "fulfil_deadline" else ()  # a sale's units back (``sales.offers``)
    assert {a["Fn::GetAtt"][0] for a in arns if "Fn::GetAtt" in a} == set(
        table_ids(resources, *FULFIL_MODELS[name], *calls_channels, *metered, *sales).values())


def test_failed_fulfilment_executions_and_starts_page_ops(resources: dict[str, Any]) -> None:
    alarms = [r["Properties"] for r in of_type(resources, "AWS::CloudWatch::Alarm").values()
              if "MetricName" in r["Properties"]]
    failed = [a["Dimensions"] for a in alarms if (a["Namespace"], a["MetricName"]) == ("AWS/States", "ExecutionsFailed")]
    assert sorted(failed, key=json.dumps) == sorted(  # one alarm per machine: fulfilment, settlement, refund retry
        [[{"Name": "StateMachineArn", "Value": {"Ref": m}}] for m in (STATE_MACHINE, SETTLEMENT_MACHINE, RETRY_MACHINE)],
        key=json.dumps)
    assert [a["Namespace"] for a in alarms if a["MetricName"] == "FulfilmentStartFailed"] == ["ChannelMall"]


# --- Step Functions reference check ---------------------------------------------

GOOD_DEFINITION: dict[str, Any] = {
    "StartAt": "Pick",
    "States": {
        "Pick": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 0, "Next": "Split"}],
                 "Default": "Fail"},
        "Split": {"Type": "Parallel", "Next": "Each", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Fail"}],
                  "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"},
                                                           "B": {"Type": "Succeed"}}}]},
        "Each": {"Type": "Map", "End": True,
                 "ItemProcessor": {"StartAt": "One", "States": {"One": {"Type": "Pass", "End": True}}}},
        "Fail": {"Type": "Fail"},
    },
}


def test_dangling_targets_accepts_a_consistent_definition() -> None:
    assert dangling_targets(GOOD_DEFINITION) == []


def test_dangling_targets_reports_a_missing_next() -> None:
    bad = json.loads(json.dumps(GOOD_DEFINITION))
    bad["States"]["Pick"]["Choices"][0]["Next"] = "Splt"
    assert dangling_targets(bad) == ["Pick.Choices[0].Next -> 'Splt'"]


def test_dangling_targets_scopes_branches_to_their_own_states() -> None:
    bad = json.loads(json.dumps(GOOD_DEFINITION))
    bad["States"]["Split"]["Branches"][0]["States"]["A"]["Next"] = "Fail"  # a parent state: not reachable
    bad["States"]["Each"]["ItemProcessor"]["StartAt"] = "Two"
    assert dangling_targets(bad) == ["Split.Branches[0]/A.Next -> 'Fail'", "Each.ItemProcessor/StartAt -> 'Two'"]


# --- merge coverage -------------------------------------------------------------

def test_merge_template_manages_every_function(template: dict[str, Any]) -> None:
    assert unmanaged_functions(template) == []


def test_unmanaged_functions_reports_a_function_on_its_fallback_role() -> None:
    bare = {"Resources": {"NewSweep": {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "app.x"}}}}
    assert unmanaged_functions(bare) == ["NewSweep"]


# --- dependency layer -----------------------------------------------------------

def test_every_function_runs_on_the_dependency_layer_and_ships_only_the_app(template: dict[str, Any],
                                                                            sam_path: Path) -> None:
    assert layer_problems(template, sam_path.parent / "deployment.zip") == []
    assert template["Resources"]["ManagedLayer"]["Type"] == "AWS::Serverless::LayerVersion"


def test_layer_problems_reports_a_function_off_the_layer_and_a_fat_zip(tmp_path: Path) -> None:
    fat = tmp_path / "deployment.zip"
    fat.write_bytes(b"x" * (FUNCTION_ZIP_MAX + 1))
    bare = {"Resources": {"Api": {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "app.app"}}}}
    assert layer_problems(bare, fat) == ["Api does not use ManagedLayer",
                                         f"deployment.zip is {FUNCTION_ZIP_MAX + 1} bytes (over {FUNCTION_ZIP_MAX})"]


# --- cfn-lint ---------------------------------------------------------------------

def test_cfn_lint_passes(sam_path: Path) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(sam_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_function_url_door_is_public_and_limited(resources: dict[str, Any]) -> None:
    """Auth NONE (every channel call is signed, every member call carries a session), on the door only; CORS
    only where ops name channel app origins; the public may invoke the URL and nothing else."""
    [(url_id, url)] = of_type(resources, "AWS::Lambda::Url").items()
    door = next(n for n, f in of_type(resources, "AWS::Serverless::Function").items()
                if f["Properties"]["Handler"] == DOOR)
    props = url["Properties"]
    # the URL serves the door's published alias (its provisioned concurrency is warmed for flash sales)
    assert (props["AuthType"], props["TargetFunctionArn"]) == ("NONE", {"Ref": f"{door}Aliaslive"})
    cors = props["Cors"]["Fn::If"][1]
    assert cors["AllowCredentials"] is False and set(cors["AllowMethods"]) <= {"GET", "POST", "PUT", "DELETE"}
    [permission] = [p["Properties"] for p in of_type(resources, "AWS::Lambda::Permission").values()
                    if p["Properties"].get("FunctionUrlAuthType") == "NONE"]
    assert (permission["Action"], permission["FunctionName"]) == ("lambda:InvokeFunctionUrl", {"Ref": f"{door}Aliaslive"})


def test_api_and_door_run_on_a_published_alias_whose_provisioned_concurrency_sales_schedule(
        resources: dict[str, Any]) -> None:
    """Every API route's integration and its invoke permission name the API's alias; each alias has a scalable
    target (0 between sales, ``sales.warm.MAX_CONCURRENCY`` at most) that only the API's role may schedule."""
    from chalicelib.sales import warm

    api = next(n for n, f in of_type(resources, "AWS::Serverless::Function").items() if f["Properties"]["Handler"] == API)
    door = next(n for n, f in of_type(resources, "AWS::Serverless::Function").items()
                if f["Properties"]["Handler"] == DOOR)
    for function in (api, door):
        assert resources[function]["Properties"]["AutoPublishAlias"] == warm.ALIAS
        target = resources[f"{function}ProvisionedConcurrency"]
        assert target["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
        assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (0, warm.MAX_CONCURRENCY)
        assert target["Properties"]["ScalableDimension"] == "lambda:function:ProvisionedConcurrency"
        assert target["Properties"]["ResourceId"] == {"Fn::Sub": [f"function:${{Fn}}:{warm.ALIAS}", {"Fn": {"Ref": function}}]}
    integrations = [op["x-amazon-apigateway-integration"] for ops in
                    resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"].values()
                    for op in ops.values() if "x-amazon-apigateway-integration" in op]
    assert integrations and all(i["uri"]["Fn::Sub"][1] == {"Target": {"Ref": f"{api}Aliaslive"}} for i in integrations)
    invoke = [p["Properties"] for p in of_type(resources, "AWS::Lambda::Permission").values()
              if p["Properties"].get("Principal") == "apigateway.amazonaws.com"]
    assert invoke and all(p["FunctionName"] == {"Ref": f"{api}Aliaslive"} for p in invoke)
    schedulers = {name for name, s in allow_statements(resources)
                  if "application-autoscaling:PutScheduledAction" in as_list(s["Action"])}
    assert schedulers == {role_of(resources, API)}
    assert resources[api]["Properties"]["Environment"]["Variables"]["CHANNEL_DOOR_FUNCTION"] == {"Ref": door}


# --- the settlement state machine ---------------------------------------------------

def test_settlement_machine_runs_the_infra_definition_on_the_settlement_functions(resources: dict[str, Any]) -> None:
    props = resources[SETTLEMENT_MACHINE]["Properties"]
    assert props["Definition"] == settlement() and dangling_targets(props["Definition"]) == []
    functions = {name: fn for name, fn in of_type(resources, "AWS::Serverless::Function").items()
                 if fn["Properties"]["Handler"] in SETTLE}
    assert props["DefinitionSubstitutions"] == {
        fn["Properties"]["Handler"].removeprefix("app."): {"Fn::GetAtt": [name, "Arn"]} for name, fn in functions.items()}
    reader = props["Definition"]["States"]["Statements"]["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"  # a Distributed Map over the pages file


def test_settlement_role_invokes_its_tasks_runs_its_own_children_and_reads_only_its_pages(
        resources: dict[str, Any]) -> None:
    props = resources[SETTLEMENT_MACHINE]["Properties"]
    role = resources[props["RoleArn"]["Fn::GetAtt"][0]]
    [policy] = role["Properties"]["Policies"]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(by_sid) == {"SettlementTasks", "MapChildren", "MapChildrenState", "PagesOfParties"}
    assert sorted(map(json.dumps, by_sid["SettlementTasks"]["Resource"])) == sorted(
        map(json.dumps, props["DefinitionSubstitutions"].values()))
    assert by_sid["MapChildren"]["Resource"]["Fn::Sub"].endswith(f":stateMachine:{props['StateMachineName']}")
    assert by_sid["MapChildrenState"]["Resource"]["Fn::Sub"].endswith(f":execution:{props['StateMachineName']}/*")
    assert (by_sid["PagesOfParties"]["Action"], by_sid["PagesOfParties"]["Resource"]) == (["s3:GetObject"],
                                                                                          SETTLEMENT_OBJECTS)


def test_only_ops_and_the_schedule_start_settlement(resources: dict[str, Any]) -> None:
    machine = {"Ref": SETTLEMENT_MACHINE}
    starters = {name for name, s in allow_statements(resources) if "states:StartExecution" in as_list(s["Action"])
                and s["Resource"] == machine}
    assert starters == {role_of(resources, API), role_of(resources, START_SETTLEMENTS)}
    for handler in HANDLERS:
        variables = function(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables.get("SETTLEMENT_STATE_MACHINE_ARN") == (
            machine if handler in (API, START_SETTLEMENTS) else None), handler


@pytest.mark.parametrize("name", SETTLEMENT_FUNCTIONS)
def test_settlement_tasks_reach_only_their_tables(resources: dict[str, Any], name: str) -> None:
    actions, arns = data_grants(resources, role_of(resources, f"app.{name}"), "dynamodb")
    assert "dynamodb:DeleteItem" not in actions and not any("/index/" in json.dumps(a) for a in arns)
    assert {a["Fn::GetAtt"][0] for a in arns} == set(table_ids(resources, *(m for m, _ in SETTLE_GRANTS[name])).values())



# --- the refund_retry state machine (issue 16 #12) --------------------------------------------------------

def test_refund_retry_machine_runs_the_infra_definition_on_its_one_task(resources: dict[str, Any]) -> None:
    props = resources[RETRY_MACHINE]["Properties"]
    assert props["Definition"] == refund_retry() and dangling_targets(props["Definition"]) == []
    assert set(props["DefinitionSubstitutions"]) == set(REFUND_RETRY_FUNCTIONS)
    [statement] = [s for name, s in allow_statements(resources) if name == props["RoleArn"]["Fn::GetAtt"][0]]
    assert (as_list(statement["Action"]), statement["Resource"]) == (
        ["lambda:InvokeFunction"], props["DefinitionSubstitutions"]["retry_refund"])
    task = [r for r in of_type(resources, "AWS::Serverless::Function").values()
            if r["Properties"]["Handler"] == RETRY_REFUND]
    assert statement["Resource"] == {"Fn::GetAtt": [next(n for n, r in resources.items() if r in task), "Arn"]}


def test_only_who_sends_a_first_refund_starts_its_retries(resources: dict[str, Any]) -> None:
    machine = {"Ref": RETRY_MACHINE}
    starters = {name for name, s in allow_statements(resources) if "states:StartExecution" in as_list(s["Action"])
                and s["Resource"] == machine}
    expected = (API, DOOR, "app.fulfil_deadline", REFUNDS)
    assert starters == {role_of(resources, h) for h in expected}
    for handler in HANDLERS:
        variables = function(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables.get("REFUND_RETRY_STATE_MACHINE_ARN") == (machine if handler in expected else None), handler


def test_refund_retry_task_reaches_only_the_refund_tables_by_key(resources: dict[str, Any]) -> None:
    actions, arns = data_grants(resources, role_of(resources, RETRY_REFUND), "dynamodb")
    assert not {"dynamodb:Scan", "dynamodb:DeleteItem"} & actions
    assert all("Fn::GetAtt" in a for a in arns)  # no index: the refund is read by its id
    assert {a["Fn::GetAtt"][0] for a in arns} == set(table_ids(
        resources, *REFUNDS_MODELS, PartnerBreaker, PartnerStats, ChannelDay, MeterMark, SaleShard, SaleBuyer).values())


def test_the_sale_sweep_reaches_only_the_sale_tables_stock_audit_and_unsplit_orders(resources: dict[str, Any]) -> None:
    actions, arns = data_grants(resources, role_of(resources, CLOSE_SALES), "dynamodb")
    assert actions == {"dynamodb:Scan", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem",
                       "dynamodb:PutItem", "dynamodb:Query"}
    ids = table_ids(resources, Sale, SaleShard, Stock, Audit, Channel, Order)
    assert {a["Fn::GetAtt"][0] for a in arns if "Fn::GetAtt" in a} == set(table_ids(
        resources, Sale, SaleShard, Stock, Audit, Channel).values())
    assert [a for a in arns if "Fn::GetAtt" not in a] == [
        {"Fn::Sub": f"${{{ids[Order]}.Arn}}/index/{Order.unsplit_index.Meta.index_name}"}]
    _, starts = data_grants(resources, role_of(resources, CLOSE_SALES), "states")
    assert starts == [{"Ref": "OrderFulfilmentStateMachine"}]


def test_a_failed_refund_retry_pages_ops(resources: dict[str, Any]) -> None:
    alarms = [r["Properties"] for r in of_type(resources, "AWS::CloudWatch::Alarm").values()
              if "MetricName" in r["Properties"]]
    assert [{"Name": "StateMachineArn", "Value": {"Ref": RETRY_MACHINE}}] in [
        a["Dimensions"] for a in alarms if (a["Namespace"], a["MetricName"]) == ("AWS/States", "ExecutionsFailed")]
