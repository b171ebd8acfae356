"""Run the app as Lambda runs it behind API Gateway: a fresh process, the environment it is given, and
API Gateway proxy events handed to the Chalice app object (``app.app(event, context)``).

Reads a JSON list of events on stdin and prints the list of responses (one line after ``MARK``). A header value ``{{session}}``
is replaced with the ``cm_session`` cookie the previous responses set, so one run can enter and then
call the member API with the session it got. Used by tests/test_stage.py.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
MARK = "RESPONSES "


def main() -> None:
    from chalice.local import LambdaContext

    import app

    session = ""
    responses = []
    for event in json.load(sys.stdin):
        event["headers"] = {k: v.replace("{{session}}", session) for k, v in event["headers"].items()}
        event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
        response = app.app(event, LambdaContext("api_handler", 1024))
        for cookie in (response.get("multiValueHeaders") or {}).get("Set-Cookie", []) + [
                (response.get("headers") or {}).get("Set-Cookie", "")]:
            if cookie.startswith("cm_session="):
                session = cookie.split(";")[0].split("=", 1)[1]
        responses.append(response)
    print(MARK + json.dumps(responses))  # after the app's own log lines, which also go to stdout


if __name__ == "__main__":
    main()
