"""Self-tests of ivr.phone and the simulator, against tiny Flask apps served over real HTTP."""

from __future__ import annotations

import io
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask, Response, request
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from twilio_sim import SimCall, Simulator
from werkzeug.serving import make_server

from ivr import phone
from ivr.phone import GEO_FIELDS, Call, DialResult, Line, QueueResult, console_call, sign

TOKEN = "tok"
XML = "text/xml"


@dataclass
class Hit:
    """One request the app received."""

    method: str
    path: str
    url: str
    form: dict[str, str]
    args: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    valid: bool


Reply = str | tuple[str | bytes, int, str | None]


class Webhooks:
    """A throw-away Flask app: path -> TwiML (or a function of the Hit); checks every signature."""

    def __init__(self, routes: dict[str, Reply | Callable[[Hit], Reply]]) -> None:
        self.routes = {"/voice/status": "<Response/>", **routes}
        self.hits: list[Hit] = []
        self.validator = RequestValidator(TOKEN)
        self.app = Flask(__name__)
        self.app.add_url_rule("/<path:path>", view_func=self.view, methods=["GET", "POST"])

    def view(self, path: str) -> Response:
        url = f"{request.scheme}://{request.host}{request.full_path}".removesuffix("?")
        form = request.form.to_dict() if request.method == "POST" else {}
        sig = request.headers.get("X-Twilio-Signature", "")
        hit = Hit(
            request.method,
            "/" + path,
            url,
            form,
            request.args.to_dict(),
            dict(request.headers),
            dict(request.cookies),
            self.validator.validate(url, form, sig),
        )
        self.hits.append(hit)
        if not hit.valid:
            return Response("bad signature", 403)
        reply = self.routes.get(hit.path, ("not found", 404, "text/plain"))
        if callable(reply):
            reply = reply(hit)
        body, status, ctype = (reply, 200, XML) if isinstance(reply, str) else reply
        response = Response(body, status)
        if ctype is None:
            del response.headers["Content-Type"]
        else:
            response.headers["Content-Type"] = ctype
        return response

    def to(self, path: str) -> list[Hit]:
        """The hits on one path."""
        return [h for h in self.hits if h.path == path]


Serve = Callable[..., tuple[Simulator, Webhooks]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Serve routes over HTTP on 127.0.0.1; returns (Simulator, Webhooks)."""
    running = []

    def start(
        routes: dict[str, Reply | Callable[[Hit], Reply]], **sim: Any
    ) -> tuple[Simulator, Webhooks]:
        hooks = Webhooks(routes)
        server = make_server("127.0.0.1", 0, hooks.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        running.append((server, thread))
        return Simulator(f"http://127.0.0.1:{server.server_port}", TOKEN, **sim), hooks

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join()


def twiml(*verbs: str) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?><Response>' + "".join(verbs) + "</Response>"


# ---- signatures ---------------------------------------------------------------------------------

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "To": "+18005551212"}


@pytest.mark.parametrize(
    ("url", "caller", "expected"),
    [
        (VECTOR_URL, "+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        (VECTOR_URL, "+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        (
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            "+14158675309",
            "kvajT1Ptam85bY51eRf/AJRuM3w=",
        ),
    ],
)
def test_signature_vectors(url: str, caller: str, expected: str) -> None:
    params = {**VECTOR, "Caller": caller, "From": caller}
    assert sign("12345", url, params) == expected
    assert RequestValidator("12345").validate(VECTOR_URL, params, expected)


values = st.text(st.characters(codec="utf-8"), max_size=8)


@given(params=st.dictionaries(st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True), values, max_size=5))
def test_signature_round_trip_post_and_get(params: dict[str, str]) -> None:
    validator = RequestValidator(TOKEN)
    for url in ("https://example.com/voice", "https://example.com:443/ivr/menu?step=2"):
        assert validator.validate(url, params, sign(TOKEN, url, params))
        get_url = url + ("&" if "?" in url else "?") + urlencode(params) if params else url
        assert validator.validate(get_url, {}, sign(TOKEN, get_url, {}))
        assert not validator.validate(url, {**params, "X": "中"}, sign(TOKEN, url, params))


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_every_request_validates_on_the_server_even_non_ascii(serve: Serve, method: str) -> None:
    sim, hooks = serve(
        {
            "/voice": twiml('<Gather numDigits="1" action="/next?step=2&amp;x=%E4%B8%AD"/>'),
            "/next": twiml("<Say>好</Say>"),
        }
    )
    call = sim.call(from_="中", method=method, extra_params={"CallerName": "张 三", "Empty": ""})
    call.press("1")
    assert [h.valid for h in hooks.hits] == [True, True, True]
    voice, nxt, status = hooks.hits
    seen = voice.form if method == "POST" else voice.args
    assert seen["From"] == "中" and seen["CallerName"] == "张 三" and seen["Empty"] == ""
    assert nxt.args["step"] == "2" and nxt.args["x"] == "中" and nxt.form["Digits"] == "1"
    assert status.path == "/voice/status"
    assert call.said == ["好"]


def test_tampered_unsigned_and_signed_raw_posts(serve: Serve) -> None:
    sim, hooks = serve({"/voice": twiml()})
    assert sim.post("/voice", {"CallSid": "CA1", "Digits": ""}).status_code == 200
    assert sim.post("/voice", {"CallSid": "CA1"}, tamper=True).status_code == 403
    assert sim.post("/voice", {"CallSid": "CA1"}, signed=False).status_code == 403
    assert [h.valid for h in hooks.hits] == [True, False, False]


# ---- what Twilio sends --------------------------------------------------------------------------


def test_standard_params_and_headers(serve: Serve) -> None:
    sim, hooks = serve(
        {"/voice": lambda hit: twiml('<Gather numDigits="1"><Say>hi</Say></Gather>')}
    )
    call = sim.call(from_="+8613800138000", to="+8612333")
    call.press("5")
    first, second = hooks.to("/voice")
    f = first.form
    assert re.fullmatch(r"CA[0-9a-f]{32}", f["CallSid"]) and re.fullmatch(
        r"AC[0-9a-f]{32}", f["AccountSid"]
    )
    assert (f["From"], f["Caller"], f["To"], f["Called"]) == ("+8613800138000",) * 2 + (
        "+8612333",
    ) * 2
    assert (f["CallStatus"], f["Direction"], f["ApiVersion"]) == (
        "ringing",
        "inbound",
        "2010-04-01",
    )
    assert all(f[name] == "" for name in GEO_FIELDS)
    h = first.headers
    assert h["User-Agent"] == "TwilioProxy/1.1" and h["X-Home-Region"] == "us1"
    assert h["Content-Type"] == "application/x-www-form-urlencoded; charset=UTF-8"
    uuid.UUID(h["I-Twilio-Idempotency-Token"])
    assert second.form["CallStatus"] == "in-progress" and second.form["CallSid"] == f["CallSid"]
    assert second.headers["I-Twilio-Idempotency-Token"] != h["I-Twilio-Idempotency-Token"]
    assert second.form["Digits"] == "5" and second.form["msg"] == "Gather End"


def test_cookies_are_kept_per_call(serve: Serve) -> None:
    def voice(hit: Hit) -> Reply:
        return (
            twiml('<Gather numDigits="1"/>')
            if hit.cookies
            else (twiml("<Redirect>/voice</Redirect>"), 200, XML)
        )

    def set_cookie(response: Response) -> Response:
        response.set_cookie("leg", "1")
        return response

    sim, hooks = serve({"/voice": voice})
    hooks.app.after_request(set_cookie)
    call = sim.call()
    assert call.gather is not None and hooks.hits[1].cookies == {"leg": "1"}
    assert sim.call().gather is not None
    assert hooks.hits[2].cookies == {}  # a new call, a new cookie jar


# ---- Gather -------------------------------------------------------------------------------------

MENU = "<Say>first</Say><Say>second</Say>"


def gather_app(serve: Serve, attrs: str, **sim: Any) -> tuple[Simulator, Webhooks]:
    return serve(
        {
            "/voice": twiml(f"<Gather {attrs}>{MENU}</Gather><Say>after</Say>"),
            "/next": twiml("<Say>next</Say>"),
        },
        **sim,
    )


@pytest.mark.parametrize(
    ("attrs", "keys", "digits", "finished"),
    [
        ('finishOnKey="#"', "123#", "123", "#"),
        ("", "123", "123", ""),  # no finish key: the timeout submits
        ('finishOnKey=""', "12#", "12#", ""),
        ('finishOnKey=""', "7", "7", ""),
        ('finishOnKey="*"', "12*", "12", "*"),
        ('finishOnKey="*"', "1#2*", "1#2", "*"),
        ('numDigits="1"', "5", "5", ""),
        ('numDigits="4"', "1234", "1234", ""),
        ('numDigits="4"', "12#", "12", "#"),
        ('numDigits="4" finishOnKey=""', "12", "12", ""),
    ],
)
def test_gather_submits_digits(
    serve: Serve, attrs: str, keys: str, digits: str, finished: str
) -> None:
    sim, hooks = gather_app(serve, f'action="/next" {attrs}')
    call = sim.call()
    assert call.heard == ["first", "second"] and call.gather is not None
    call.press(keys)
    (hit,) = hooks.to("/next")
    assert (hit.form["Digits"], hit.form["FinishedOnKey"], hit.form["msg"]) == (
        digits,
        finished,
        "Gather End",
    )
    assert call.said == ["first", "second", "next"] and call.heard == ["next"]
    assert call.ended and call.status == "completed"


@pytest.mark.parametrize(
    ("attrs", "keys"),
    [('numDigits="1"', "1"), ('numDigits="4"', "1#"), ("", "1#"), ('finishOnKey=""', "1")],
)
def test_gather_barge_in_cuts_the_remaining_prompts(serve: Serve, attrs: str, keys: str) -> None:
    sim, hooks = gather_app(serve, f'action="/next" {attrs}')
    call = sim.call()
    assert call.heard == ["first", "second"]  # what the caller would hear by waiting
    call.press(keys, barge_in=True)
    assert hooks.to("/next")[0].form["Digits"] == "1"
    assert call.said == ["first", "next"]
    assert [e.text for e in call.phone.events if e.say] == ["first [cut off]", "next"]


@pytest.mark.parametrize("attrs", ['numDigits="4"', "", 'finishOnKey="*"'])
def test_gather_without_input_falls_through_without_a_request(serve: Serve, attrs: str) -> None:
    sim, hooks = gather_app(serve, f'action="/next" timeout="7" {attrs}')
    call = sim.call().silence()
    assert call.said == ["first", "second", "after"] and call.heard == ["after"]
    assert hooks.to("/next") == [] and call.ended
    call = sim.call().press("*" if "*" in attrs else "#")  # the finish key first is no input
    assert call.said == ["first", "second", "after"] and hooks.to("/next") == []


def test_gather_no_input_ends_the_call_when_nothing_follows(serve: Serve) -> None:
    sim, hooks = serve({"/voice": twiml('<Gather action="/next"><Say>menu</Say></Gather>')})
    call = sim.call().silence()
    assert call.ended and call.status == "completed" and hooks.to("/next") == []


@pytest.mark.parametrize(("empty_digits", "expected"), [(False, None), (True, "")])
def test_gather_action_on_empty_result(
    serve: Serve, empty_digits: bool, expected: str | None
) -> None:
    sim, hooks = gather_app(
        serve, 'action="/next" actionOnEmptyResult="true"', empty_digits=empty_digits
    )
    sim.call().silence()
    sim.call().press("#")
    timeout, finish_first = hooks.to("/next")
    assert timeout.form.get("Digits") == expected and timeout.form["FinishedOnKey"] == ""
    assert finish_first.form.get("Digits") == expected and finish_first.form["FinishedOnKey"] == "#"


def test_gather_without_action_posts_to_the_current_document(serve: Serve) -> None:
    sim, hooks = serve(
        {
            "/ivr/menu": lambda hit: twiml(
                f"<Say>{hit.form.get('Digits', 'menu')}</Say><Gather numDigits='1'/>"
            ),
        },
        voice_path="/ivr/menu",
    )
    call = sim.call().press("3")
    _, second = hooks.to("/ivr/menu")
    assert second.form["Digits"] == "3" and second.method == "POST"
    assert call.said == ["menu", "3"] and call.gather is not None
    assert call.gather.action == sim.url("/ivr/menu")


def test_gather_relative_action_and_get(serve: Serve) -> None:
    sim, hooks = serve(
        {
            "/ivr/menu/1": twiml('<Gather action="../next?a=1" method="GET" numDigits="2"/>'),
            "/ivr/next": twiml("<Say>ok</Say>"),
        },
        voice_path="/ivr/menu/1",
    )
    call = sim.call()
    assert call.gather is not None and call.gather.action == sim.url("/ivr/next?a=1")
    call.press("42")
    (hit,) = hooks.to("/ivr/next")
    assert hit.method == "GET" and hit.valid and hit.form == {}
    assert hit.args["a"] == "1" and hit.args["Digits"] == "42" and hit.args["FinishedOnKey"] == ""
    assert hit.url.index("a=1") < hit.url.index("Digits=")  # Twilio's params after the URL's own
    assert call.said == ["ok"]


def test_press_guards(serve: Serve) -> None:
    sim, _ = gather_app(serve, 'action="/next" numDigits="1"')
    call = sim.call()
    with pytest.raises(AssertionError, match="ends before '2'") as info:
        call.press("12")
    assert "<Gather" in str(info.value)  # the last TwiML is in every failure message
    with pytest.raises(AssertionError, match="0-9"):
        call.press("1a")
    call.press("1")
    with pytest.raises(AssertionError, match="has ended") as info:
        call.press("1")
    assert "<Say>next</Say>" in str(info.value)
    with pytest.raises(AssertionError):
        call.hangup()


def test_gather_attribute_warnings(serve: Serve) -> None:
    sim, _ = serve(
        {
            "/voice": twiml(
                '<Gather finishOnKey="ab" numDigits="0" colour="red">'
                "<Dial>1</Dial><Say>x</Say></Gather>"
            )
        }
    )
    call = sim.call()
    codes = sorted(e.code for e in call.phone.warnings)
    assert codes == ["12200", "12200", "13310", "13314"]
    assert (
        call.gather is not None
        and call.gather.finish_on_key == "#"
        and call.gather.num_digits is None
    )


# ---- control flow -------------------------------------------------------------------------------


def test_redirect_relative_and_unreachable_verbs(serve: Serve) -> None:
    sim, hooks = serve(
        {
            "/a/b": twiml("<Say>one</Say><Redirect> sub/c </Redirect><Say>unreachable</Say>"),
            "/a/sub/c": twiml('<Redirect method="GET">/d</Redirect>'),
            "/d": twiml("<Say>two</Say>"),
        },
        voice_path="/a/b",
    )
    call = sim.call()
    assert call.said == ["one", "two"] and call.ended
    assert [(h.method, h.path) for h in hooks.hits] == [
        ("POST", "/a/b"),
        ("POST", "/a/sub/c"),
        ("GET", "/d"),
        ("POST", "/voice/status"),
    ]
    assert [e.kind for e in call.exchanges] == ["voice", "redirect", "redirect", "status"]


def test_redirect_loop_and_request_limit(serve: Serve) -> None:
    sim, _ = serve(
        {
            "/voice": twiml("<Redirect>/voice</Redirect>"),
            "/poll": twiml("<Pause/><Redirect>/poll</Redirect>"),
        }
    )
    call = sim.call()
    assert (
        call.status == "failed"
        and call.phone.error is not None
        and "loop" in call.phone.error.message
    )
    assert len(call.exchanges) == 3  # voice, one redirect, status callback
    sim.voice_path = "/poll"
    call = sim.call(max_requests=5)
    assert (
        call.status == "failed"
        and call.phone.error is not None
        and "5 requests" in call.phone.error.message
    )
    assert [e.kind for e in call.exchanges].count("redirect") == 4


def test_hangup_and_end_of_document(serve: Serve) -> None:
    sim, hooks = serve(
        {"/voice": twiml("<Say>bye</Say><Hangup/><Say>never</Say>"), "/empty": twiml()}
    )
    call = sim.call()
    assert call.said == ["bye"] and call.ended and call.status == "completed"
    sim.voice_path = "/empty"
    call = sim.call()
    assert call.said == [] and call.ended and call.status == "completed"
    assert len(hooks.to("/voice/status")) == 2


def test_reject_before_answering(serve: Serve) -> None:
    sim, hooks = serve({"/voice": twiml('<Reject reason="busy"/>')})
    call = sim.call()
    assert call.status == "busy"
    assert hooks.to("/voice/status")[0].form["CallStatus"] == "busy"


def test_unknown_verbs_are_warned_and_skipped(serve: Serve) -> None:
    sim, _ = serve({"/voice": twiml('<Shout>x</Shout><Say loudness="9">ok</Say><Connect/>')})
    call = sim.call()
    assert call.said == ["ok"] and [e.code for e in call.phone.warnings] == ["12200"] * 3


def test_caller_hangs_up_during_a_gather(serve: Serve) -> None:
    sim, hooks = gather_app(serve, 'action="/next"')
    call = sim.call().hangup()
    assert call.ended and call.status == "completed" and hooks.to("/next") == []
    assert hooks.to("/voice/status")[0].form["CallStatus"] == "completed"


# ---- Dial, Enqueue, Record ----------------------------------------------------------------------


def dial_app(serve: Serve, dial: str) -> tuple[Simulator, Webhooks]:
    return serve(
        {
            "/voice": twiml('<Gather numDigits="1" action="/transfer"><Say>press 0</Say></Gather>'),
            "/transfer": twiml(dial, "<Say>after</Say>"),
            "/dialed": lambda hit: twiml(f"<Say>{hit.form['DialCallStatus']}</Say>"),
        }
    )


@pytest.mark.parametrize(
    ("outcome", "duration", "bridged", "clock"),
    [("completed", "60", "true", 65), ("busy", "0", "false", 2), ("no-answer", "0", "false", 20)],
)
def test_dial_with_action(
    serve: Serve, outcome: str, duration: str, bridged: str, clock: int
) -> None:
    sim, hooks = dial_app(
        serve, '<Dial action="/dialed" timeout="20"><Number>+8610123</Number></Dial>'
    )
    call = sim.call()
    call.dial_outcome = outcome
    before = call.phone.t + phone.speech_seconds("press 0") + 0.3  # the prompt, then one key
    call.press("0")
    (hit,) = hooks.to("/dialed")
    f = hit.form
    assert (f["DialCallStatus"], f["DialCallDuration"], f["DialBridged"]) == (
        outcome,
        duration,
        bridged,
    )
    assert re.fullmatch(r"CA[0-9a-f]{32}", f["DialCallSid"]) and f["DialCallSid"] != f["CallSid"]
    assert call.heard == [outcome] and "after" not in call.said
    assert call.phone.t - before == pytest.approx(clock + phone.speech_seconds(outcome))


def test_dial_without_action_falls_through(serve: Serve) -> None:
    sim, hooks = dial_app(serve, "<Dial>+8610123</Dial>")
    call = sim.call(dial_outcome=DialResult("completed", 30)).press("0")
    assert call.heard == ["after"] and hooks.to("/dialed") == []
    assert any(e.kind == "dial" and "+8610123: completed 30 s" in e.text for e in call.phone.events)


def queue_app(serve: Serve, *wait_verbs: str) -> tuple[Simulator, Webhooks]:
    return serve(
        {
            "/voice": twiml(
                '<Enqueue waitUrl="hold" action="/queued">support</Enqueue><Say>after</Say>'
            ),
            "/hold": twiml(*wait_verbs),
            "/queued": lambda hit: twiml(f"<Say>{hit.form['QueueResult']}</Say>"),
        }
    )


def test_enqueue_polls_the_wait_url_then_bridges(serve: Serve) -> None:
    sim, hooks = queue_app(serve, "<Say>please hold</Say>", '<Pause length="10"/>')
    call = sim.call()
    assert call.said == ["please hold", "bridged"] and call.ended
    (hold,) = hooks.to("/hold")
    assert hold.form["QueuePosition"] == "1" and hold.form["CurrentQueueSize"] == "1"
    assert hold.form["QueueTime"] == "0" and hold.form["AvgQueueTime"] == "0"
    assert re.fullmatch(r"QU[0-9a-f]{32}", hold.form["QueueSid"])
    (queued,) = hooks.to("/queued")
    assert (
        queued.form["QueueResult"] == "bridged" and queued.form["QueueSid"] == hold.form["QueueSid"]
    )
    assert queued.form["QueueTime"] == "11"  # "please hold" (0.8 s) + 10 s pause, rounded


def test_enqueue_outcomes(serve: Serve) -> None:
    sim, hooks = queue_app(serve, "<Say>hold</Say>")
    call = sim.call(queue_outcome="queue-full")
    assert call.said == ["queue-full"] and hooks.to("/hold") == []
    sim.call(queue_outcome="leave")
    assert len(hooks.to("/hold")) == 1 and hooks.to("/queued")[-1].form["QueueResult"] == "leave"
    call = sim.call(queue_outcome="hangup")
    assert call.status == "completed" and hooks.to("/queued")[-1].form["QueueResult"] == "hangup"
    assert call.said == ["hold"]


def test_enqueue_leave_verb_in_wait_url_and_repeated_polls(serve: Serve) -> None:
    sim, hooks = queue_app(serve, "<Say>hold</Say>", "<Leave/>")
    assert sim.call().said == ["hold", "leave"]
    sim, hooks = queue_app(serve, "<Say>hold</Say>", '<Pause length="20"/>')
    call = sim.call(queue_outcome=QueueResult("bridged", talk=5), queue_polls=3)
    assert call.said == ["hold"] * 3 + ["bridged"]
    assert [h.form["QueueTime"] for h in hooks.to("/hold")] == ["0", "20", "41"]
    assert hooks.to("/queued")[0].form["QueueTime"] == "61" and call.duration == 67


def test_record(serve: Serve) -> None:
    sim, hooks = serve(
        {
            "/voice": twiml('<Gather numDigits="1" action="/rec"/>'),
            "/rec": twiml('<Record action="/recorded" maxLength="30"/>', "<Say>not reached</Say>"),
            "/recorded": twiml("<Say>thanks</Say>"),
        }
    )
    call = sim.call()
    call.record_outcome = phone.Recording(duration=45, digits="#")
    call.press("1")
    (hit,) = hooks.to("/recorded")
    assert hit.form["RecordingDuration"] == "30" and hit.form["Digits"] == "#"
    assert re.fullmatch(r"RE[0-9a-f]{32}", hit.form["RecordingSid"])
    assert hit.form["RecordingUrl"].endswith(hit.form["RecordingSid"])
    assert call.said == ["thanks"]


# ---- clock, status callbacks, duplicates --------------------------------------------------------


def test_virtual_clock_and_status_callback(serve: Serve) -> None:
    sim, hooks = serve(
        {
            "/voice": twiml(
                '<Say>你好</Say><Say language="en-US">one two three</Say><Pause length="61"/>'
            )
        }
    )
    call = sim.call()
    assert phone.speech_seconds("你好") == 0.5 and phone.speech_seconds(
        "one two three"
    ) == pytest.approx(1.2)
    assert call.duration == 63  # 0.5 + 1.2 + 61 = 62.7, rounded up
    assert [(e.t, e.kind) for e in call.phone.events if e.kind in ("say", "pause")] == [
        (0.0, "say"),
        (0.5, "say"),
        (1.7, "pause"),
    ]
    (status,) = hooks.to("/voice/status")
    f = status.form
    assert (
        status.valid
        and f["CallStatus"] == "completed"
        and f["CallbackSource"] == "call-progress-events"
    )
    assert (f["SequenceNumber"], f["CallDuration"], f["Duration"]) == ("0", "63", "2")
    assert parsedate_to_datetime(f["Timestamp"]).utcoffset() is not None
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000", f["Timestamp"])
    assert call.send_status("completed").status == 200
    assert hooks.to("/voice/status")[1].form["SequenceNumber"] == "1"


def test_gather_timeout_advances_the_clock(serve: Serve) -> None:
    sim, _ = serve({"/voice": twiml('<Gather timeout="9"><Say>a</Say></Gather>')})
    assert sim.call().silence().duration == 10  # 0.4 s for "a" + 9 s timeout


def test_resend_last_repeats_the_exact_request(serve: Serve) -> None:
    sim, hooks = gather_app(serve, 'action="/next"')
    call = sim.call()
    exchanges = len(call.exchanges)
    status, body = call.resend_last()
    assert status == 200 and "<Gather" in body and len(call.exchanges) == exchanges
    first, again = hooks.to("/voice")
    assert again.valid and again.form == first.form
    for header in ("I-Twilio-Idempotency-Token", "X-Twilio-Signature"):
        assert again.headers[header] == first.headers[header]
    call.press("1")
    assert call.said == ["first", "second", "next"]


def test_status_callback_by_hand_out_of_order(serve: Serve) -> None:
    sim, hooks = gather_app(serve, 'action="/next"')
    call = sim.call()
    call.send_status("completed")
    call.send_status("ringing")
    call.hangup()
    got = [
        (h.form["CallStatus"], h.form["SequenceNumber"], "CallDuration" in h.form)
        for h in hooks.to("/voice/status")
    ]
    assert got == [("completed", "0", True), ("ringing", "1", False), ("completed", "2", True)]


# ---- application errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (("oops", 500, "text/html"), "11200"),
        (("<Response><Say>x</Response>", 200, XML), "12100"),
        (("  <?xml version='1.0'?><Response/>", 200, XML), "12100"),
        (("<Reply/>", 200, XML), "12102"),
        (("<Response/>", 200, None), "12300"),
        (("<Response/>", 200, "application/json"), "12300"),
        (("<Response>" + "<Pause/>" * 9000 + "</Response>", 200, XML), "11750"),
    ],
)
def test_application_errors(serve: Serve, reply: Reply, code: str) -> None:
    sim, hooks = serve({"/voice": reply})
    call = sim.call()
    assert call.ended and call.status == "failed" and call.said == []
    assert call.phone.error is not None and call.phone.error.code == code
    assert hooks.to("/voice/status")[0].form["CallStatus"] == "completed"


def test_application_error_after_input_and_fallback(serve: Serve) -> None:
    routes: dict[str, Reply | Callable[[Hit], Reply]] = {
        "/voice": twiml('<Gather numDigits="1" action="/broken"><Say>menu</Say></Gather>'),
        "/broken": ("boom", 500, "text/plain"),
        "/fallback": lambda hit: twiml(f"<Say>sorry {hit.form['ErrorCode']}</Say>"),
    }
    sim, hooks = serve(routes)
    call = sim.call().press("1")
    assert (
        call.status == "failed"
        and call.phone.error is not None
        and call.phone.error.code == "11200"
    )
    sim.fallback_path = "/fallback"
    call = sim.call().press("1")
    assert call.status == "completed" and call.said == ["menu", "sorry 11200"]
    (fallback,) = hooks.to("/fallback")
    assert (
        fallback.form["ErrorUrl"] == sim.url("/broken")
        and fallback.form["CallStatus"] == "in-progress"
    )


def test_text_plain_is_read_aloud_then_hangs_up(serve: Serve) -> None:
    sim, _ = serve({"/voice": ("Hello there", 200, "text/plain; charset=utf-8")})
    call = sim.call()
    assert call.said == ["Hello there"] and call.status == "completed"
    assert [e.code for e in call.phone.warnings] == ["12300"]


def test_unreachable_server_is_an_application_error() -> None:
    call = SimCall(Line("http://127.0.0.1:9/voice", TOKEN, "+1", "+2", http_timeout=2))
    assert (
        call.status == "failed"
        and call.phone.error is not None
        and call.phone.error.code == "11205"
    )


# ---- the console phone --------------------------------------------------------------------------


def test_console_call(serve: Serve) -> None:
    sim, hooks = serve(
        {
            "/voice": twiml(
                "<Say language='cmn-CN'>欢迎致电</Say>",
                "<Gather numDigits='1' action='/menu'><Say>press 1</Say></Gather>",
            ),
            "/menu": lambda hit: twiml(
                f"<Say>you pressed {hit.form['Digits']}</Say>",
                "<Gather action='/menu'><Say>account</Say></Gather><Say>bye</Say>",
            ),
        }
    )
    out = io.StringIO()
    lines = iter(["x", "1", ""])
    status = console_call(
        sim.url("/voice"),
        TOKEN,
        from_="+8613800138000",
        to="+8612333",
        speak=False,
        status_url=sim.url("/voice/status"),
        out=out,
        inp=lambda prompt: next(lines),
    )
    text = out.getvalue()
    assert status == 0
    expected = [
        "[hotline] 欢迎致电",
        "[hotline] press 1",
        "keys [1 digit, end with #]> (keys are 0-9",
        "keys [1 digit, end with #]> [hotline] you pressed 1",
        "[hotline] account",
        "keys [digits, end with #]> [hotline] bye",
        "[call ended: completed,",
    ]
    positions = [text.index(line) for line in expected]
    assert positions == sorted(positions), text
    assert hooks.to("/voice/status")[0].form["CallStatus"] == "completed"


def test_console_call_hangs_up_on_eof_and_speaks(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, hooks = serve({"/voice": twiml("<Gather><Say language='zh-CN'>请按键</Say></Gather>")})
    spoken: list[list[str]] = []
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr("subprocess.run", lambda argv, **kw: spoken.append(argv))

    def eof(prompt: str) -> str:
        raise EOFError

    out = io.StringIO()
    console_call(
        sim.url("/voice"), TOKEN, from_="+1", to="+2", speak=True, status_url=None, out=out, inp=eof
    )
    assert spoken == [["/usr/bin/espeak-ng", "-v", "cmn", "请按键"]]
    assert "[call ended: completed" in out.getvalue() and [h.path for h in hooks.hits] == ["/voice"]
    assert phone.espeak_voice("en-US") == "en-us" and phone.espeak_voice("cmn-CN") == "cmn"


def test_drive_a_call_with_a_scripted_caller_object(serve: Serve) -> None:
    sim, _ = dial_app(serve, '<Dial action="/dialed">+8610123</Dial>')

    class Caller:
        def __init__(self) -> None:
            self.notices: list[str] = []

        def notice(self, event: phone.Event) -> None:
            self.notices.append(event.kind)

        def gather(self, wait: phone.GatherWait) -> phone.Press:
            return phone.Press("0")

        def dial(self, wait: phone.DialWait) -> phone.DialResult:
            return DialResult("failed")

        def enqueue(self, wait: phone.EnqueueWait) -> None:
            return None

        def record(self, wait: phone.RecordWait) -> None:
            return None

    caller = Caller()
    call = phone.drive(Call(Line(sim.url("/voice"), TOKEN, "+1", "+2")), caller)
    assert call.status == "completed" and [e.say.text for e in call.events if e.say] == [
        "press 0",
        "failed",
    ]
    assert caller.notices.count("say") == 1  # the Gather's prompt went to gather(), not notice()


def test_connection_override_fragment_is_neither_sent_nor_signed(serve: Serve) -> None:
    sim, hooks = serve({"/voice": twiml("<Say>hi</Say>")}, voice_path="/voice#rc=2&rp=all")
    call = sim.call()
    assert call.said == ["hi"] and hooks.hits[0].valid and hooks.hits[0].url.endswith("/voice")
