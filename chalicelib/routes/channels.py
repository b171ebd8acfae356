"""Channel routes: ops configure channels, secrets, sub-pools, prices and topics; members browse the channel's catalog and store."""
from __future__ import annotations

from chalice import Response

from chalicelib.callers.callers import member_channel, ops_actor
from chalicelib.channels import catalog, channels, pools, sandbox, store
from chalicelib.core import web
from chalicelib.core.errors import Unprocessable
from chalicelib.core.routing import Routes
from chalicelib.core.web import schemas  # loads on first use (pydantic is ~85 ms of cold start)

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/ops/channels", ops=True)
def ops_channel_list() -> dict:
    ops_actor(req())
    return {"channels": [channels.view(c, web.base_url(req())) for c in channels.list_all()]}


@route("/ops/channels", methods=("POST",), ops=True, status=201)
def ops_channel_create() -> dict:
    actor = ops_actor(req())
    channel = channels.create(web.body(req(), schemas.ChannelCreate), actor)
    return {"channel": channels.view(channel, web.base_url(req())), "secret": channel.secret,
            "webhook_secret": channel.webhook_secret}


@route("/ops/channels/{code}", ops=True)
def ops_channel_get(code: str) -> dict:
    ops_actor(req())
    return channels.view(channels.get(code), web.base_url(req()))


@route("/ops/channels/{code}", methods=("PATCH",), ops=True)
def ops_channel_edit(code: str) -> dict:
    actor = ops_actor(req())
    return channels.view(channels.edit(code, web.body(req(), schemas.ChannelFields), actor), web.base_url(req()))


@route("/ops/channels/{code}/suspend", methods=("POST",), ops=True)
def ops_channel_suspend(code: str) -> dict:
    actor = ops_actor(req())
    return channels.view(channels.set_status(code, channels.SUSPENDED, actor), web.base_url(req()))


@route("/ops/channels/{code}/resume", methods=("POST",), ops=True)
def ops_channel_resume(code: str) -> dict:
    actor = ops_actor(req())
    return channels.view(channels.set_status(code, channels.ACTIVE, actor), web.base_url(req()))


@route("/ops/channels/{code}/secret", methods=("POST",), ops=True)
def ops_channel_rotate_secret(code: str) -> dict:
    actor = ops_actor(req())
    channel, secret = channels.rotate_secret(code, web.body(req(), schemas.SecretRotation).overlap_seconds, actor)
    return {"channel": channels.view(channel, web.base_url(req())), "secret": secret}


@route("/ops/channels/{code}/webhook-secret", methods=("POST",), ops=True)
def ops_channel_rotate_webhook_secret(code: str) -> dict:
    actor = ops_actor(req())
    channel, secret = channels.rotate_webhook_secret(code, web.body(req(), schemas.SecretRotation).overlap_seconds,
                                                     actor)
    return {"channel": channels.view(channel, web.base_url(req())), "webhook_secret": secret}


@route("/ops/channels/{code}/audit", ops=True)
def ops_channel_audit(code: str) -> dict:
    ops_actor(req())
    channels.get(code)
    return {"audit": channels.audit_trail(code)}


@route("/ops/channels/{code}/pool", ops=True)
def ops_pool_list(code: str) -> dict:
    ops_actor(req())
    return {"items": pools.ops_view(code)}


@route("/ops/channels/{code}/pool/{goods_id}", methods=("PUT",), ops=True)
def ops_pool_put(code: str, goods_id: str) -> dict:
    actor = ops_actor(req())
    item = pools.put(code, goods_id, web.body(req(), schemas.PoolPricing), actor)
    return {"channel_code": item.channel_code, "goods_id": item.goods_id, "prices": item.prices.as_dict()}


@route("/ops/channels/{code}/pool/{goods_id}", methods=("DELETE",), ops=True)
def ops_pool_remove(code: str, goods_id: str) -> dict:
    pools.remove(code, goods_id, ops_actor(req()))
    return {"channel_code": code, "goods_id": goods_id, "removed": True}


@route("/ops/channels/{code}/losses", ops=True)
def ops_pool_losses(code: str) -> dict:
    ops_actor(req())
    return {"losses": pools.losses(code)}


@route("/ops/channels/{code}/topics", ops=True)
def ops_topic_list(code: str) -> dict:
    ops_actor(req())
    return {"topics": catalog.topics(channels.get(code))}


@route("/ops/channels/{code}/topics/{topic_id}", methods=("PUT",), ops=True)
def ops_topic_put(code: str, topic_id: str) -> dict:
    ops_actor(req())
    channels.get(code)
    data = web.body(req(), schemas.TopicInput)
    topic = catalog.put_topic(code, topic_id, data.title, data.position, data.goods_ids)
    return {"topic_id": topic.topic_id, "title": topic.title, "position": int(topic.position),
            "goods_ids": list(topic.goods_ids)}


@route("/ops/channels/{code}/topics/{topic_id}", methods=("DELETE",), ops=True)
def ops_topic_delete(code: str, topic_id: str) -> dict:
    ops_actor(req())
    catalog.delete_topic(code, topic_id)
    return {"topic_id": topic_id, "deleted": True}


@route("/api/{code}/catalog")
def member_catalog(code: str) -> dict:
    _, channel = member_channel(req(), code)
    try:
        limit = int(web.query(req(), "limit", "20"))
    except ValueError:
        raise Unprocessable("validation_error", "limit must be a whole number", "limit") from None
    return catalog.list_page(channel, web.query(req(), "cursor"), limit, web.query(req(), "category"),
                             web.query(req(), "q"))


@route("/api/{code}/goods/{goods_id}")
def member_goods(code: str, goods_id: str) -> dict:
    _, channel = member_channel(req(), code)
    return catalog.detail(channel, goods_id)


@route("/api/{code}/topics")
def member_topics(code: str) -> dict:
    _, channel = member_channel(req(), code)
    return {"topics": catalog.topics(channel), "categories": catalog.categories(channel),
            "channel": {"code": channel.code, "name": channel.name, "points_per_yuan": int(channel.points_per_yuan),
                        "points_mode": channel.points_mode, "payment_auth": channel.payment_auth,
                        "cart_enabled": bool(channel.cart_enabled)}}


@route("/sandbox/{code}/signature-check", methods=("POST",))
def sandbox_signature_check(code: str) -> dict:
    data = web.body(req(), schemas.SignatureCheck)
    source_ip = ((req().context or {}).get("identity") or {}).get("sourceIp")
    return sandbox.check(code, data.params, data.canonical, data.method, data.path, data.body, source_ip)


@routes.blueprint.route("/store/{code}", methods=["GET"])
def store_page(code: str) -> Response:
    """The mobile H5 store: one page, served by this Lambda so the session cookie is same-origin."""
    return Response(body=store.page(code), status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"})
