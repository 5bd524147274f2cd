"""The dev stack on picked ports survives losing a port race (seen once in CI: the Firestore
emulator's port was taken between picking it and the JVM binding it)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest

from launchq.gcp.secrets import SecretReader
from launchq_local import devstack
from launchq_local.devstack import DevStack, Ports
from launchq_local.emulators import new_project_id

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def first_pick_loses_the_race(
    monkeypatch: pytest.MonkeyPatch, taken_port: int, field: int
) -> list[list[int]]:
    """The first pick of free ports gives `taken_port` to Ports' `field`-th field (another
    process won the race for it); returns every pick, for the test to count."""
    real = devstack.free_ports
    calls: list[list[int]] = []

    def pick(count: int) -> list[int]:
        ports = real(count)
        if not calls:
            ports[field] = taken_port
        calls.append(ports)
        return ports

    monkeypatch.setattr(devstack, "free_ports", pick)
    return calls


def test_a_stack_whose_picked_port_is_taken_starts_again_on_new_ports(
    taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = first_pick_loses_the_race(monkeypatch, taken_port, 0)  # Firestore's port
    stack = DevStack(new_project_id("launchq-race"), Ports.free(), sweep_interval=5.0)
    assert stack.ports.firestore == taken_port
    try:
        stack.start()
        # At least once more: another process on this machine (a parallel test's stack) may
        # take one of the new picks too, and the stack starts again once more for it.
        assert len(calls) >= 2
        assert stack.ports.firestore != taken_port
        assert stack.emulators is not None
        assert stack.emulators.firestore.port == stack.ports.firestore
        # The GCS emulator is part of the stack, with the example queues' staging bucket.
        assert stack.gcs is not None
        assert stack.env()["STORAGE_EMULATOR_HOST"] == stack.gcs.url
        assert stack.gcs.client().bucket(devstack.DEV_BUCKET).exists()
    finally:
        stack.stop()
        assert stack.leftovers() == []
        stack.remove_files()


@pytest.mark.parametrize("piece", ["secretmanager", "receiver"])
def test_a_stand_in_whose_picked_port_is_taken_starts_again_on_new_ports(
    taken_port: int, monkeypatch: pytest.MonkeyPatch, piece: str
) -> None:
    """The stand-ins and the webhook receiver bind in this process: a taken port is EADDRINUSE,
    not a JVM's failure. The notify secrets are those of the stack that started: they name the
    receiver's new port."""
    field = [f.name for f in dataclasses.fields(Ports)].index(piece)
    calls = first_pick_loses_the_race(monkeypatch, taken_port, field)
    stack = DevStack(new_project_id("launchq-race"), Ports.free(), sweep_interval=5.0)
    assert getattr(stack.ports, piece) == taken_port
    try:
        stack.start()
        # At least once more: another process on this machine (a parallel test's stack) may
        # take one of the new picks too, and the stack starts again once more for it.
        assert len(calls) >= 2
        assert getattr(stack.ports, piece) != taken_port
        assert stack.secrets is not None
        assert stack.secrets.url == stack.secretmanager_url
        assert stack.receiver is not None
        assert stack.receiver.url == stack.receiver_url
        reader = SecretReader(stack.secretmanager_url)
        assert reader.value(devstack.NOTIFY_SECRETS["hook_url"]) == stack.receiver.hook_url
        assert reader.value(devstack.NOTIFY_SECRETS["signing_key"]) == stack.signing_key
    finally:
        stack.stop()
        assert stack.leftovers() == []
        stack.remove_files()
