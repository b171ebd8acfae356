"""The deployment beyond what Chalice declares: tables, bucket, alarms, dashboard, least-privilege roles.

Deployed with ``chalice package --merge-template``: one toolchain (Chalice) for code and
infrastructure, works offline, the result stays plain CloudFormation/SAM that cfn-lint
checks in CI, and there is no CDK/Node bootstrap. Tables are generated from the PynamoDB
models, so keys, indexes and TTL are declared once, in each area's ``models.py`` (all listed in
``chalicelib/tables.py``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pynamodb.models import Model

from chalicelib.billing.models import ChannelDay, MeterMark, PrepaidAccount, PrepaidEntry, BillingPlan
from chalicelib.channels.models import Channel
from chalicelib.checkout.models import MemberRedemption, Quota, Wallet, Grant
from chalicelib.core import config
from chalicelib.core.models import Audit
from chalicelib.members.models import Member
from chalicelib.orders.models import Order, Parcel, Refund
from chalicelib.partners.models import OutboxEvent, PartnerBreaker, PartnerStats, ParkedRecord
from chalicelib.settlement.models import (
    BookEntry,
    SettledDay,
    SettlementPeriod,
    Statement,
    AuditRun,
    LedgerUpload,
    Reconciliation,
)
from chalicelib.sales.models import Sale, SaleBuyer, SaleShard
from chalicelib.supply.models import Goods, Stock, Upload, Supplier
from chalicelib.tables import ALL_MODELS
from infra.state_machines import (
    FULFILMENT_FUNCTIONS, ORDER_FULFILMENT, SETTLEMENT, SETTLEMENT_FUNCTIONS, order_fulfilment, settlement,
)
from infra.state_machines import REFUND_RETRY, refund_retry

ROOT = Path(__file__).resolve().parent.parent
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"

# Logical ids Chalice gives its resources (chalice/package.py naming); the merge overrides them in place.
API_FUNCTION, API_ROLE = "APIHandler", "ApiHandlerRole"
UPLOAD_FUNCTION, UPLOAD_ROLE = "UploadCreated", "UploadCreatedRole"
UPLOAD_EVENT = "UploadCreatedEvent"
RESOLVE_FUNCTION, RESOLVE_ROLE = "ResolveRemoteOrders", "ResolveRemoteOrdersRole"
WEBHOOKS_FUNCTION, WEBHOOKS_ROLE = "DeliverWebhooks", "DeliverWebhooksRole"
REFUNDS_FUNCTION, REFUNDS_ROLE = "ResolveRefunds", "ResolveRefundsRole"
# The orders stream's consumer (``app.order_figures``) and its event source (Chalice's logical ids).
FIGURES_FUNCTION, FIGURES_ROLE = "OrderFigures", "OrderFiguresRole"
FIGURES_EVENT = "OrderFiguresDynamodbEventSource"
# The function URL door (``app.channel_door``): the channel-facing routes again, for channel apps calling a URL.
DOOR_FUNCTION, DOOR_ROLE = "ChannelDoor", "ChannelDoorRole"
DOOR_URL = "ChannelDoorUrl"
# Cross-origin callers of the door: a channel app that hosts its own page and calls the member JSON API.
# The H5 store itself is served by the door, so its calls are same-origin and need no CORS at all.
DOOR_ORIGINS = "ChannelAppOrigins"
DOOR_CORS_HEADERS = ["authorization", "content-type", "idempotency-key"]
# The order_fulfilment state machine's Lambda tasks (``@app.lambda_function``), by Chalice's logical id.
FULFIL_FUNCTIONS = {name: "".join(part.capitalize() for part in name.split("_")) for name in FULFILMENT_FUNCTIONS}
FUNCTIONS = (API_FUNCTION, DOOR_FUNCTION, UPLOAD_FUNCTION, RESOLVE_FUNCTION, WEBHOOKS_FUNCTION, REFUNDS_FUNCTION,
             FIGURES_FUNCTION, *FULFIL_FUNCTIONS.values())
ROLES = {API_FUNCTION: API_ROLE, DOOR_FUNCTION: DOOR_ROLE, UPLOAD_FUNCTION: UPLOAD_ROLE, RESOLVE_FUNCTION: RESOLVE_ROLE,
         WEBHOOKS_FUNCTION: WEBHOOKS_ROLE, REFUNDS_FUNCTION: REFUNDS_ROLE, FIGURES_FUNCTION: FIGURES_ROLE,
         **{f: f"{f}Role" for f in FULFIL_FUNCTIONS.values()}}
STATE_MACHINE, STATE_MACHINE_ROLE = "OrderFulfilmentStateMachine", "OrderFulfilmentRole"
# The functions that start executions (``fulfilment.start``): checkout in the API, remote confirmations in the sweep.
EXECUTION_STARTERS = (API_FUNCTION, DOOR_FUNCTION, RESOLVE_FUNCTION)
BUCKET = "UploadBucket"
ALARM_TOPIC = "OpsAlarmTopic"
SESSION_KEY_SECRET = "SessionKeySecret"
# The functions that sign member sessions or hash one-time codes (``config.session_key``); only they
# get the secret's ARN and may read it. The upload processor and the resolver sweep never need it.
SESSION_KEY_READERS = (API_FUNCTION, DOOR_FUNCTION)

# What each function may do; transactions need every action of every item they contain,
# and Scan is there because ops list every channel (``channels.list_all``).
API_TABLE_ACTIONS = [
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
]
UPLOAD_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                        "dynamodb:ConditionCheckItem"]
# The upload processor reads the upload record and publishes goods with their audit rows, nothing else
# (BatchGetItem: a goods file's images are checked against the supplier's image uploads).
# Publishing also creates the goods' Stock items (``goods._backfill``: a BatchGetItem, then a transaction).
UPLOAD_MODELS: tuple[type[Model], ...] = (Goods, Stock, Upload, Audit)
# The resolver sweep (``app.resolve_remote_orders`` → ``checkout.resolve_pending``) lists channels,
# finds each one's waiting orders on the sparse pending index, re-reads an order after settling it,
# and settles in transactions of plain UpdateItems: the order, its quota, and (on release) the stock.
RESOLVE_SCAN_MODELS: tuple[type[Model], ...] = (Channel,)
# It also finds every channel's paid orders never split (``fulfilment.start_unsplit``) and starts them.
RESOLVE_QUERY_INDEXES: tuple[tuple[type[Model], str], ...] = ((Order, Order.pending_index.Meta.index_name),
                                                              (Order, Order.unsplit_index.Meta.index_name))
RESOLVE_UPDATE_MODELS: tuple[type[Model], ...] = (Order, Quota, Stock)
RESOLVE_UPDATE_ACTIONS = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
# A release first makes sure the goods' Stock items exist (orders from before them: ``goods.stock_items``).
RESOLVE_BACKFILL_GRANTS: tuple[tuple[type[Model], tuple[str, ...]], ...] = (
    (Goods, ("dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:ConditionCheckItem")),
    (Stock, ("dynamodb:BatchGetItem", "dynamodb:PutItem")),
)
# The webhook sweep (``app.deliver_webhooks`` → ``webhooks.sweep``) lists channels, finds each one's due events
# on the outbox's sparse pending index and books each attempt with a conditional UpdateItem; nothing else.
WEBHOOKS_SCAN_MODELS: tuple[type[Model], ...] = (Channel,)
WEBHOOKS_QUERY_INDEXES: tuple[tuple[type[Model], str], ...] = (
    (OutboxEvent, OutboxEvent.pending_index.Meta.index_name),)
WEBHOOKS_UPDATE_MODELS: tuple[type[Model], ...] = (OutboxEvent,)
# The refund sweep (``app.resolve_refunds`` → ``refunds.sweep``) lists channels, finds each one's pending refunds
# on the sparse index, and settles each as a refund does: the refund, the parcel (siblings checked), audit row,
# events, quota, the hosted wallet or the remote member's cap counter, and stock for a remote parcel's cancel.
REFUNDS_SCAN_MODELS: tuple[type[Model], ...] = (Channel,)
REFUNDS_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem",
                         "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]
REFUNDS_MODELS: tuple[type[Model], ...] = (Channel, Refund, Parcel, Order, Member, OutboxEvent, Audit, Quota, Wallet,
                                           Stock, MemberRedemption, BookEntry, Supplier)
# What each fulfilment task reads and writes: its tables, and no others (``parcels``' transactions).
FULFIL_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem",
                        "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]
FULFIL_MODELS: dict[str, tuple[type[Model], ...]] = {
    # the order and its member read; its parcels, their settlement books and the order.paid event written in one
    # transaction (an order from before its points rate: the channel's read)
    "fulfil_split": (Order, Member, Parcel, OutboxEvent, BookEntry, Channel),
    # each cancel: the parcel (its siblings checked), audit row, events; stock, quota and the hosted wallet back;
    # remote mode: the channel read to call its points/refund, the Refund that tracks that call, the member's cap
    "fulfil_deadline": (Order, Member, Parcel, OutboxEvent, Audit, Stock, Quota, Wallet, Channel, Refund,
                        MemberRedemption, BookEntry, Supplier),  # a return booked for settlement, with its bearer
    "fulfil_complete": (Order, Member, Parcel, OutboxEvent, Audit),
}
# Every function that calls a channel (``channel_api``, ``webhooks``) passes the channel's circuit breaker and books
# the call (``partners.reliability``): a GetItem and conditional UpdateItems of the breaker, ADDs to the minute's
# stats item. The API and the door have every table already; these are the others that call.
PARTNER_HEALTH_MODELS: tuple[type[Model], ...] = (PartnerBreaker, PartnerStats)
PARTNER_HEALTH_ACTIONS = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
PARTNER_CALLERS = (RESOLVE_FUNCTION, REFUNDS_FUNCTION, WEBHOOKS_FUNCTION, FULFIL_FUNCTIONS["fulfil_deadline"])
# Metering outside the API (``billing.metering``): the refund sweep and the deadline task meter parcels given
# back (paid orders are metered by the orders stream's consumer, below). The resolver gives a prepaid order price
# back when it releases a remote order (``billing``: in the release transaction, or an order's old entry).
METERED_FUNCTIONS = (REFUNDS_FUNCTION, FULFIL_FUNCTIONS["fulfil_deadline"])
METERING_GRANTS: tuple[tuple[type[Model], tuple[str, ...]], ...] = (
    (ChannelDay, ("dynamodb:UpdateItem",)), (MeterMark, ("dynamodb:PutItem",)))
PREPAID_GIVE_BACK_GRANTS: tuple[tuple[type[Model], tuple[str, ...]], ...] = (
    (PrepaidEntry, ("dynamodb:GetItem", "dynamodb:DeleteItem")), (PrepaidAccount, ("dynamodb:UpdateItem",)))
# The orders stream's consumer (``partners.order_figures``): reads the stream, and writes in transactions its
# marks (``MeterMark``, put with ``does_not_exist``), the day's counters and the partner-call minutes (ADDs); parks
# a record it cannot read. Nothing else.
FIGURES_STREAM_ACTIONS = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                          "dynamodb:ListStreams"]
FIGURES_GRANTS: tuple[tuple[type[Model], tuple[str, ...]], ...] = (
    (MeterMark, ("dynamodb:PutItem",)), (ChannelDay, ("dynamodb:UpdateItem",)),
    (PartnerStats, ("dynamodb:UpdateItem",)), (ParkedRecord, ("dynamodb:PutItem",)))
SESSION_KEY_LENGTH = 64
UPLOADS_PREFIX = "uploads/"
IMAGES_PREFIX = "images/"  # checked images, copied once; no link writes here and nothing expires
UPLOAD_RETENTION_DAYS = 90
LOG_RETENTION_DAYS = 90

Json = dict[str, Any]


def table_suffix(model: type[Model]) -> str:
    """The table's name without the environment's prefix (``Meta.table_name`` is built from env at import)."""
    return model.Meta.table_name.removeprefix(config.TABLE_PREFIX)


def table_id(model: type[Model]) -> str:
    return f"{model.__name__}Table"


def _hash_first(key_schema: list[Json]) -> list[Json]:
    """PynamoDB lists keys in attribute order; CloudFormation wants HASH before RANGE."""
    return sorted(key_schema, key=lambda k: k["KeyType"] != "HASH")


def _index(index: dict[str, Any]) -> Json:
    return {"IndexName": index["index_name"], "KeySchema": _hash_first(index["key_schema"]),
            "Projection": index["projection"]}


def table_resource(model: type[Model], stage: str) -> Json:
    """One table, from the same schema PynamoDB sends to ``create_table`` locally, so the two cannot drift."""
    schema = model._get_schema()
    props: Json = {
        "TableName": f"channelmall-{stage}-{table_suffix(model)}",
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": schema["attribute_definitions"],
        "KeySchema": _hash_first(schema["key_schema"]),
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
        "DeletionProtectionEnabled": True,
    }
    if schema["global_secondary_indexes"]:
        props["GlobalSecondaryIndexes"] = [_index(i) for i in schema["global_secondary_indexes"]]
    if schema["local_secondary_indexes"]:
        props["LocalSecondaryIndexes"] = [_index(i) for i in schema["local_secondary_indexes"]]
    stream = getattr(model.Meta, "stream_view_type", None)
    if stream:  # read by a consumer (``Order``: ``partners.order_figures``)
        props["StreamSpecification"] = {"StreamViewType": stream}
    ttl = model._ttl_attribute()
    if ttl is not None:
        props["TimeToLiveSpecification"] = {"AttributeName": ttl.attr_name, "Enabled": True}
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
            "Properties": props}


def bucket_resources(stage: str) -> dict[str, Json]:
    """Private, encrypted uploads bucket that browsers POST to and that tells EventBridge about new objects."""
    bucket = {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": {"Fn::Sub": f"channelmall-{stage}-uploads-${{AWS::AccountId}}"},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True,
                "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            # Presigned POST from the supplier's browser; the signed policy, not CORS, limits what lands.
            "CorsConfiguration": {"CorsRules": [{
                "AllowedMethods": ["POST"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"], "MaxAge": 300}]},
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
            "LifecycleConfiguration": {"Rules": [{
                "Id": "expire-uploads", "Status": "Enabled", "Prefix": UPLOADS_PREFIX,
                "ExpirationInDays": UPLOAD_RETENTION_DAYS,
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            }]},
        },
    }
    deny_plain_http = {
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [{"Fn::GetAtt": [BUCKET, "Arn"]}, {"Fn::Sub": f"${{{BUCKET}.Arn}}/*"}],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policy = {"Type": "AWS::S3::BucketPolicy", "Properties": {
        "Bucket": {"Ref": BUCKET},
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [deny_plain_http]},
    }}
    return {BUCKET: bucket, f"{BUCKET}Policy": policy}


def _table_arns(models: tuple[type[Model], ...], indexes: bool) -> list[Json]:
    """Each table's ARN, plus its indexes' where it has any and the caller queries them."""
    arns: list[Json] = []
    for model in models:
        arns.append({"Fn::GetAtt": [table_id(model), "Arn"]})
        if indexes and model._indexes:
            arns.append({"Fn::Sub": f"${{{table_id(model)}.Arn}}/index/*"})
    return arns


def _index_arn(model: type[Model], index_name: str) -> Json:
    return {"Fn::Sub": f"${{{table_id(model)}.Arn}}/index/{index_name}"}


def _objects_arn(prefix: str = UPLOADS_PREFIX) -> Json:
    return {"Fn::Sub": f"${{{BUCKET}.Arn}}/{prefix}*"}


def _role_policy(role: str, log_group: str, statements: list[Json]) -> Json:
    """The role's only inline policy: its own log group, X-Ray, and the given statements."""
    base = [
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": {"Fn::GetAtt": [log_group, "Arn"]}},
        # X-Ray has no resource-level permissions.
        {"Sid": "Tracing", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
         "Resource": "*"},
    ]
    return {"Properties": {"Policies": [{
        "PolicyName": f"{role}Policy",
        "PolicyDocument": {"Version": "2012-10-17", "Statement": base + statements},
    }]}}


def session_key_secret() -> Json:
    """The key that signs member sessions and hashes one-time codes; CloudFormation generates it, nobody sees it."""
    return {"Type": "AWS::SecretsManager::Secret", "Properties": {
        "Description": "Channel Mall member session signing and one-time code hashing key",
        "GenerateSecretString": {"PasswordLength": SESSION_KEY_LENGTH, "ExcludePunctuation": True},
    }}


def _session_key_grant() -> Json:
    return {"Sid": "SessionKey", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
            "Resource": {"Ref": SESSION_KEY_SECRET}}


def _sms_statements() -> list[Json]:
    """One-time payment codes go by SNS straight to the member's phone (``sms.send``, ``Publish(PhoneNumber=)``).

    A phone number is not an ARN, so the Allow must say Resource "*": IAM rejects any other
    pattern, and SNS has no condition key that names the destination number. What can be
    narrowed is narrowed: the action is only ``sns:Publish``, only in this stack's region
    (where the account's SMS spend limit and origination identities live), and the Deny keeps
    the grant off every topic and platform endpoint (those are ``arn:aws:sns:...``), so "*"
    here reaches phone numbers and nothing else.
    """
    return [
        {"Sid": "SmsOneTimeCodes", "Effect": "Allow", "Action": "sns:Publish", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": {"Ref": "AWS::Region"}}}},
        {"Sid": "SmsNotTopicsOrEndpoints", "Effect": "Deny", "Action": "sns:Publish", "Resource": "arn:aws:sns:*:*:*"},
    ]


def function_resources(stage: str) -> dict[str, Json]:
    """Overrides of Chalice's functions and roles: own log groups, the real bucket name, least-privilege policies."""
    grants: dict[str, list[Json]] = {
        API_FUNCTION: [
            {"Sid": "Tables", "Effect": "Allow", "Action": API_TABLE_ACTIONS,
             "Resource": _table_arns(ALL_MODELS, indexes=True)},
            # PutObject is what the presigned POST is signed for; GetObject what catalog image links are.
            {"Sid": "Uploads", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": _objects_arn()},
            {"Sid": "Images", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": _objects_arn(IMAGES_PREFIX)},
            *_sms_statements(),
        ],
        # The door serves the channel-facing routes only (entry, store, member and partner APIs): what they
        # touch, without the suppliers' upload links.
        DOOR_FUNCTION: [
            {"Sid": "Tables", "Effect": "Allow", "Action": API_TABLE_ACTIONS,
             "Resource": _table_arns(ALL_MODELS, indexes=True)},
            {"Sid": "Images", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": _objects_arn(IMAGES_PREFIX)},
            *_sms_statements(),
        ],
        UPLOAD_FUNCTION: [
            {"Sid": "Tables", "Effect": "Allow", "Action": UPLOAD_TABLE_ACTIONS,
             "Resource": _table_arns(UPLOAD_MODELS, indexes=False)},
            {"Sid": "Uploads", "Effect": "Allow", "Action": ["s3:GetObject", "s3:DeleteObject"],
             "Resource": _objects_arn()},
            # the checked image is copied to its own prefix (CopyObject: read the source, put the copy)
            {"Sid": "Images", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": _objects_arn(IMAGES_PREFIX)},
        ],
        RESOLVE_FUNCTION: [
            {"Sid": "Channels", "Effect": "Allow", "Action": ["dynamodb:Scan"],
             "Resource": _table_arns(RESOLVE_SCAN_MODELS, indexes=False)},
            {"Sid": "PendingOrders", "Effect": "Allow", "Action": ["dynamodb:Query"],
             "Resource": [_index_arn(model, name) for model, name in RESOLVE_QUERY_INDEXES]},
            {"Sid": "Settlement", "Effect": "Allow", "Action": RESOLVE_UPDATE_ACTIONS,
             "Resource": _table_arns(RESOLVE_UPDATE_MODELS, indexes=False)},
            *({"Sid": f"StockBackfill{model.__name__}", "Effect": "Allow", "Action": list(actions),
               "Resource": _table_arns((model,), indexes=False)} for model, actions in RESOLVE_BACKFILL_GRANTS),
        ],
        REFUNDS_FUNCTION: [
            {"Sid": "Channels", "Effect": "Allow", "Action": ["dynamodb:Scan"],
             "Resource": _table_arns(REFUNDS_SCAN_MODELS, indexes=False)},
            {"Sid": "Refunds", "Effect": "Allow", "Action": REFUNDS_TABLE_ACTIONS,
             "Resource": _table_arns(REFUNDS_MODELS, indexes=True)},
        ],
        FIGURES_FUNCTION: [
            {"Sid": "OrdersStream", "Effect": "Allow", "Action": FIGURES_STREAM_ACTIONS,
             "Resource": {"Fn::GetAtt": [table_id(Order), "StreamArn"]}},
            *({"Sid": f"Figures{model.__name__}", "Effect": "Allow", "Action": list(actions),
               "Resource": _table_arns((model,), indexes=False)} for model, actions in FIGURES_GRANTS),
        ],
        WEBHOOKS_FUNCTION: [
            {"Sid": "Channels", "Effect": "Allow", "Action": ["dynamodb:Scan"],
             "Resource": _table_arns(WEBHOOKS_SCAN_MODELS, indexes=False)},
            {"Sid": "DueEvents", "Effect": "Allow", "Action": ["dynamodb:Query"],
             "Resource": [_index_arn(model, name) for model, name in WEBHOOKS_QUERY_INDEXES]},
            {"Sid": "Deliveries", "Effect": "Allow", "Action": ["dynamodb:UpdateItem"],
             "Resource": _table_arns(WEBHOOKS_UPDATE_MODELS, indexes=False)},
        ],
    }
    for name, function in FULFIL_FUNCTIONS.items():
        grants[function] = [{"Sid": "Tables", "Effect": "Allow", "Action": FULFIL_TABLE_ACTIONS,
                             "Resource": _table_arns(FULFIL_MODELS[name], indexes=True)}]
    resources: dict[str, Json] = {}
    for function in FUNCTIONS:
        env: Json = {"TABLE_PREFIX": f"channelmall-{stage}-", "UPLOAD_BUCKET": {"Ref": BUCKET}}
        statements = grants[function]
        if function in EXECUTION_STARTERS:  # the machine's ARN and the right to start it go together
            env["FULFILMENT_STATE_MACHINE_ARN"] = {"Ref": STATE_MACHINE}
            statements = statements + [{"Sid": "StartFulfilment", "Effect": "Allow",
                                        "Action": ["states:StartExecution"], "Resource": {"Ref": STATE_MACHINE}}]
        if function == RESOLVE_FUNCTION:  # the sweep finds failed executions and restarts them (``restart_failed``)
            statements = statements + [
                {"Sid": "FailedFulfilments", "Effect": "Allow", "Action": ["states:ListExecutions"],
                 "Resource": {"Ref": STATE_MACHINE}},
                {"Sid": "FulfilmentRuns", "Effect": "Allow", "Action": ["states:DescribeExecution"],
                 "Resource": {"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:"
                                         f"channelmall-{stage}-{ORDER_FULFILMENT}:*"}}]
        if function in SESSION_KEY_READERS:  # the ARN and the right to read it go together
            env["SESSION_KEY_SECRET_ARN"] = {"Ref": SESSION_KEY_SECRET}
            statements = statements + [_session_key_grant()]
        grants_here = (METERING_GRANTS if function in METERED_FUNCTIONS else ()) + (
            PREPAID_GIVE_BACK_GRANTS if function == RESOLVE_FUNCTION else ())
        statements = statements + [{"Sid": f"Billing{model.__name__}", "Effect": "Allow", "Action": list(actions),
                                    "Resource": _table_arns((model,), indexes=False)} for model, actions in grants_here]
        if function in PARTNER_CALLERS:
            statements = statements + [{"Sid": "PartnerHealth", "Effect": "Allow", "Action": PARTNER_HEALTH_ACTIONS,
                                        "Resource": _table_arns(PARTNER_HEALTH_MODELS, indexes=False)}]
        resources[f"{function}LogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": f"/channelmall/{stage}/{function}", "RetentionInDays": LOG_RETENTION_DAYS}}
        resources[function] = {"Properties": {
            "Environment": {"Variables": env},
            "LoggingConfig": {"LogGroup": {"Ref": f"{function}LogGroup"}},
        }}
        resources[ROLES[function]] = _role_policy(ROLES[function], f"{function}LogGroup", statements)
    # The consumer reads the orders table's own stream (the app names a placeholder): a batch that fails is split
    # to find the record at fault; a record the consumer cannot read it parks itself, so none blocks the rest.
    resources[FIGURES_FUNCTION]["Properties"]["Events"] = {FIGURES_EVENT: {"Properties": {
        "Stream": {"Fn::GetAtt": [table_id(Order), "StreamArn"]}, "BisectBatchOnFunctionError": True}}}
    # Only this stage's bucket triggers the processor (the app's pattern matches any bucket).
    resources[UPLOAD_FUNCTION]["Properties"]["Events"] = {UPLOAD_EVENT: {"Properties": {"Pattern": {
        "detail": {"bucket": {"name": [{"Ref": BUCKET}]}}}}}}
    return resources


def door_resources() -> dict[str, Json]:
    """The function URL in front of ``channel_door``. Auth NONE: every channel call is signed and every member
    call carries a session, checked by the app; the door refuses ops routes (``core/function_url``)."""
    cors = {"AllowOrigins": {"Ref": DOOR_ORIGINS}, "AllowMethods": ["GET", "POST", "PUT", "DELETE"],
            "AllowHeaders": DOOR_CORS_HEADERS, "AllowCredentials": False, "MaxAge": 600}
    return {
        DOOR_URL: {"Type": "AWS::Lambda::Url", "Properties": {
            "TargetFunctionArn": {"Fn::GetAtt": [DOOR_FUNCTION, "Arn"]}, "AuthType": "NONE",
            "InvokeMode": "BUFFERED",
            "Cors": {"Fn::If": ["HasChannelAppOrigins", cors, {"Ref": "AWS::NoValue"}]}}},
        f"{DOOR_URL}Permission": {"Type": "AWS::Lambda::Permission", "Properties": {
            "Action": "lambda:InvokeFunctionUrl", "FunctionName": {"Ref": DOOR_FUNCTION}, "Principal": "*",
            "FunctionUrlAuthType": "NONE"}},
    }


def state_machine_resources(stage: str) -> dict[str, Json]:
    """The order_fulfilment state machine (definition object from ``infra.state_machines``) and its role,
    which may invoke exactly the fulfilment Lambdas and nothing else."""
    arns = {name: {"Fn::GetAtt": [function, "Arn"]} for name, function in FULFIL_FUNCTIONS.items()}
    role = {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]},
        "Policies": [{"PolicyName": f"{STATE_MACHINE_ROLE}Policy", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": [{
                "Sid": "FulfilmentTasks", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                "Resource": list(arns.values())}]}}],
    }}
    machine = {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
        "StateMachineName": f"channelmall-{stage}-{ORDER_FULFILMENT}",
        "StateMachineType": "STANDARD",
        "Definition": order_fulfilment(),
        "DefinitionSubstitutions": arns,
        "RoleArn": {"Fn::GetAtt": [STATE_MACHINE_ROLE, "Arn"]},
    }}
    return {STATE_MACHINE_ROLE: role, STATE_MACHINE: machine}


def _alarm(description: str, namespace: str, metric: str, dimensions: list[Json], period: int = 300) -> Json:
    """Any occurrence within ``period`` seconds pages ops; no data means nothing went wrong."""
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": description, "Namespace": namespace, "MetricName": metric, "Dimensions": dimensions,
        "Statistic": "Sum", "Period": period, "EvaluationPeriods": 1, "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
        "AlarmActions": [{"Ref": ALARM_TOPIC}], "OKActions": [{"Ref": ALARM_TOPIC}],
    }}


def _anomaly_alarm(description: str, namespace: str, metric: str, dimensions: list[Json]) -> Json:
    """Pages ops when ``metric`` (a 5-minute sum) rises above the band CloudWatch learnt from its own history."""
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": description, "EvaluationPeriods": 1, "ThresholdMetricId": "band",
        "ComparisonOperator": "GreaterThanUpperThreshold", "TreatMissingData": "notBreaching",
        "Metrics": [
            {"Id": "value", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
                "Period": 300, "Stat": "Sum"}},
            {"Id": "band", "Expression": "ANOMALY_DETECTION_BAND(value, 3)", "Label": f"{metric} (expected)"}],
        "AlarmActions": [{"Ref": ALARM_TOPIC}], "OKActions": [{"Ref": ALARM_TOPIC}],
    }}


def monitoring_resources(stage: str, chalice: Json) -> dict[str, Json]:
    """Ops alarm topic, alarms on function errors, API 5XX and unresolved remote orders, and the ops dashboard."""
    api_name = chalice["app_name"]
    api_stage = chalice["stages"][stage]["api_gateway_stage"]
    env = chalice["environment_variables"]
    namespace, service = env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]
    api_dims = [{"Name": "ApiName", "Value": api_name}, {"Name": "Stage", "Value": api_stage}]
    # Powertools ``Metrics`` adds the ``service`` dimension to every app metric.
    service_dims = [{"Name": "service", "Value": service}]
    resources: dict[str, Json] = {
        ALARM_TOPIC: {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": f"Channel Mall {stage} alarms"}},
        "ApiHandlerErrorsAlarm": _alarm("API handler Lambda errors", "AWS/Lambda", "Errors",
                                        [{"Name": "FunctionName", "Value": {"Ref": API_FUNCTION}}]),
        "ChannelDoorErrorsAlarm": _alarm("Function URL door Lambda errors", "AWS/Lambda", "Errors",
                                         [{"Name": "FunctionName", "Value": {"Ref": DOOR_FUNCTION}}]),
        "UploadCreatedErrorsAlarm": _alarm("Upload processor Lambda errors", "AWS/Lambda", "Errors",
                                           [{"Name": "FunctionName", "Value": {"Ref": UPLOAD_FUNCTION}}]),
        "ResolveRemoteOrdersErrorsAlarm": _alarm(
            "Remote order resolver Lambda errors", "AWS/Lambda", "Errors",
            [{"Name": "FunctionName", "Value": {"Ref": RESOLVE_FUNCTION}}]),
        # Every task retries its faults; an execution fails only when one keeps failing: an order stuck unsplit,
        # uncancelled or uncompleted. Ops look at the execution's history (named after the order id).
        "FulfilmentFailedAlarm": _alarm(
            "Order fulfilment executions failed (a task kept failing through its retries)", "AWS/States", "ExecutionsFailed",
            [{"Name": "StateMachineArn", "Value": {"Ref": STATE_MACHINE}}]),
        # The sweep restarted a failed or timed-out execution as the order's next run (``fulfilment.restart_failed``):
        # a fault outlived the task's retries; it repeats, further apart, while the fault lasts.
        "FulfilmentRestartedAlarm": _alarm(
            "Order fulfilment executions restarted after they failed or timed out", namespace, "FulfilmentRestarted",
            service_dims),
        "FulfilmentTimedOutAlarm": _alarm(
            "Order fulfilment executions timed out", "AWS/States", "ExecutionsTimedOut",
            [{"Name": "StateMachineArn", "Value": {"Ref": STATE_MACHINE}}]),
        # A paid order whose execution could not be started (``fulfilment.start``): a member's replay retries it.
        "FulfilmentStartFailedAlarm": _alarm(
            "Paid orders whose fulfilment execution did not start", namespace, "FulfilmentStartFailed",
            service_dims),
        **{f"{function}ErrorsAlarm": _alarm(f"Fulfilment task {name} Lambda errors (Step Functions retries them)",
                                            "AWS/Lambda", "Errors", [{"Name": "FunctionName", "Value": {"Ref": function}}])
           for name, function in FULFIL_FUNCTIONS.items()},
        "Api5xxAlarm": _alarm("API Gateway 5XX responses", "AWS/ApiGateway", "5XXError", api_dims),
        # Counted each time a remote-mode order's deduction stays unknown (at checkout and every sweep).
        "RemoteUnresolvedAlarm": _alarm(
            "Remote-mode orders whose points deduction the channel has not confirmed or denied: quota and stock "
            "stay reserved; check the channel's API (PartnerCalls by channel) and the pending-orders ops route",
            namespace, "RemoteUnresolved", service_dims, period=900),
        "OrderFiguresErrorsAlarm": _alarm(
            "Orders stream consumer Lambda errors (its batch is retried; figures wait)", "AWS/Lambda", "Errors",
            [{"Name": "FunctionName", "Value": {"Ref": FIGURES_FUNCTION}}]),
        "StreamRecordParkedAlarm": _alarm(
            "An orders stream record the figures consumer could not read was parked (ParkedRecord table)",
            namespace, "StreamRecordParked", service_dims),
        "ResolveRefundsErrorsAlarm": _alarm("Refund sweep Lambda errors", "AWS/Lambda", "Errors",
                                            [{"Name": "FunctionName", "Value": {"Ref": REFUNDS_FUNCTION}}]),
        "DeliverWebhooksErrorsAlarm": _alarm("Webhook delivery sweep Lambda errors", "AWS/Lambda", "Errors",
                                             [{"Name": "FunctionName", "Value": {"Ref": WEBHOOKS_FUNCTION}}]),
        # Counted per order event whose last webhook retry failed (``webhooks``): the channel has not heard of it.
        "WebhooksParkedAlarm": _alarm(
            "Order events parked after their last webhook retry: the channel has not heard about them; fix its "
            "webhook, then redrive (GET/POST /ops/channels/{code}/webhooks/parked|redrive)",
            namespace, "WebhooksParked", service_dims),
        # A channel's webhook answered 410 Gone (``webhooks.disable``): nothing is delivered until ops enable it.
        "WebhookEndpointDisabledAlarm": _alarm(
            "A channel's webhook endpoint answered 410 Gone and was disabled: its events wait; once the channel "
            "fixed it, POST /ops/channels/{code}/webhooks/enable",
            namespace, "WebhookEndpointDisabled", service_dims),
        "WebhookSweepFailedAlarm": _alarm(
            "The webhook sweep failed for a channel (logged with the channel); its events wait for the next round",
            namespace, "WebhookSweepFailed", service_dims),
        # A supplier let the shipping deadline pass: the parcel was cancelled and the member given back (ops follow
        # up with the supplier); one the deadline could not cancel is left for ops to decide.
        "ParcelsExpiredAlarm": _alarm(
            "Parcels cancelled at their shipping deadline (the supplier did not ship); follow up with the supplier",
            namespace, "ParcelsExpired", service_dims),
        "ParcelExpiryRefusedAlarm": _alarm(
            "Parcels past their shipping deadline that could not be cancelled; decide by hand", namespace,
            "ParcelExpiryRefused", service_dims),
        # Counted each time a remote refund's result stays unknown (at the request and every sweep).
        "RefundUnresolvedAlarm": _alarm(
            "Remote refunds the channel has not confirmed; check its refund API and the pending-refunds ops route",
            namespace, "RefundUnresolved", service_dims, period=900),
        "RefundRefusedByChannelAlarm": _alarm(
            "Refunds the channel refused: the member did not get the points back; settle it with the channel",
            namespace, "RefundRefusedByChannel", service_dims),
        **{f"{metric}Alarm": _alarm(f"A sweep failed for one channel ({metric}); the others went on", namespace,
                                    metric, service_dims)
           for metric in ("RemoteSweepFailed", "RefundSweepFailed", "FulfilmentSweepFailed")},
        # ``partners.reliability``: a channel's API (or webhook) looks dead (this minute, 10 or more of its calls
        # and three in four failed) and its breaker opened, or a probe failed and reopened it: its callers get
        # partner_unavailable until a probe succeeds.
        "PartnerBreakerOpenedAlarm": _alarm(
            "A channel's API or webhook kept failing and its circuit breaker opened: calls to it fail fast "
            "(partner_unavailable); see GET /ops/channels/{code}/partner-health and tell the channel",
            namespace, "PartnerBreakerOpened", service_dims),
        # A minute in which one channel API's calls (10 or more) failed at a rate of 20 % or more.
        "PartnerErrorRateHighAlarm": _alarm(
            "A channel's API failed a fifth or more of its calls in a minute; see GET "
            "/ops/channels/{code}/partner-health (calls, errors by kind, p95 per API) and tell the channel",
            namespace, "PartnerErrorRateHigh", service_dims),
        # Operating data and billing (``billing.metering``, ``billing.billing``). Refusals are part of the
        # business (points run out), so their alarm is a spike above the band CloudWatch learns, not any refusal.
        "RedemptionRefusedSpikeAlarm": _anomaly_alarm(
            "Checkout refusals (quota, balance, stock, period, password) above their usual band: a limit ran out or "
            "members are being turned away; see Redemption refusals by channel and reason, and the operating data",
            namespace, "RedemptionRefused", service_dims),
        "PrepaidLowAlarm": _alarm(
            "A prepaid channel's balance fell below its plan's alert threshold: top it up before its calls are refused "
            "(POST /ops/channels/{code}/prepaid/top-ups)", namespace, "PrepaidLow", service_dims),
        "PrepaidExhaustedAlarm": _alarm(
            "A prepaid channel is refused (402 prepaid_exhausted): its balance cannot pay for its calls or orders",
            namespace, "PrepaidExhausted", service_dims),
        "MeteringFailedAlarm": _alarm(
            "Operating counters not raised (the business write stood): the day's figures and usage fees are short",
            namespace, "MeteringFailed", service_dims),
    }

    def app_metrics(*names: str) -> list[list[str]]:
        return [[namespace, name, "service", service] for name in names]

    def per_function(metric: str) -> list[list[str]]:
        return [["AWS/Lambda", metric, "FunctionName", f"${{{f}}}"]
                for f in (*FUNCTIONS, *SETTLE_FUNCTIONS.values(), START_SETTLEMENTS, LEDGER_FUNCTION,
                          AUDIT_FUNCTION, RETRY_FUNCTION, WIDGETS_FUNCTION, CLOSE_SALES)]

    def by_channel(metric: str, stat: str, dimensions: str = "channel,service") -> list[list[Json]]:
        """``metering.metric``: one metric per channel (and reason), found by a search."""
        query = f"{{{namespace},{dimensions}}} MetricName=\"{metric}\""
        return [[{"expression": f"SEARCH('{query}', '{stat}', 300)", "id": metric.lower()}]]

    def per_channel(metric: str, stat: str) -> list[list[Json]]:
        """``channel_api._measure`` emits one metric per channel and outcome (``single_metric`` adds ``service``)."""
        query = f"{{{namespace},channel,outcome,service}} MetricName=\"{metric}\""
        return [[{"expression": f"SEARCH('{query}', '{stat}', 300)", "id": metric.lower()}]]

    panels = [
        ("Goods", app_metrics("GoodsPublished", "GoodsApproved"), "Sum"),
        ("API errors", app_metrics("ClientErrors", "ServerErrors")
         + [["AWS/ApiGateway", "5XXError", "ApiName", api_name, "Stage", api_stage]], "Sum"),
        ("Uploads", app_metrics("UploadsProcessed", "UploadsRefused"), "Sum"),
        ("Lambda errors", per_function("Errors"), "Sum"),
        ("Lambda duration (p99)", per_function("Duration"), "p99"),
        ("Orders", app_metrics("OrdersPlaced", "CheckoutRefused", "RemoteUnresolved"), "Sum"),
        ("Channel entries", app_metrics("Entries", "EntryRefused"), "Sum"),
        ("Points granted", app_metrics("PointsGranted"), "Sum"),
        ("Partner calls by channel and outcome", per_channel("PartnerCalls", "Sum"), "Sum"),
        ("Partner latency by channel and outcome (p99)", per_channel("PartnerLatency", "p99"), "p99"),
        ("Partner breakers", app_metrics("PartnerBreakerOpened", "PartnerCallsRefused", "PartnerErrorRateHigh"), "Sum"),
        ("Paid orders by channel", by_channel("ChannelOrders", "Sum"), "Sum"),
        ("GMV by channel (fen)", by_channel("ChannelGMV", "Sum"), "Sum"),
        ("Redemption refusals by channel and reason", by_channel("RedemptionRefused", "Sum", "channel,reason,service"),
         "Sum"),
        ("Inbound signed calls by channel", by_channel("InboundCalls", "Sum"), "Sum"),
        ("Entries by channel", by_channel("ChannelEntries", "Sum"), "Sum"),
        ("Prepaid balances and metering", app_metrics("PrepaidLow", "PrepaidExhausted", "MeteringFailed"), "Sum"),
        ("Settlement", app_metrics("PeriodsSettled", "StatementMismatch") + [
            ["AWS/States", m, "StateMachineArn", f"${{{SETTLEMENT_MACHINE}}}"] for m in ("ExecutionsSucceeded",
                                                                                   "ExecutionsFailed")], "Sum"),
    ]
    widgets = [
        {"type": "metric", "x": (i % 2) * 12, "y": (i // 2) * 6, "width": 12, "height": 6,
         "properties": {"title": title, "metrics": metrics, "stat": stat, "period": 300,
                        "region": "${AWS::Region}", "view": "timeSeries"}}
        for i, (title, metrics, stat) in enumerate(panels)
    ]
    resources["OpsDashboard"] = {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
        "DashboardName": f"channelmall-{stage}",
        "DashboardBody": {"Fn::Sub": json.dumps({"widgets": widgets})},
    }}
    return resources


def build_merge_template(stage: str = "prod") -> Json:
    """The template ``chalice package --merge-template`` deep-merges over its own (lists replace, dicts merge)."""
    chalice = json.loads(CHALICE_CONFIG.read_text())
    resources: dict[str, Json] = {table_id(m): table_resource(m, stage) for m in ALL_MODELS}
    resources |= bucket_resources(stage)
    resources[SESSION_KEY_SECRET] = session_key_secret()
    resources |= function_resources(stage)
    resources |= door_resources()
    resources |= state_machine_resources(stage)
    resources |= monitoring_resources(stage, chalice)
    resources |= settlement_resources(stage, chalice, resources)
    resources |= reconciliation_resources(stage, chalice, resources)
    resources |= refund_retry_resources(stage, resources)
    resources |= ops_widget_resources(stage, resources)
    resources |= sales_resources(stage, resources)
    outputs = {"UploadBucketName": {"Value": {"Ref": BUCKET}}, "AlarmTopicArn": {"Value": {"Ref": ALARM_TOPIC}},
               "SessionKeySecretArn": {"Value": {"Ref": SESSION_KEY_SECRET}},
               "ChannelDoorUrl": {"Value": {"Fn::GetAtt": [DOOR_URL, "FunctionUrl"]}}}
    parameters = {DOOR_ORIGINS: {
        "Type": "CommaDelimitedList", "Default": "",
        "Description": "Origins of channel apps that call the member JSON API cross-origin through the function "
                       "URL (https://app.example.com,...); empty: no CORS (the H5 store is same-origin)"}}
    conditions = {"HasChannelAppOrigins": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": DOOR_ORIGINS}]}, ""]}]}}
    return {"Parameters": parameters, "Conditions": conditions, "Resources": resources, "Outputs": outputs}



# --- settlement (``chalicelib/settlement``): the state machine, its four tasks and scheduled starter, their roles ---
SETTLEMENT_MACHINE, SETTLEMENT_MACHINE_ROLE = "SettlementStateMachine", "SettlementRole"
SETTLE_FUNCTIONS = {name: "".join(part.capitalize() for part in name.split("_")) for name in SETTLEMENT_FUNCTIONS}
START_SETTLEMENTS = "StartSettlements"  # the schedule (``app.start_settlements``)
SETTLEMENT_PREFIX = "settlement/"  # pages of parties, exports, margin files: written by the tasks only
# A channel's server fetches its own exports through the door: the channel statements' keys only.
CHANNEL_EXPORTS = f"{SETTLEMENT_PREFIX}*/channel/*"
READ = ("dynamodb:GetItem",)
# Each task's tables and actions: freeze lists the parties and records the period; a page reads each channel's
# rule by day, claims days, reads the books (and, for the fee, the channel's plans and metered days) and writes
# statements; the platform reads the period and the channels' statements (their margin files' keys) and writes
# its statement; close reads every statement and settles the period.
SETTLE_GRANTS: dict[str, tuple[tuple[type[Model], tuple[str, ...]], ...]] = {
    "settle_freeze": ((Channel, ("dynamodb:Scan",)), (Supplier, ("dynamodb:Scan",)),
                      (SettlementPeriod, READ + ("dynamodb:PutItem", "dynamodb:UpdateItem"))),
    "settle_page": ((BookEntry, ("dynamodb:Query",)), (SettledDay, READ + ("dynamodb:PutItem",)),
                    (Statement, READ + ("dynamodb:PutItem",)), (BillingPlan, ("dynamodb:Query",)),
                    (ChannelDay, ("dynamodb:Query",)), (Channel, READ)),
    "settle_platform": ((SettlementPeriod, READ), (Statement, READ + ("dynamodb:BatchGetItem", "dynamodb:PutItem"))),
    "settle_close": ((SettlementPeriod, READ + ("dynamodb:UpdateItem",)), (Statement, ("dynamodb:BatchGetItem",))),
}
SETTLE_OBJECTS = {"settle_freeze": ["s3:PutObject"], "settle_page": ["s3:PutObject"],
                  "settle_platform": ["s3:GetObject", "s3:PutObject"], "settle_close": ["s3:GetObject"]}


def settlement_resources(stage: str, chalice: Json, resources: dict[str, Json]) -> dict[str, Json]:
    """The settlement state machine (Distributed Map: its role may start, read and stop its own child executions
    and read the pages file), its tasks and starter with least-privilege roles, the API's and the door's grants
    (start runs; presign exports: the door channel exports only), and alarms on a failed run or a statement
    found changed after it closed."""
    env = chalice["environment_variables"]
    arns = {name: {"Fn::GetAtt": [function, "Arn"]} for name, function in SETTLE_FUNCTIONS.items()}
    machine_arn = {"Ref": SETTLEMENT_MACHINE}
    # A Distributed Map's child executions are named "{machine}/{map run}:{child}" (what the role describes and stops).
    own_executions = {"Fn::Sub": f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:execution:"
                                 f"channelmall-{stage}-{SETTLEMENT}/*"}
    role = {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]},
        "Policies": [{"PolicyName": f"{SETTLEMENT_MACHINE_ROLE}Policy", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": [
                {"Sid": "SettlementTasks", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                 "Resource": list(arns.values())},
                # by name, not Ref: the machine refers to this role, so a Ref back would be a cycle
                {"Sid": "MapChildren", "Effect": "Allow", "Action": ["states:StartExecution"], "Resource": {
                    "Fn::Sub": f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:"
                               f"channelmall-{stage}-{SETTLEMENT}"}},
                {"Sid": "MapChildrenState", "Effect": "Allow",
                 "Action": ["states:DescribeExecution", "states:StopExecution"], "Resource": own_executions},
                {"Sid": "PagesOfParties", "Effect": "Allow", "Action": ["s3:GetObject"],
                 "Resource": _objects_arn(SETTLEMENT_PREFIX)}]}}],
    }}
    out: dict[str, Json] = {SETTLEMENT_MACHINE_ROLE: role, SETTLEMENT_MACHINE: {
        "Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "StateMachineName": f"channelmall-{stage}-{SETTLEMENT}", "StateMachineType": "STANDARD",
            "Definition": settlement(), "DefinitionSubstitutions": arns,
            "RoleArn": {"Fn::GetAtt": [SETTLEMENT_MACHINE_ROLE, "Arn"]}}}}
    statements: dict[str, list[Json]] = {
        function: [{"Sid": f"Settle{model.__name__}", "Effect": "Allow", "Action": list(actions),
                    "Resource": _table_arns((model,), indexes=False)} for model, actions in SETTLE_GRANTS[name]]
        + [{"Sid": "SettlementObjects", "Effect": "Allow", "Action": SETTLE_OBJECTS[name],
            "Resource": _objects_arn(SETTLEMENT_PREFIX)}]
        for name, function in SETTLE_FUNCTIONS.items()}
    statements[START_SETTLEMENTS] = [
        {"Sid": "SettlementPeriods", "Effect": "Allow", "Action": list(READ),
         "Resource": _table_arns((SettlementPeriod,), indexes=False)},
        {"Sid": "StartSettlement", "Effect": "Allow", "Action": ["states:StartExecution"], "Resource": machine_arn}]
    for function, granted in statements.items():
        variables: Json = {"TABLE_PREFIX": f"channelmall-{stage}-", "UPLOAD_BUCKET": {"Ref": BUCKET}}
        if function == START_SETTLEMENTS:
            variables["SETTLEMENT_STATE_MACHINE_ARN"] = machine_arn
        out[f"{function}LogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": f"/channelmall/{stage}/{function}", "RetentionInDays": LOG_RETENTION_DAYS}}
        out[function] = {"Properties": {"Environment": {"Variables": variables},
                                        "LoggingConfig": {"LogGroup": {"Ref": f"{function}LogGroup"}}}}
        out[f"{function}Role"] = _role_policy(f"{function}Role", f"{function}LogGroup", granted)
        out[f"{function}ErrorsAlarm"] = _alarm(f"Settlement Lambda {function} errors (Step Functions retries tasks)",
                                               "AWS/Lambda", "Errors", [{"Name": "FunctionName", "Value": {"Ref": function}}])
    # The API starts runs for ops and presigns exports for all three parties; the door for channels only.
    extra = {API_FUNCTION: [
        {"Sid": "StartSettlement", "Effect": "Allow", "Action": ["states:StartExecution"], "Resource": machine_arn},
        {"Sid": "SettlementExports", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": _objects_arn(SETTLEMENT_PREFIX)}],
        DOOR_FUNCTION: [{"Sid": "ChannelExports", "Effect": "Allow", "Action": ["s3:GetObject"],
                         "Resource": {"Fn::Sub": f"${{{BUCKET}.Arn}}/{CHANNEL_EXPORTS}"}}]}
    for function, granted in extra.items():
        [policy] = resources[ROLES[function]]["Properties"]["Policies"]
        policy["PolicyDocument"]["Statement"] += granted
    resources[API_FUNCTION]["Properties"]["Environment"]["Variables"]["SETTLEMENT_STATE_MACHINE_ARN"] = machine_arn
    out["SettlementFailedAlarm"] = _alarm(
        "Settlement runs failed (a task kept failing through its retries): no statement changes; fix and re-run "
        "the period (tools.ops settle PERIOD)", "AWS/States", "ExecutionsFailed",
        [{"Name": "StateMachineArn", "Value": machine_arn}])
    out["StatementMismatchAlarm"] = _alarm(
        "A settlement step computed a statement whose closed record holds other bytes: the books of a settled "
        "period changed; investigate before anyone is paid", env["POWERTOOLS_METRICS_NAMESPACE"], "StatementMismatch",
        [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}])
    return out

# --- reconciliation and the invariant audit (``chalicelib/settlement/ledgers.py``, ``audit.py``) ---------------
LEDGER_FUNCTION, LEDGER_EVENT = "LedgerUploaded", "LedgerUploadedEvent"
AUDIT_FUNCTION = "InvariantAudit"
LEDGERS_PREFIX = "ledgers/"  # channels' ledger files: written through signed links only, read and deleted by the Lambda
RESULTS_PREFIX = "reconciliations/"  # result documents: written once, read by the API and the door
QUERY, BATCH = ("dynamodb:Query",), ("dynamodb:BatchGetItem",)
# The ledger Lambda: its upload record, the channel, the results kept, the books of the period (a sandbox channel:
# its members' orders through the two indexes), then the orders, members and parcels the ledger names.
LEDGER_GRANTS: tuple[tuple[type[Model], tuple[str, ...]], ...] = (
    (LedgerUpload, ("dynamodb:GetItem", "dynamodb:UpdateItem")), (Channel, ("dynamodb:GetItem",)),
    (Reconciliation, ("dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem")), (BookEntry, QUERY),
    (Order, BATCH), (Member, BATCH), (Parcel, BATCH))
LEDGER_INDEXES = ((Member, Member.channel_index.Meta.index_name), (Order, Order.member_index.Meta.index_name))
# The audit: every channel, its quota shards (keys from their channel index, then by key), its members (keys only),
# their orders and grants, wallets and parcels by key; it writes only its run.
AUDIT_GRANTS: tuple[tuple[type[Model], tuple[str, ...]], ...] = (
    (Channel, ("dynamodb:Scan",)), (Quota, BATCH), (Wallet, BATCH), (Parcel, BATCH), (AuditRun, ("dynamodb:PutItem",)))
AUDIT_INDEXES = ((Member, Member.channel_index.Meta.index_name), (Order, Order.member_index.Meta.index_name),
                 (Grant, Grant.member_index.Meta.index_name), (Quota, Quota.channel_index.Meta.index_name))


def reconciliation_resources(stage: str, chalice: Json, resources: dict[str, Json]) -> dict[str, Json]:
    """The ledger Lambda (on its own S3 rule) and the hourly audit with least-privilege roles and error alarms; the
    API's and the door's grants (sign ledger upload links, write and read result documents); alarms on
    reconciliation differences, audit drift and a channel the audit could not read; a dashboard panel."""
    env = chalice["environment_variables"]
    namespace, service = env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]
    service_dims = [{"Name": "service", "Value": service}]

    def tables(grants, indexes) -> list[Json]:
        return [{"Sid": model.__name__, "Effect": "Allow", "Action": list(actions),
                 "Resource": _table_arns((model,), indexes=False)} for model, actions in grants] + [
            {"Sid": f"{model.__name__}{name.title().replace('-', '')}", "Effect": "Allow", "Action": list(QUERY),
             "Resource": _index_arn(model, name)} for model, name in indexes]

    statements = {
        LEDGER_FUNCTION: tables(LEDGER_GRANTS, LEDGER_INDEXES) + [
            {"Sid": "Ledgers", "Effect": "Allow", "Action": ["s3:GetObject", "s3:DeleteObject"],
             "Resource": _objects_arn(LEDGERS_PREFIX)},
            {"Sid": "Results", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": _objects_arn(RESULTS_PREFIX)}],
        AUDIT_FUNCTION: tables(AUDIT_GRANTS, AUDIT_INDEXES),
    }
    out: dict[str, Json] = {}
    for function, granted in statements.items():
        out[f"{function}LogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": f"/channelmall/{stage}/{function}", "RetentionInDays": LOG_RETENTION_DAYS}}
        out[function] = {"Properties": {
            "Environment": {"Variables": {"TABLE_PREFIX": f"channelmall-{stage}-", "UPLOAD_BUCKET": {"Ref": BUCKET}}},
            "LoggingConfig": {"LogGroup": {"Ref": f"{function}LogGroup"}}}}
        out[f"{function}Role"] = _role_policy(f"{function}Role", f"{function}LogGroup", granted)
        out[f"{function}ErrorsAlarm"] = _alarm(f"{function} Lambda errors", "AWS/Lambda", "Errors",
                                               [{"Name": "FunctionName", "Value": {"Ref": function}}])
    # Only this stage's bucket triggers the ledger Lambda (the app's pattern matches any bucket).
    out[LEDGER_FUNCTION]["Properties"]["Events"] = {LEDGER_EVENT: {"Properties": {"Pattern": {
        "detail": {"bucket": {"name": [{"Ref": BUCKET}]}}}}}}
    # A channel's ledger file is read once (its result is kept): it expires like a supplier's upload.
    resources[BUCKET]["Properties"]["LifecycleConfiguration"]["Rules"].append({
        "Id": "expire-ledgers", "Status": "Enabled", "Prefix": LEDGERS_PREFIX,
        "ExpirationInDays": UPLOAD_RETENTION_DAYS, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}})
    # Channels call the partner routes on both doors: sign ledger upload links, write and read result documents.
    results = [{"Sid": "LedgerLinks", "Effect": "Allow", "Action": ["s3:PutObject"],
                "Resource": _objects_arn(LEDGERS_PREFIX)},
               {"Sid": "ReconciliationResults", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": _objects_arn(RESULTS_PREFIX)}]
    for function in (API_FUNCTION, DOOR_FUNCTION):
        [policy] = resources[ROLES[function]]["Properties"]["Policies"]
        policy["PolicyDocument"]["Statement"] += results
    out["ReconciliationDifferencesAlarm"] = _alarm(
        "A channel's ledger differs from our books: see GET /ops/channels/{code}/reconciliations/{period} (each "
        "difference with its reason) and settle it with the channel", namespace, "ReconciliationDifferences",
        service_dims)
    out["InvariantDriftAlarm"] = _alarm(
        "The invariant audit found a counter that its items contradict (quota shard, wallet or order): see GET "
        "/ops/audit/latest and the 'invariant drift' log lines; it should never happen", namespace, "InvariantDrift",
        service_dims)
    dashboard = resources["OpsDashboard"]["Properties"]["DashboardBody"]
    body = json.loads(dashboard["Fn::Sub"])
    count = len(body["widgets"])
    body["widgets"].append({"type": "metric", "x": (count % 2) * 12, "y": (count // 2) * 6, "width": 12, "height": 6,
                            "properties": {"title": "Reconciliation and invariant audit", "stat": "Sum", "period": 300,
                                           "region": "${AWS::Region}", "view": "timeSeries", "metrics": [
                                               [namespace, name, "service", service] for name in (
                                                   "ReconciliationDifferences", "LedgersRefused", "InvariantDrift",
                                                   "InvariantAuditFailed")] + [
                                               [{"expression": f"SEARCH('{{{namespace},channel,service}} MetricName="
                                                               f"\"{name}\"', 'Sum', 300)", "id": name.lower()}]
                                               for name in ("ReconciliationDifferences", "InvariantDrift")]}})
    dashboard["Fn::Sub"] = json.dumps(body)
    out["InvariantAuditFailedAlarm"] = _alarm(
        "The invariant audit could not read a channel (its drift would go unseen): see the audit's log",
        namespace, "InvariantAuditFailed", service_dims)
    return out


# --- the fast retry of a remote refund in doubt (``refunds.retry_soon``; issue 16 #12) -------------------------
RETRY_MACHINE, RETRY_MACHINE_ROLE = "RefundRetryStateMachine", "RefundRetryRole"
RETRY_FUNCTION = "RetryRefund"  # the machine's one task (``app.retry_refund``)
# Who starts a refund's retries: whoever sends its first ``points/refund`` (ops and members on both doors, the
# shipping-deadline task's cancels, the refund sweep carrying out an approved refund whose request died).
RETRY_STARTERS = (API_FUNCTION, DOOR_FUNCTION, FULFIL_FUNCTIONS["fulfil_deadline"], REFUNDS_FUNCTION)
# The task settles a refund as the sweep does (``refunds.resolve``): its tables, read by key (no scan, no index).
RETRY_MODELS: tuple[type[Model], ...] = REFUNDS_MODELS


def refund_retry_resources(stage: str, resources: dict[str, Json]) -> dict[str, Json]:
    """The refund_retry state machine (its role invokes only ``retry_refund``), that Lambda with least privilege
    (the refund sweep's tables, the channel's breaker and stats, metering), the starters' grant and ARN, and
    alarms on a failed execution, a Lambda error and a retry that could not be started."""
    machine_arn = {"Ref": RETRY_MACHINE}
    role = {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]},
        "Policies": [{"PolicyName": f"{RETRY_MACHINE_ROLE}Policy", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": [{
                "Sid": "RetryTask", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                "Resource": {"Fn::GetAtt": [RETRY_FUNCTION, "Arn"]}}]}}],
    }}
    out: dict[str, Json] = {RETRY_MACHINE_ROLE: role, RETRY_MACHINE: {
        "Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "StateMachineName": f"channelmall-{stage}-{REFUND_RETRY}", "StateMachineType": "STANDARD",
            "Definition": refund_retry(), "DefinitionSubstitutions": {"retry_refund": {"Fn::GetAtt": [RETRY_FUNCTION, "Arn"]}},
            "RoleArn": {"Fn::GetAtt": [RETRY_MACHINE_ROLE, "Arn"]}}}}
    granted = [{"Sid": "Refunds", "Effect": "Allow", "Action": REFUNDS_TABLE_ACTIONS,
                "Resource": _table_arns(RETRY_MODELS, indexes=False)},
               {"Sid": "PartnerHealth", "Effect": "Allow", "Action": PARTNER_HEALTH_ACTIONS,
                "Resource": _table_arns(PARTNER_HEALTH_MODELS, indexes=False)},
               *({"Sid": f"Billing{model.__name__}", "Effect": "Allow", "Action": list(actions),
                  "Resource": _table_arns((model,), indexes=False)} for model, actions in METERING_GRANTS)]
    out[f"{RETRY_FUNCTION}LogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
        "LogGroupName": f"/channelmall/{stage}/{RETRY_FUNCTION}", "RetentionInDays": LOG_RETENTION_DAYS}}
    out[RETRY_FUNCTION] = {"Properties": {
        "Environment": {"Variables": {"TABLE_PREFIX": f"channelmall-{stage}-", "UPLOAD_BUCKET": {"Ref": BUCKET}}},
        "LoggingConfig": {"LogGroup": {"Ref": f"{RETRY_FUNCTION}LogGroup"}}}}
    out[f"{RETRY_FUNCTION}Role"] = _role_policy(f"{RETRY_FUNCTION}Role", f"{RETRY_FUNCTION}LogGroup", granted)
    for function in RETRY_STARTERS:  # the machine's ARN and the right to start it go together
        resources[function]["Properties"]["Environment"]["Variables"]["REFUND_RETRY_STATE_MACHINE_ARN"] = machine_arn
        [policy] = resources[ROLES[function]]["Properties"]["Policies"]
        policy["PolicyDocument"]["Statement"].append({"Sid": "StartRefundRetry", "Effect": "Allow",
                                                      "Action": ["states:StartExecution"], "Resource": machine_arn})
    alarms = resources["RefundUnresolvedAlarm"]["Properties"]  # the app's own metrics: same namespace and dimension
    namespace, service_dims = alarms["Namespace"], alarms["Dimensions"]
    out[f"{RETRY_FUNCTION}ErrorsAlarm"] = _alarm("Refund retry Lambda errors (Step Functions retries them)",
                                                 "AWS/Lambda", "Errors",
                                                 [{"Name": "FunctionName", "Value": {"Ref": RETRY_FUNCTION}}])
    out["RefundRetryFailedAlarm"] = _alarm(
        "Refund retry executions failed (the task kept failing): the refund waits for the 5-minute sweep",
        "AWS/States", "ExecutionsFailed", [{"Name": "StateMachineArn", "Value": machine_arn}])
    out["RefundRetryNotStartedAlarm"] = _alarm(
        "A remote refund in doubt whose fast retries could not be started: it waits for the 5-minute sweep",
        namespace, "RefundRetryNotStarted", service_dims)
    return out


# --- ops in the AWS console: the dashboard's custom widgets (``app.ops_widgets``, ``chalicelib/routes/widgets``) -------
WIDGETS_FUNCTION = "OpsWidgets"
# What the widgets read, and only read: channels (listed; one read by key for its parked events), the day's
# counters and partner-call minutes (operating report, partner health), the breakers, the goods waiting for
# review and each channel's parked events on their indexes, the audit's runs.
WIDGET_GRANTS: tuple[tuple[type[Model], tuple[str, ...]], ...] = (
    (Channel, ("dynamodb:Scan", "dynamodb:GetItem")), (ChannelDay, QUERY), (PartnerStats, QUERY),
    (PartnerBreaker, QUERY), (AuditRun, QUERY))
WIDGET_INDEXES = ((Goods, Goods.status_index.Meta.index_name), (OutboxEvent, OutboxEvent.parked_index.Meta.index_name))
# (widget param, title, width, height): the order they appear in, below the metric panels.
DASHBOARD_WIDGETS = (("daily_report", "Daily report (dashboard time range, business days UTC+8)", 24, 7),
                     ("partner_health", "Partner health", 12, 7), ("review", "Goods waiting for review", 12, 7),
                     ("parked_webhooks", "Parked webhooks", 12, 7), ("audit_drift", "Latest invariant audit", 12, 7))


def ops_widget_resources(stage: str, resources: dict[str, Json]) -> dict[str, Json]:
    """The custom-widget Lambda with a read-only role over exactly what the widgets show, its log group and errors
    alarm, and its widgets in the ops dashboard. Who may see them is the console user's own IAM (the console
    invokes the Lambda as that user: ``lambda:InvokeFunction`` on it), not anything here."""
    granted = [{"Sid": model.__name__, "Effect": "Allow", "Action": list(actions),
                "Resource": _table_arns((model,), indexes=False)} for model, actions in WIDGET_GRANTS] + [
        {"Sid": f"{model.__name__}{name.title().replace('-', '')}", "Effect": "Allow", "Action": list(QUERY),
         "Resource": _index_arn(model, name)} for model, name in WIDGET_INDEXES]
    out: dict[str, Json] = {
        f"{WIDGETS_FUNCTION}LogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": f"/channelmall/{stage}/{WIDGETS_FUNCTION}", "RetentionInDays": LOG_RETENTION_DAYS}},
        WIDGETS_FUNCTION: {"Properties": {
            "Environment": {"Variables": {"TABLE_PREFIX": f"channelmall-{stage}-", "UPLOAD_BUCKET": {"Ref": BUCKET}}},
            "LoggingConfig": {"LogGroup": {"Ref": f"{WIDGETS_FUNCTION}LogGroup"}}}},
        f"{WIDGETS_FUNCTION}Role": _role_policy(f"{WIDGETS_FUNCTION}Role", f"{WIDGETS_FUNCTION}LogGroup", granted),
        f"{WIDGETS_FUNCTION}ErrorsAlarm": _alarm("Ops dashboard widget Lambda errors (a widget shows an error)",
                                                 "AWS/Lambda", "Errors",
                                                 [{"Name": "FunctionName", "Value": {"Ref": WIDGETS_FUNCTION}}]),
    }
    dashboard = resources["OpsDashboard"]["Properties"]["DashboardBody"]
    body = json.loads(dashboard["Fn::Sub"])
    y = max((w["y"] + w["height"] for w in body["widgets"]), default=0)
    x = 0
    for param, title, width, height in DASHBOARD_WIDGETS:
        if x + width > 24:
            x, y = 0, y + height
        body["widgets"].append({"type": "custom", "x": x, "y": y, "width": width, "height": height, "properties": {
            "endpoint": f"${{{WIDGETS_FUNCTION}.Arn}}", "params": {"widget": param}, "title": title,
            "updateOn": {"refresh": True, "resize": False, "timeRange": param == "daily_report"}}})
        x += width
    dashboard["Fn::Sub"] = json.dumps(body)
    return out


def write_merge_template(path: Path, stage: str = "prod") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_merge_template(stage), indent=2, sort_keys=True) + "\n")
    return path


def main() -> None:
    print(write_merge_template(ROOT / "build" / "merge.json"))


if __name__ == "__main__":
    main()


# --- flash sales (``chalicelib/sales``): the closing sweep, and the sale tables for whoever gives units back ---
# The schedule (``app.sale_sweep``): sale orders' fulfilment started from the buffer (``sales.starts``), ended sales'
# leftovers back to stock.
CLOSE_SALES = "SaleSweep"
CLOSE_SALES_GRANTS: tuple[tuple[type[Model], tuple[str, ...]], ...] = (
    (Sale, ("dynamodb:Scan", "dynamodb:GetItem", "dynamodb:UpdateItem")),
    (SaleShard, ("dynamodb:BatchGetItem", "dynamodb:UpdateItem")),
    (Stock, ("dynamodb:UpdateItem",)), (Audit, ("dynamodb:PutItem",)), (Channel, ("dynamodb:GetItem",)))
# A cancelled parcel of a sale order gives its units back to the sale's shards and the member's count
# (``sales.offers.give_back``), wherever parcels are cancelled or remote orders released.
SALE_GIVE_BACK_MODELS: tuple[type[Model], ...] = (SaleShard, SaleBuyer)
SALE_GIVE_BACK_ACTIONS = ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"]
SALE_GIVE_BACK_ROLES = (ROLES[FULFIL_FUNCTIONS["fulfil_deadline"]], REFUNDS_ROLE, RESOLVE_ROLE, f"{RETRY_FUNCTION}Role")


def sales_resources(stage: str, resources: dict[str, Json]) -> dict[str, Json]:
    """The closing sweep with its least-privilege role, log group and error alarm; the give-back grants."""
    out: dict[str, Json] = {
        f"{CLOSE_SALES}LogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": f"/channelmall/{stage}/{CLOSE_SALES}", "RetentionInDays": LOG_RETENTION_DAYS}},
        CLOSE_SALES: {"Properties": {
            "Environment": {"Variables": {"TABLE_PREFIX": f"channelmall-{stage}-", "UPLOAD_BUCKET": {"Ref": BUCKET},
                                          "FULFILMENT_STATE_MACHINE_ARN": {"Ref": STATE_MACHINE}}},
            "LoggingConfig": {"LogGroup": {"Ref": f"{CLOSE_SALES}LogGroup"}}}},
        f"{CLOSE_SALES}Role": _role_policy(f"{CLOSE_SALES}Role", f"{CLOSE_SALES}LogGroup", [
            {"Sid": model.__name__, "Effect": "Allow", "Action": list(actions),
             "Resource": _table_arns((model,), indexes=False)} for model, actions in CLOSE_SALES_GRANTS] + [
            {"Sid": "BufferedOrders", "Effect": "Allow", "Action": ["dynamodb:Query"],
             "Resource": _index_arn(Order, Order.unsplit_index.Meta.index_name)},
            {"Sid": "StartFulfilment", "Effect": "Allow", "Action": ["states:StartExecution"],
             "Resource": {"Ref": STATE_MACHINE}}]),
        f"{CLOSE_SALES}ErrorsAlarm": _alarm(f"{CLOSE_SALES} Lambda errors (sale orders wait for the 5-minute sweep; "
                                            "ended sales keep their leftovers)",
                                            "AWS/Lambda", "Errors", [{"Name": "FunctionName", "Value": {"Ref": CLOSE_SALES}}]),
    }
    out |= warm_capacity_resources(resources)
    for role in SALE_GIVE_BACK_ROLES:
        [policy] = resources[role]["Properties"]["Policies"]
        policy["PolicyDocument"]["Statement"].append({
            "Sid": "SaleGiveBack", "Effect": "Allow", "Action": SALE_GIVE_BACK_ACTIONS,
            "Resource": _table_arns(SALE_GIVE_BACK_MODELS, indexes=False)})
    return out


# Warm capacity for flash sales (``sales.warm``): the API and door functions publish a ``live`` alias that API
# Gateway and the function URL invoke; its provisioned concurrency is a scalable target (0 between sales) that the
# API's sale scheduling raises before each start and drops after each end with scheduled actions.
WARM_FUNCTIONS = (API_FUNCTION, DOOR_FUNCTION)
WARM_ALIAS = "live"  # ``sales.warm.ALIAS``
WARM_MAX = 3_000  # ``sales.warm.MAX_CONCURRENCY``
SCHEDULED_ACTIONS = ["application-autoscaling:PutScheduledAction", "application-autoscaling:DescribeScheduledActions"]


def _alias(function: str) -> Json:
    """The published alias's ARN (SAM's ``AutoPublishAlias`` makes ``{function}Alias{alias}``)."""
    return {"Ref": f"{function}Alias{WARM_ALIAS}"}


def _api_routes() -> list[tuple[str, str]]:
    """(path, method) of every route Chalice puts in the REST API's definition."""
    from app import app

    return sorted((path, method.lower()) for path, methods in app.routes.items() for method in methods)


def warm_capacity_resources(resources: dict[str, Json]) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for function in WARM_FUNCTIONS:
        resources[function]["Properties"]["AutoPublishAlias"] = WARM_ALIAS
        out[f"{function}ProvisionedConcurrency"] = {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget", "DependsOn": [f"{function}Alias{WARM_ALIAS}"],
            "Properties": {"MinCapacity": 0, "MaxCapacity": WARM_MAX, "ServiceNamespace": "lambda",
                           "ScalableDimension": "lambda:function:ProvisionedConcurrency",
                           "ResourceId": {"Fn::Sub": [f"function:${{Fn}}:{WARM_ALIAS}", {"Fn": {"Ref": function}}]}}}
    # API Gateway invokes the alias: every route's integration, and the permission.
    uri = {"Fn::Sub": ["arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Target}/"
                       "invocations", {"Target": _alias(API_FUNCTION)}]}
    paths: Json = {}
    for path, method in _api_routes():
        paths.setdefault(path, {})[method] = {"x-amazon-apigateway-integration": {"uri": uri}}
    out["RestAPI"] = {"Properties": {"DefinitionBody": {"paths": paths}}}
    out["APIHandlerInvokePermission"] = {"Properties": {"FunctionName": _alias(API_FUNCTION)}}
    # The function URL serves the door's alias.
    resources[DOOR_URL]["Properties"]["TargetFunctionArn"] = _alias(DOOR_FUNCTION)
    resources[f"{DOOR_URL}Permission"]["Properties"]["FunctionName"] = _alias(DOOR_FUNCTION)
    # Ops schedule sales through the API: it writes the scheduled actions on both scalable targets.
    env = resources[API_FUNCTION]["Properties"]["Environment"]["Variables"]
    env["CHANNEL_DOOR_FUNCTION"] = {"Ref": DOOR_FUNCTION}
    [policy] = resources[API_ROLE]["Properties"]["Policies"]
    policy["PolicyDocument"]["Statement"].append({
        "Sid": "SaleWarmCapacity", "Effect": "Allow", "Action": SCHEDULED_ACTIONS,
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:application-autoscaling:${AWS::Region}:${AWS::AccountId}:"
                                "scalable-target/*"}})
    out["SaleWarmFailedAlarm"] = _alarm(
        "A flash sale's warm capacity could not be scheduled (it will start cold): see the sale's `warm` in GET "
        "/ops/channels/{code}/sales/{id} and re-time it", "ChannelMall", "SaleWarmFailed",
        [{"Name": "service", "Value": "channel-mall"}])
    return out
