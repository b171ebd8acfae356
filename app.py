"""Channel Mall: the table of contents. Each business area's HTTP routes are a Blueprint in
``chalicelib/routes/<area>.py``; the Lambda entry points (events, schedules, state machine tasks) are here."""
from __future__ import annotations

from typing import Any, Callable

from aws_lambda_powertools.logging import correlation_paths
from chalice import Chalice, ConvertToMiddleware, Rate, Response

from chalicelib import tables  # noqa: F401 (every table through one shared client, set up on import)
from chalicelib.checkout import checkout
from chalicelib.core import config, function_url, web
from chalicelib.core.observability import count, logger, metrics, tracer
from chalicelib.orders import fulfilment, refunds, shipments
from chalicelib.orders.models import Order
from chalicelib.partners import order_figures as figures
from chalicelib.partners import webhooks
from chalicelib.routes import channels as channel_routes
from chalicelib.routes import checkout as checkout_routes
from chalicelib.routes import console as console_routes
from chalicelib.routes import kit as kit_routes
from chalicelib.routes import members as member_routes
from chalicelib.routes import orders as order_routes
from chalicelib.routes import partners as partner_routes
from chalicelib.routes import sales as sale_routes
from chalicelib.routes import settlement as settlement_routes
from chalicelib.routes import supply as supply_routes
from chalicelib.routes import workbench as workbench_routes
from chalicelib.routes import widgets as console_widgets
from chalicelib.settlement import invariants, ledgers, runs
from chalicelib.sales import sales
from chalicelib.sales import starts as sale_starts
from chalicelib.supply import imports

app = Chalice(app_name="channel-mall")
app.register_middleware(ConvertToMiddleware(
    logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)), "http")
app.register_middleware(ConvertToMiddleware(metrics.log_metrics), "all")
_tracer = tracer()
if _tracer is not None:  # only where tracing is on: the X-Ray SDK costs ~110 ms of cold start
    app.register_middleware(ConvertToMiddleware(_tracer.capture_lambda_handler), "all")


@app.middleware("http")
def error_contract(event: Any, get_response: Callable) -> Response:
    return web.chalice_error_to_contract(get_response(event))


# --- HTTP routes, one Blueprint per business area ----------------------------------------------------
for area in (supply_routes, channel_routes, member_routes, checkout_routes, order_routes, partner_routes,
             settlement_routes, kit_routes, workbench_routes, console_routes, sale_routes):
    app.register_blueprint(area.routes.blueprint)


@app.lambda_function(name="channel_door")
def channel_door(event: dict, context: Any) -> dict:
    """The function URL door (payload 2.0) to the same channel-facing routes and code."""
    return function_url.serve(app, event, context)


@app.lambda_function(name="ops_widgets")
def ops_widgets(event: dict, context: Any) -> str:
    """The ops dashboard's custom widgets (CloudWatch calls it with the console user's IAM): HTML per widget."""
    return console_widgets.handle(event)


# --- events and schedules ------------------------------------------------------------------------------

@app.on_cw_event({"source": ["aws.s3"], "detail-type": ["Object Created"],
                  "detail": {"object": {"key": [{"prefix": "uploads/"}]}}}, name="upload_created")
def upload_created(event) -> dict:
    """S3 → EventBridge: check and import what a supplier uploaded through a signed link."""
    detail = event.detail
    result = imports.process_object(detail["bucket"]["name"], detail["object"]["key"], shipments.import_rows)
    count("UploadsRefused" if "refused" in result else "UploadsProcessed")
    logger.info("upload processed", extra={"key": detail["object"]["key"], "result": result})
    return result


@app.on_cw_event({"source": ["aws.s3"], "detail-type": ["Object Created"],
                  "detail": {"object": {"key": [{"prefix": "ledgers/"}]}}}, name="ledger_uploaded")
def ledger_uploaded(event) -> dict:
    """S3 → EventBridge: a channel's ledger uploaded through a signed link, matched against our books."""
    detail = event.detail
    result = ledgers.process_object(detail["bucket"]["name"], detail["object"]["key"])
    logger.info("ledger upload processed", extra={"key": detail["object"]["key"], "result": result})
    return result


@app.schedule(Rate(1, unit=Rate.HOURS), name="invariant_audit")
def invariant_audit(event) -> dict:
    """Every hour: quota shards, hosted wallets and orders recomputed from the items (``InvariantDrift``)."""
    return invariants.run()


@app.schedule(Rate(5, unit=Rate.MINUTES), name="resolve_remote_orders")
def resolve_remote_orders(event) -> dict:
    """Orders whose deduction result was unknown: ask each remote channel again, never forget one; and paid
    orders whose fulfilment never started, or whose execution failed: start or restart them (all must never be
    forgotten, on the same rhythm)."""
    outcome = checkout.sweep_remote()
    started = fulfilment.sweep_unstarted()
    restarted = fulfilment.restart_failed()
    logger.info("remote orders resolved", extra={"outcome": outcome, "fulfilment_started": started,
                                                 "fulfilment_restarted": restarted})
    return outcome


@app.schedule(Rate(5, unit=Rate.MINUTES), name="resolve_refunds")
def resolve_refunds(event) -> dict:
    """Refunds approved but not settled (the channel's answer lost, or their request died): carry each out
    or ask the channel again, never forget one."""
    outcome = refunds.sweep()
    logger.info("refunds resolved", extra={"outcome": outcome})
    return outcome


@app.schedule(Rate(1, unit=Rate.MINUTES), name="sale_sweep")
def sale_sweep(event) -> dict:
    """Flash sales: paid sale orders' fulfilment started from the buffer at a rate the account holds, and ended
    sales' unsold allotment back to the SKUs' stock, once."""
    return {"started": sale_starts.drain(), "closed": sales.sweep()}


@app.schedule(Rate(1, unit=Rate.MINUTES), name="deliver_webhooks")
def deliver_webhooks(event) -> dict:
    """Order events to the channels' webhooks: whatever is due (retries, and events no commit delivered)."""
    return webhooks.sweep()


# The orders table's stream, by the table's name: the deployment template puts the table's real ``StreamArn`` in
# its place, and the local stack reads the named local table's stream (``tools.stack.LocalStreams``).
ORDERS_STREAM = f"arn:aws:dynamodb:{config.REGION}:000000000000:table/{Order.Meta.table_name}/stream/from-the-template"


@app.on_dynamodb_record(stream_arn=ORDERS_STREAM, batch_size=100, starting_position="TRIM_HORIZON",
                        name="order_figures")
def order_figures(event) -> dict:
    """Orders stream → metering and partner-call figures, off the request path (idempotent per record; a record
    that cannot be read is parked)."""
    return figures.consume(event.to_dict()["Records"])


# --- order fulfilment: the Lambda tasks of the order_fulfilment state machine (infra/state_machines.py) ---

@app.lambda_function(name="fulfil_split")
def fulfil_split(event: dict, context: Any) -> dict:
    """Split: one parcel per supplier, written once."""
    return fulfilment.split(event)


@app.lambda_function(name="fulfil_deadline")
def fulfil_deadline(event: dict, context: Any) -> dict:
    """Shipping deadline: cancel and refund the parcels still unshipped."""
    return fulfilment.deadline(event)


@app.lambda_function(name="fulfil_complete")
def fulfil_complete(event: dict, context: Any) -> dict:
    """End of the receipt window: complete the shipped parcels."""
    return fulfilment.complete(event)


@app.lambda_function(name="retry_refund")
def retry_refund(event: dict, context: Any) -> dict:
    """The refund_retry state machine's task: a remote refund in doubt asked about again within seconds."""
    return refunds.retry_step(event)


# --- settlement: the Lambda tasks of the settlement state machine (infra/state_machines.py), and its schedule ---

@app.schedule(Rate(5, unit=Rate.MINUTES), name="start_settlements")
def start_settlements(event) -> dict:
    """Each period that ended within the last week and may be settled, started once (``settle-{period}``)."""
    return {"started": runs.start_due()}


@app.lambda_function(name="settle_freeze")
def settle_freeze(event: dict, context: Any) -> dict:
    """Freeze: the period's parties fixed, in pages, in S3 (a re-run reads them back)."""
    return runs.freeze(event["period_id"])


@app.lambda_function(name="settle_page")
def settle_page(event: dict, context: Any) -> dict:
    """One Map item: the statements of a page of parties, each written once."""
    return runs.settle_page(event)


@app.lambda_function(name="settle_platform")
def settle_platform(event: dict, context: Any) -> dict:
    """The platform's margin statement, from the channels' statements."""
    return runs.settle_platform(event)


@app.lambda_function(name="settle_close")
def settle_close(event: dict, context: Any) -> dict:
    """Every statement written: the period is settled."""
    return runs.close(event)
