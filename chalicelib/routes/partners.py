"""Partner routes: ops look at and redrive a channel's parked webhooks, see its partner's health, and set its
billing plan and top up its prepaid balance."""
from __future__ import annotations

from chalice import Response

from chalicelib.billing import billing
from chalicelib.callers.callers import ops_actor
from chalicelib.channels import channels
from chalicelib.core import web
from chalicelib.core.routing import Routes
from chalicelib.partners import reliability, webhooks

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/ops/channels/{code}/webhooks/parked", ops=True)
def ops_webhooks_parked(code: str) -> dict:
    ops_actor(req())
    return {"events": [webhooks.view(e) for e in webhooks.parked(code)]}


@route("/ops/channels/{code}/webhooks/redrive", methods=("POST",), ops=True)
def ops_webhooks_redrive(code: str) -> dict:
    return webhooks.redrive(code, ops_actor(req()))


@route("/ops/channels/{code}/webhooks", ops=True)
def ops_webhooks_status(code: str) -> dict:
    """The webhook endpoint: its URL, whether a 410 disabled it (when, why), and the ``v1a`` public keys."""
    ops_actor(req())
    return webhooks.status(code)


@route("/ops/channels/{code}/webhooks/enable", methods=("POST",), ops=True)
def ops_webhooks_enable(code: str) -> dict:
    """Deliver to an endpoint a 410 disabled again (audited); its waiting events go with the next round."""
    return webhooks.enable(code, ops_actor(req()))


@route("/ops/channels/{code}/webhook-signing-key", methods=("POST",), ops=True)
def ops_webhook_signing_key(code: str) -> dict:
    """A new Ed25519 key for ``v1a`` signatures (the first, or a rotation with ``overlap_seconds``: both sign
    meanwhile); the answer holds the public keys to give the channel (audited)."""
    actor = ops_actor(req())
    overlap = web.body(req(), web.schemas.SecretRotation).overlap_seconds
    return webhooks.public_keys(channels.rotate_webhook_signing_key(code, overlap, actor))


@route("/ops/channels/{code}/partner-health", ops=True)
def ops_partner_health(code: str) -> dict:
    """Per API: the breaker, and calls, errors, error rate and p95 latency over the last hour and day."""
    ops_actor(req())
    channels.get(code)
    return reliability.health(code)


# --- billing plans and prepaid balances ----------------------------------------------------------------------

@route("/ops/channels/{code}/billing-plan", ops=True)
def ops_billing_plan(code: str) -> dict:
    """Today's plan, the ones set to start later, every plan so far, and the prepaid balance if any."""
    ops_actor(req())
    channels.get(code)
    return billing.plans_view(code)


@route("/ops/channels/{code}/billing-plan", methods=("PUT",), ops=True)
def ops_billing_plan_set(code: str) -> dict:
    """Set the plan from the next business day on (audited)."""
    actor = ops_actor(req())
    data = web.body(req(), web.schemas.BillingPlanInput).model_dump()
    plan = billing.check_plan(data.pop("kind"), data)
    billing.set_plan(channels.get(code), plan, actor)
    return billing.plans_view(code)


@route("/ops/channels/{code}/prepaid/top-ups", methods=("POST",), ops=True)
def ops_prepaid_top_up(code: str) -> Response:
    """Add to the prepaid balance, once per ``topup_id`` (201 the first time, 200 for a retry)."""
    actor = ops_actor(req())
    data = web.body(req(), web.schemas.TopUpInput)
    result, created = billing.top_up(channels.get(code), data.topup_id, data.amount, actor, data.note)
    return Response(body=result, status_code=201 if created else 200, headers=web.JSON)
