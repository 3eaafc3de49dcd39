"""The console phone (`ivr call`, SPEC 2): dial the hotline from a terminal, read the prompts,
type keys; and a clear refusal when there is nothing to sign the webhooks with."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hotline_server import BIN, Server, free_port


def ivr_call(url: str, env: dict[str, str], keys: list[str]) -> subprocess.CompletedProcess[str]:
    """`ivr call URL --no-speak` with `keys` typed, one line each."""
    return subprocess.run([str(BIN / "ivr"), "call", url, "--no-speak"], env=env,
                          input="".join(f"{k}\n" for k in keys), capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_a_console_call_hears_the_balance(hotline: Server) -> None:
    done = ivr_call(f"{hotline.url}/voice", dict(hotline.env),
                    ["1", "11010519491231002*#", "135790", "h"])  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    welcome = out.find("欢迎致电12333")
    pin = out.find("请输入6位查询密码")
    balance = out.find("您的医保个人账户余额为一千二百三十四元五角六分")
    assert 0 <= welcome < pin < balance, out  # heard in the order of the call
    assert "[call ended: completed" in out, out
    assert "application error" not in out and "[twilio" not in out, out


def test_a_console_call_without_any_token_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TWILIO_AUTH_TOKEN", "IVR_DEV_MODE")}  # fmt: skip
    env["IVR_INSTANCE_PATH"] = str(tmp_path)  # an instance folder with no dev token in it
    nobody = f"http://127.0.0.1:{free_port()}/voice"
    done = ivr_call(nobody, env, ["1", "h"])
    assert done.returncode != 0
    assert "TWILIO_AUTH_TOKEN" in done.stderr and "ivr serve --dev" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "[calling" not in done.stdout  # it did not dial
