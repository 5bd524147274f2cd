"""Small helpers shared by tests that serve something on a port and wait for it."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def answers(url: str) -> bool:
    """Whether anything answers HTTP at `url` (any status)."""
    try:
        requests.get(url, timeout=0.5)
    except requests.RequestException:
        return False
    return True
