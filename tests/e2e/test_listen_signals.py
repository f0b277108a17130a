"""`listen` stops cleanly (exit 0) on SIGINT and SIGTERM, also when it was started with SIGINT
ignored, as every command of a background job is (`opcua-mqtt listen ... &` in a script, or a
CI runner's background step): Python leaves an inherited SIG_IGN in place, so without its own
handlers listen could then only be killed."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.bridge import EXE
from harness.mosquitto import MosquittoBroker


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_listen_started_with_sigint_ignored_stops_cleanly_on_a_signal(
    shared_mosquitto_tls: MosquittoBroker, tmp_path: Path, sig: signal.Signals
) -> None:
    broker = shared_mosquitto_tls
    err = tmp_path / "listen.err"
    cmd = [EXE, "listen", f"{broker.host}:{broker.port}", "--ca", str(broker.ca_cert)]
    with err.open("w") as stderr:
        listen = subprocess.Popen(
            [*cmd, "--format", "json", "--timeout", "120"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=_ignore_sigint,
        )
        try:
            for _ in range(300):  # until it is connected and waiting (a guard, not a figure)
                if "MQTT connected" in err.read_text() or listen.poll() is not None:
                    break
                time.sleep(0.1)
            assert listen.poll() is None, err.read_text()
            listen.send_signal(sig)
            assert listen.wait(30) == 0, err.read_text()
        finally:
            if listen.poll() is None:
                listen.kill()
                listen.wait()
