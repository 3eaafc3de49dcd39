"""The benchmark's floor: a framework-free WSGI app answering every POST with one fixed TwiML.

`bench/calls.py` serves it with exactly the gunicorn settings it gives the hotline and drives
it with the same client, so the difference between the two runs is what the hotline itself
costs: Flask, the signature check, Redis, the engine, rendering and the call log. It reads
the form (any real webhook must) and checks nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# About the size of the hotline's first reply (welcome and main menu): one Gather, one Say.
SAY = (
    "您好，欢迎致电12333医疗保障服务热线。查询医保个人账户余额和近期消费记录，请按1；"
    "查询缴费记录，请按2；医保卡服务，请按3；政策信息，请按4；人工服务，请按0；重听请按井号键。"
)
BODY = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Gather action="/voice/in/1" finishOnKey="" method="POST" numDigits="1" timeout="6">'
    f'<Say language="cmn-CN" voice="Polly.Zhiyu">{SAY}</Say></Gather>'
    '<Redirect method="POST">/voice/silence/1</Redirect></Response>'
).encode()
HEADERS = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(BODY)))]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The same TwiML for any POST, whatever its URL; 405 for anything else."""
    if environ["REQUEST_METHOD"] != "POST":
        start_response("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "0")])
        return [b""]
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", HEADERS)
    return [BODY]
