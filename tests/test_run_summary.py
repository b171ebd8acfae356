"""`make run`'s output: logs to a file under ``.local/``, a short summary printed last (issue 15, item 6)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tools.engines import ROOT
from tools.run_local import summary

HANDLE = {
    "base_url": "http://127.0.0.1:8000", "ops_token": "local-ops-abc", "payment_password": "135790",
    "reference_channel": {"url": "http://127.0.0.1:8100"},
    "channels": [{"code": "bank-a", "points_mode": "hosted",
                  "app_links": {"M1001": "http://127.0.0.1:8100/app/bank-a/M1001",
                                "M1002": "http://127.0.0.1:8100/app/bank-a/M1002"}},
                 {"code": "telecom-b", "points_mode": "remote",
                  "app_links": {"T2001": "http://127.0.0.1:8100/app/telecom-b/T2001"}}],
    "suppliers": [{"id": "S1", "name": "Fresh Valley Foods", "api_key": "cmk_1",
                   "workbench_link": "http://127.0.0.1:8000/workbench#signin=wb1"}],
    "settled": {"period_id": "2026-11", "statements": {
        "channel.bank-a": "http://127.0.0.1:8000/ops/statements/2026-11.channel.bank-a",
        "supplier.S1": "http://127.0.0.1:8000/ops/statements/2026-11.supplier.S1"}},
}


def test_logs_warnings_and_child_output_go_to_the_file_and_only_the_summary_to_the_console(tmp_path):
    log = tmp_path / "run.log"
    script = textwrap.dedent(f"""
        import logging, subprocess, sys, warnings
        from pathlib import Path
        from tools.run_local import console_to_log
        console = console_to_log(Path({str(log)!r}))
        print('{{"level": "INFO", "message": "a JSON log line"}}')
        warnings.warn("a warning")
        logging.getLogger("x").error("a logged error")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('a child process says hi')"])
        print("THE SUMMARY", file=console)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("THE SUMMARY\n", "")
    written = log.read_text()
    for said in ("a JSON log line", "a warning", "a logged error", "a child process says hi"):
        assert said in written, written


def test_the_summary_is_short_and_has_what_a_person_starts_from():
    lines = summary(HANDLE, ".local/run.log", ".local/stack.json")
    text = "\n".join(lines)
    assert len(lines) <= 30, text
    for needed in ("http://127.0.0.1:8100/app/bank-a/M1001", "http://127.0.0.1:8100/app/telecom-b/T2001",
                   "135790", "local-ops-abc", "http://127.0.0.1:8000/ops/reports/operating",
                   "http://127.0.0.1:8000/docs/openapi.json", "cmk_1", ".local/run.log", ".local/stack.json",
                   "http://127.0.0.1:8000/ops/sign-in", "http://127.0.0.1:8000/workbench#signin=wb1",
                   "http://127.0.0.1:8000/ops/statements/2026-11.supplier.S1"):
        assert needed in text, needed
    assert max(len(line) for line in lines) <= 120, text
