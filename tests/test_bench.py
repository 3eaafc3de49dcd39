"""The benchmark scripts still run and still measure what docs/benchmark.md says they do:
bench/calls.py, briefly, with the times inside the workers (--inside), and bench/hotpath.py
(CPU seconds, and instructions under valgrind).
Their figures belong to a quiet machine; here only their shape and what must always hold."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HASH = "... of which the PIN's hash (scrypt)"


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script; it must succeed (its output's end shown if not)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_calls_py_times_every_webhook_and_its_parts_inside_the_workers(tmp_path: Path) -> None:
    """With threaded workers, where each part's CPU is its own thread's (in a gevent worker one
    thread runs every greenlet: the wall times hold, the CPU figures count the others too)."""
    out = tmp_path / "run.json"
    command = [sys.executable, str(BENCH / "calls.py"), "--seconds", "2", "--callers", "4",
               "--no-baseline", "--inside", "--worker-class", "gthread",
               "--json", str(out)]  # fmt: skip
    done = _run(command)
    assert "inside the workers (--inside)" in done.stdout
    phases = json.loads(out.read_text())["phases"]
    assert [phase["name"] for phase in phases] == ["hotline", "hotline @50%"]
    for phase in phases:
        assert phase["failures"] == 0
        inside = phase["inside"]
        routes = {label: t for label, t in inside.items() if label.startswith("webhook ")}
        assert list(routes) == ["webhook 0:incoming", "webhook 1:key 1", "webhook 2:ID",
                                "webhook 3:PIN", "webhook 4:key 1", "webhook 5:key 1",
                                "webhook 6:status"]  # fmt: skip
        timed = sum(t["count"] for t in routes.values())
        assert abs(timed - phase["webhooks"]) <= 0.1 * phase["webhooks"] + 20
        pin = routes["webhook 3:PIN"]
        # one hash a PIN webhook, filed under its webhook's start (not its own: a PIN webhook
        # begun just before a phase's end once had its hash after it, 308 hashes to 311 PINs)
        assert inside[HASH]["count"] == pin["count"]
        # the hash is a large part of the PIN webhook's CPU (about half in a short run, whose
        # webhooks still fill caches), never all of it
        hashed = inside[HASH]["cpu mean"]
        assert pin["cpu mean"] > hashed > 0.25 * pin["cpu mean"], (pin, inside[HASH])
        for label, t in inside.items():  # a thread cannot spend more CPU than time
            assert t["wall mean"] >= 0.95 * t["cpu mean"], label
            assert t["wall p99"] >= t["wall p50"] >= 0, label


def test_calls_py_steps_3_hangs_up_at_the_pin_prompt_and_reaches_no_account(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run.json"
    command = [sys.executable, str(BENCH / "calls.py"), "--seconds", "1", "--callers", "2",
               "--no-baseline", "--steps", "3", "--json", str(out)]  # fmt: skip
    done = _run(command)
    assert "each call 3 webhooks and the status callback" in done.stdout
    for phase in json.loads(out.read_text())["phases"]:
        assert phase["failures"] == 0
        made = {name for name, p in phase["latencies_by_webhook_ms"].items() if p["p50"]}
        assert made == {"0:incoming", "1:key 1", "2:ID", "6:status"}
        assert phase["latencies_service_ms"]["p50"] is None
        assert abs(phase["webhooks"] - 4 * phase["calls"]) <= 4 * 2  # a call a caller cut off
        assert "incr" not in phase["redis_by_command"]  # no PIN reached its check


def test_hotpath_py_splits_a_webhooks_cpu_into_its_parts() -> None:
    command = [sys.executable, str(BENCH / "hotpath.py"), "--calls", "5", "--top", "3"]
    done = _run(command)
    assert "5 calls, 35 webhooks, ms CPU per webhook" in done.stdout
    for part in ("the whole webhook, from the WSGI call to its answer", HASH,
                 "Redis: claim the step, load the state (a script)"):  # fmt: skip
        assert part in done.stdout


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind (Debian's)")
def test_hotpath_py_counts_each_webhooks_instructions_and_the_hash_only_in_the_pin_one() -> None:
    command = [sys.executable, str(BENCH / "hotpath.py"), "--instructions", "--calls", "1"]
    done = _run(command)
    head, _, rest = done.stdout.partition("\n")
    assert head.startswith("1 calls, 7 webhooks (code "), head
    said = head.partition("instructions per webhook:")[2]
    figures = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", said)]
    total, answering, moving, hash_check, _share = figures
    assert abs(total - answering - moving) <= 1 and moving > 0  # each rounded on its own
    per_webhook = {}
    for line in rest.splitlines()[1:]:
        count, name = line.split(maxsplit=1)
        per_webhook[name] = int(count.replace(",", ""))
    assert list(per_webhook) == ["0:incoming", "1:key 1", "2:ID", "3:PIN", "4:key 1", "5:key 1",
                                 "6:status"]  # fmt: skip
    assert abs(sum(per_webhook.values()) - 7 * answering) <= 7
    assert per_webhook["3:PIN"] > hash_check > 1_000_000  # scrypt's 1 MiB is millions
    assert all(0 < count < hash_check for name, count in per_webhook.items() if name != "3:PIN")


def _drive(plan: Any, answers: dict[int, bytes | None]) -> tuple[list[Any], bool]:
    """Run bench/calls.py's whole_call by hand: each webhook gets answers[index] (a right answer
    when missing); the webhooks it posted and what it returned."""
    posted, answer = [], None
    try:
        while True:
            webhook = plan.send(answer)
            posted.append(webhook)
            answer = answers.get(webhook.index, b'<Gather action="/voice/in/%d">' % (len(posted)))
    except StopIteration as done:
        return posted, bool(done.value)


def test_a_benchmark_call_cut_short_by_a_failure_still_sends_its_status_callback() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import calls
    finally:
        sys.path.remove(str(BENCH))
    target = calls.hotline_target("http://127.0.0.1:1")
    tally = calls.Tally()
    posted, completed = _drive(calls.whole_call(target, "AC1", tally), {})
    assert completed and len(tally.call_ends) == 1
    assert [w.index for w in posted] == list(range(calls.WEBHOOKS_PER_CALL))

    tally = calls.Tally()
    posted, completed = _drive(calls.whole_call(target, "AC1", tally), {2: None})  # ID failed
    assert not completed and not tally.call_ends  # not a completed call
    assert [w.index for w in posted] == [0, 1, 2, len(calls.CALL)]  # but Twilio hangs up: status
    status = posted[-1]
    assert status.url.endswith(calls.STATUS_PATH) and status.form["CallStatus"] == "completed"
    assert status.form["CallSid"] == posted[0].form["CallSid"]  # the same call's

    tally = calls.Tally()
    posted, completed = _drive(calls.whole_call(target, "AC1", tally), {1: b"<Response/>"})
    assert not completed and tally.failures == 1  # no <Gather action>: counted
    assert [w.index for w in posted] == [0, 1, len(calls.CALL)]
