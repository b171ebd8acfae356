"""The local stack's stand-in for EventBridge (``tools.stack.LocalScheduler``, started by ``make run``): it calls
each of the app's scheduled handlers on its rate (shortened here), so on the demo stack webhooks arrive and
remote orders and refunds are swept as they would be in AWS."""
from __future__ import annotations

import time

from helpers import wait_for
from test_webhooks import receiver, record, webhook_channel  # noqa: F401 - receiver is a fixture
from tools.stack import LocalScheduler

SCALE = 1 / 120  # a minute is half a second, five are two and a half


def test_scheduler_runs_every_scheduled_handler_on_its_rate(system, ops, receiver) -> None:  # noqa: F811
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets = [secret]
    ids = record(code, 2)
    scheduler = LocalScheduler(system.app.app, SCALE)
    assert scheduler.every == {"resolve_remote_orders": 2.5, "resolve_refunds": 2.5, "deliver_webhooks": 0.5,
                               "start_settlements": 2.5, "invariant_audit": 30.0, "sale_sweep": 0.5}
    frequent = [name for name, every in scheduler.every.items() if every <= 2.5]  # the hourly audit: 30 s here
    scheduler.start()
    try:
        wait_for(lambda: {name: len(scheduler.runs[name]) for name in frequent},
                 lambda counts: all(n >= 2 for n in counts.values()), timeout=30)
        # the events recorded before arrive without anyone calling the sweep, each once
        wait_for(lambda: sorted(receiver.processed), lambda got: got == sorted(ids), timeout=30)
    finally:
        scheduler.stop()
    runs = {name: list(results) for name, results in scheduler.runs.items()}
    assert len(runs["deliver_webhooks"]) > len(runs["resolve_remote_orders"])  # each on its own rate
    assert not [r for results in runs.values() for r in results if isinstance(r, dict) and "error" in r]
    assert any(r.get(code, {}).get("delivered") == 2 for r in runs["deliver_webhooks"])
    after = sum(len(r) for r in scheduler.runs.values())
    time.sleep(1.2)  # more than two webhook periods
    assert sum(len(r) for r in scheduler.runs.values()) == after  # stopped: nothing runs any more
