"""A channel's integration guide, generated from its own configuration (``GET /ops/channels/{code}/guide``).

One document per channel, as Markdown and as an HTML page from the same blocks: its entry URL on this
deployment, its points mode and the APIs that mode (and its entry and payment settings) need from its back
end, a signing example computed now (with the channel's own key on a sandbox, which can move nothing of
value; with the contract's test-vector secret on a live channel, whose secret never appears), the
snippets in four languages verbatim from the files CI runs, webhook verification, the error codes read
from the code, and a checklist ticked from what the sandbox logged and from our calls to the channel.
"""
from __future__ import annotations

import html
import json
import re
import secrets as _random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Union
from urllib.parse import quote, urlencode

from chalicelib.channels import signing
from chalicelib.channels.models import Channel
from chalicelib.partners import breaker, reliability, webhooks
from chalicelib.partners.kit import error_codes, openapi, sandbox_log, snippets

TEST_VECTOR_SECRET = "test-secret-123"  # the contract's published test-vector secret (PRODUCT.md)
EXAMPLE_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example
OUTBOUND_DAYS = 7  # how far back our calls to the channel's API count for the checklist

# --- blocks: one document, two renderings ------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str  # `code` and **bold** inline


@dataclass(frozen=True)
class Code:
    language: str
    text: str


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    key: str
    text: str
    proof: str  # the call that ticks it
    ticked: bool | None  # None: not verifiable here (a live channel: use its sandbox)


@dataclass(frozen=True)
class Checklist:
    items: tuple[Check, ...]


Block = Union[Heading, Para, Code, Table, Bullets, Checklist]


def markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Code):
            fence = "~~~~" if "```" in b.text else "```"
            out.append(f"{fence}{b.language}\n{b.text.rstrip()}\n{fence}")
        elif isinstance(b, Table):
            cell = lambda text: text.replace("|", "\\|").replace("\n", " ")  # noqa: E731
            out.append("\n".join(["| " + " | ".join(cell(h) for h in b.headers) + " |",
                                  "|" + "---|" * len(b.headers)]
                                 + ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows]))
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Checklist):
            out.append("\n".join(f"- [{'x' if c.ticked else ' '}] {c.text} — {c.proof}"
                                 + ("" if c.ticked is not None else " (check on your sandbox channel)")
                                 for c in b.items))
    return "\n\n".join(out) + "\n"


INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    """Escaped text with `code` and **bold**."""
    out, last = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[last:m.start()]))
        out.append(f"<code>{html.escape(m.group(1))}</code>" if m.group(1) is not None
                   else f"<b>{html.escape(m.group(2))}</b>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
         "pre{background:#f5f5f5;padding:.8em;overflow-x:auto;font-size:13px}code{font-size:13px}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;"
         "vertical-align:top}ul.check{list-style:none;padding-left:0}.done{color:#070}.todo{color:#a60}"
         "details{margin:.5em 0}summary{cursor:pointer;font-weight:600}")


def html_page(title: str, blocks: list[Block]) -> str:
    out = [f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
           f"<title>{html.escape(title)}</title><style>{STYLE}</style><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            anchor = re.sub(r"[^a-z0-9]+", "-", b.text.lower()).strip("-")
            out.append(f"<h{b.level} id='{anchor}'>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Code):
            out.append(f"<pre><code class='language-{html.escape(b.language)}'>{html.escape(b.text)}</code></pre>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Checklist):
            out.append("<ul class=check>" + "".join(
                f"<li data-check='{html.escape(c.key)}' data-ticked='{str(bool(c.ticked)).lower()}'>"
                f"<span class={'done' if c.ticked else 'todo'}>{'☑' if c.ticked else '☐'}</span> "
                f"{_inline(c.text)} — <small>{_inline(c.proof)}</small></li>" for c in b.items) + "</ul>")
    return "".join(out) + "</body></html>"


# --- the guide --------------------------------------------------------------------------------------------


def _fields(schema: dict) -> str:
    required = set(schema.get("required", []))
    return ", ".join(f"`{name}`" + ("" if name in required else " (optional)") for name in schema["properties"])


def _entry_example(channel: Channel, base_url: str, secret: str, now: int) -> list[Block]:
    params = {"member_id": "M1001", "nickname": "张三", "timestamp": str(now), "nonce": _random.token_hex(8)}
    if channel.points_mode == "remote":
        params["points"] = "1500"
    text = signing.string_to_sign(params)
    sign = signing.sign(params, secret)
    link = f"{base_url}/entry/{channel.code}?{urlencode({**params, 'sign': sign}, quote_via=quote)}"
    return [Heading(3, "Entry link"),
            Table(("parameter", "value"), tuple((k, f"`{v}`") for k, v in params.items())),
            Para("Canonical query, which is the whole string to sign for an entry link:"), Code("text", text),
            Para(f"`sign` = HMAC-SHA256 → `{sign}`"), Para("The link:"), Code("text", link)]


def _s2s_example(channel: Channel, base_url: str, secret: str, now: int) -> list[Block]:
    path = f"/partner/{channel.code}/" + ("grants" if channel.points_mode == "hosted" else "quota")
    params = {"timestamp": str(now), "nonce": _random.token_hex(8)}
    if channel.points_mode == "hosted":
        method = "POST"
        body = json.dumps({"grant_id": "G-0001", "member_id": "M1001", "points": 500,
                           "expires_at": now + 30 * 86_400}, separators=(",", ":"))
        params["body_sha256"] = signing.body_sha256(body.encode())
    else:
        method, body = "GET", ""
    text = signing.string_to_sign(params, method, path)
    sign = signing.sign(params, secret, method, path)
    curl = (f"curl -X {method} '{base_url}{path}' -H 'X-Timestamp: {params['timestamp']}' "
            f"-H 'X-Nonce: {params['nonce']}' -H 'X-Sign: {sign}'")
    if body:
        curl += f" -H 'Content-Type: application/json' --data-raw '{body}'"
    blocks: list[Block] = [Heading(3, f"Server-to-server: {method} {path}")]
    if body:
        blocks += [Para("The exact body bytes (hash them as sent):"), Code("json", body),
                   Para(f"`body_sha256` = `{params['body_sha256']}`")]
    return blocks + [Para("String to sign (three lines joined by `\\n`, no trailing newline):"), Code("text", text),
                     Para(f"`sign` = `{sign}`, sent as headers (or as the query parameters `timestamp`, `nonce`, "
                          "`sign`):"), Code("sh", curl)]


def _webhook_example(channel: Channel) -> list[Block]:
    secret = channel.webhook_secret if channel.sandbox and channel.webhook_secret else EXAMPLE_WEBHOOK_SECRET
    whose = "your sandbox webhook secret" if secret != EXAMPLE_WEBHOOK_SECRET else \
        f"the Standard Webhooks example secret `{EXAMPLE_WEBHOOK_SECRET}` (never yours)"
    msg_id, stamp = "evt_order.paid_O123", 1767225600
    body = json.dumps({"channel": channel.code, "created_at": "2026-01-01T00:00:00.000+00:00",
                       "data": {"order_id": "O123", "state": "paid"}, "id": msg_id, "type": "order.paid"},
                      separators=(",", ":"), sort_keys=True)
    signature = webhooks.signature(secret, msg_id, stamp, body)  # what our deliveries carry
    return [Para(f"Worked example with {whose}:"),
            Code("http", f"webhook-id: {msg_id}\nwebhook-timestamp: {stamp}\nwebhook-signature: {signature}\n\n{body}")]


def _needs(channel: Channel) -> list[openapi.ChannelApi]:
    return openapi.apis_needed(channel.points_mode, channel.entry_mode or "signed",
                               channel.payment_auth or "channel_password")


def checklist(channel: Channel, now: float | None = None) -> list[Check]:
    """What the channel proves against its sandbox, each item ticked by a call that was logged (ours to it: from
    the partner-call figures of the last week). A live channel's list is the same, unticked (``None``)."""
    now = time.time() if now is None else now
    code = channel.code
    logged = sandbox_log.calls(code) if channel.sandbox else []

    def seen(predicate) -> bool | None:
        return any(predicate(c) for c in logged) if channel.sandbox else None

    def answered(api: str) -> bool | None:
        if not channel.sandbox:
            return None
        figures = reliability.stats(code, api, int(now - OUTBOUND_DAYS * 86_400))
        return figures["by_kind"].get(breaker.OK, 0) > 0

    items = [
        Check("entry", "Open the store with a signed entry link", "an accepted `GET /entry/{code}`",
              seen(lambda c: c.route == sandbox_log.ENTRY_ROUTE and c.accepted)),
        Check("refusal", "See a refusal and read its code: send one request with a wrong `sign`",
              "a `bad_signature` logged", seen(lambda c: c.outcome == "bad_signature")),
        Check("server_call", "Make a signed server-to-server call", "an accepted `/partner/…` call",
              seen(lambda c: c.route.startswith("/partner/") and c.accepted)),
    ]
    if channel.points_mode == "hosted":
        items.append(Check("grant", "Grant points to a member", "an accepted `POST /partner/{code}/grants`",
                           seen(lambda c: c.route == "/partner/{code}/grants" and c.accepted)))
    items.append(Check("order_read", "Read an order back from your server",
                       "an accepted `GET /partner/{code}/orders/{order_id}`",
                       seen(lambda c: c.route == "/partner/{code}/orders/{order_id}" and c.accepted)))
    for api in _needs(channel):
        items.append(Check(f"api:{api.name}", f"Serve `{api.name}`: {api.summary.lower()}",
                           f"our `POST /{api.name}` answered by you in the last {OUTBOUND_DAYS} days",
                           answered(api.name)))
    if channel.webhook_url:
        items.append(Check("webhook", "Receive and verify a webhook (answer 2xx)",
                           f"a delivery to your webhook URL answered 2xx in the last {OUTBOUND_DAYS} days",
                           answered("webhook")))
    return items


def blocks(channel: Channel, base_url: str, now: float | None = None) -> list[Block]:
    now = int(time.time() if now is None else now)
    code, base = channel.code, base_url.rstrip("/")
    needs = _needs(channel)
    sandbox = bool(channel.sandbox)
    out: list[Block] = [
        Heading(1, f"Integration guide: {channel.name} ({code})"),
        Para(f"Generated {datetime.fromtimestamp(now, timezone.utc):%Y-%m-%d %H:%M} UTC from the channel's "
             f"configuration on `{base}`. Integration contract version {openapi.CONTRACT_VERSION}. The machine-"
             f"readable description of every route and of what we call on your side: `{base}/docs/openapi.json`."),
        Para("**This is a sandbox channel**: its members, points and orders are test data; nothing ships and "
             "nothing is settled." if sandbox else
             "**This is a live channel.** Integrate against its sandbox channel first; this guide never shows "
             "its secret."),
        Heading(2, "1. Your channel"),
        Table(("setting", "value"), (
            ("code", f"`{code}`"), ("sandbox", "yes" if sandbox else "no"), ("status", channel.status),
            ("points mode", f"**{channel.points_mode}**: " + (
                "you grant points to members through our API; we keep the wallet" if channel.points_mode == "hosted"
                else "you keep the wallet; we call your deduct, query, cancel and refund APIs")),
            ("entry", "signed link" if (channel.entry_mode or "signed") == "signed" else
             "one-time code, exchanged at your `member/exchange`"),
            ("payment confirmation", "your payment-password API" if channel.payment_auth != "otp" else
             "one-time SMS code (we send it)"),
            ("cart", "on" if channel.cart_enabled else "off (buy now)"),
            ("your API base URL", f"`{channel.api_base_url}`" if channel.api_base_url else "not set"),
            ("your webhook URL", "set" if channel.webhook_url else "not set: ask ops to set it to get order events"),
        )),
        Heading(2, "2. Entry link"),
        Para(f"Your app's tile opens `{base}/entry/{code}?member_id=…&timestamp=…&nonce=…&sign=…` "
             "(optional signed fields: `nickname`, `mobile`, `points`, `target`). A valid link maps the member, "
             "starts a session and redirects into the store; it works once, for 300 s."
             + (" In code entry mode send `?code=<one-time code>` instead; we exchange it at your "
                "`member/exchange`." if channel.entry_mode == "code" else "")),
        Heading(2, "3. What your back end serves for us"),
    ]
    if needs:
        out.append(Para(f"We call `POST {{your API base URL}}/<api>` with a JSON body, signed the same way as your "
                        "calls to us (verify it with the snippets below), with `X-Correlation-Id` to quote."))
        out.append(Table(("API", "when", "request", "answer"), tuple(
            (f"`{a.name}`", a.needed_when, _fields(a.request), _fields(a.response)) for a in needs)))
        out.append(Bullets(tuple(f"`{a.name}`: {a.description}" for a in needs if a.description)))
    else:
        out.append(Para("No API: with hosted points, signed entry links and SMS payment codes we never call your "
                        "back end (except webhooks, below)."))
    signed_ops = [op for op in openapi.OPERATIONS if op.auth == openapi.SIGNED]
    out += [
        Heading(2, "4. What you call"),
        Table(("call", "what"), tuple((f"`{op.method} {op.path.replace('{code}', code)}`", op.summary)
                                      for op in signed_ops
                                      if not (op.path.endswith("/grants") and channel.points_mode != "hosted"))),
        Para("The store's member API (`/api/{code}/…`, session from the entry link) is used by the H5 store; your "
             "app needs nothing but the entry link."),
        Para("**Two kinds of period, never one word for both.** A *quota period* is what ops open for your channel "
             "(`POST /ops/channels/{code}/periods`, named by ops, e.g. `DEMO` or `2026Q1`): it bounds your members' "
             "redemptions and the points you grant, and the codes `period_ended`, `period_not_open`, "
             "`period_not_found` and `expiry_after_period_end` (kept under their contract v2 names) are about it. A "
             "*settlement period* is a calendar month `YYYY-MM` (or an ISO week `YYYY-Www` if your channel settles "
             "weekly): your statements, ledgers and reconciliations are per settlement period, and `invalid_period` "
             "and `period_not_started` on the ledger routes (also kept) are about it. "
             f"`GET /partner/{code}/statements/current` shows the running settlement period's **provisional** "
             "statement: the lines and totals your statement would have if the period closed now, computed by the "
             "same rules; it is never exported and never paid by. The final statement "
             f"(`GET /partner/{code}/statements`) comes after the period ends."),
        Heading(2, "5. Signing, a worked example"),
        Para(openapi.SIGNING),
    ]
    secret = channel.secret if sandbox else TEST_VECTOR_SECRET
    out.append(Para("Computed now with **your sandbox channel's secret** (the one ops gave you at creation): your "
                    "code must produce the same strings and signatures for these inputs." if sandbox else
                    f"Computed with the contract's test-vector secret `{TEST_VECTOR_SECRET}`, never your live "
                    "secret: use your sandbox channel's guide for one signed with a real key."))
    out += _entry_example(channel, base, secret, now) + _s2s_example(channel, base, secret, now)
    if sandbox:
        out.append(Para(f"Stuck? `POST {base}/sandbox/{code}/signature-check` with what you sent shows the string "
                        "and signature we expect, and which rule yours breaks."))
    out.append(Heading(2, "6. Snippets"))
    out.append(Para("Dependency-free, copy them as they are. Each is run by our CI against the contract's test "
                    "vectors; run as a script, it reads a JSON array of tasks on stdin and writes the results."))
    for language in snippets.LANGUAGES:
        _, title, fence, run = snippets.FILES[language]
        out += [Heading(3, title), Para(f"`{run}`"), Code(fence, snippets.source(language))]
    out += [
        Heading(2, "7. Webhooks"),
        Para("Order and parcel events are POSTed to your webhook URL following Standard Webhooks. Verify before you "
             "act: headers `webhook-id`, `webhook-timestamp`, `webhook-signature`; the signature is `v1,` + base64 "
             "HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{raw body}` keyed with the base64-decoded part of "
             "your webhook secret after `whsec_`; during a rotation two signatures come, space-separated, and "
             "either may match; refuse a timestamp more than 300 s off. Once ops give your channel a signing key, "
             "each delivery also carries `v1a,` + base64 Ed25519 signature of the same string, which you verify "
             "with the public key (`whpk_` + base64 of its 32 bytes; no secret: a leaked public key forges "
             "nothing); on a key rotation both `v1a` signatures come for the overlap, and you accept the delivery "
             "when any signature you can check verifies. Answer 2xx within 15 s in all; we retry with jittered "
             "backoff (30 s doubling, at most 4 h apart) for at least 3 days, then park the event for ops to "
             "redrive. Answer 429 or 503 with `Retry-After` (seconds or a date, up to 6 h) and we send nothing "
             "to you before then; answer 410 Gone and we stop and disable your endpoint until ops enable it "
             "again. Dedupe on `webhook-id`."),
        Para("Events: " + ", ".join(f"`{k}`" for k in openapi.EVENT_KINDS) + "."
             + (" Sandbox events also carry `webhook-sandbox: true`." if sandbox else "")),
        Para("Each parcel cancelled, by the member or at the shipping deadline, sends `parcel.cancelled` with "
             "`points_returned` and `cancelled_by` (`member` or `shipping_deadline`), even while the order's other "
             "parcels go on; `parcel.refunded` also carries `points_returned`. When the order's state (derived "
             "from its parcels) becomes `partially_refunded` or `refunded`, `order.partially_refunded` or "
             "`order.refunded` follows, with every parcel's state."),
        *_webhook_example(channel),
        Heading(2, "8. Error codes"),
        Para("Every refusal is `{\"error\": {\"code\", \"message\", \"field\"?}}` with the HTTP status below; the "
             "list is read from the code that raises them."),
        Table(("code", "status", "raised in"), tuple(
            (f"`{e.code}`", ", ".join(map(str, e.statuses)), ", ".join(e.where))
            for e in error_codes.channel_facing())),
        Heading(2, "9. Checklist"),
        Para("Tick through these against your sandbox channel; each is ticked by a call we logged."
             if sandbox else "Work through these against your sandbox channel (its guide shows them ticked)."),
        Checklist(tuple(checklist(channel, now))),
    ]
    return out


def render(channel: Channel, base_url: str, fmt: str = "html", now: float | None = None) -> str:
    built = blocks(channel, base_url, now)
    if fmt == "md":
        return markdown(built)
    return html_page(f"Integration guide: {channel.code}", built)
