"""The README and the docs say what the code does: the packages, the local ports, the demo's
steps and the source-job examples are read from the code and looked for in the text, so a new
package, port or demo step that the docs miss fails here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from launchq_local.devstack import Ports

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
_LINK = re.compile(r"\[[^\]]+\]\(([^)]+)\)")


def _paragraphs(text: str) -> list[str]:
    """Paragraphs, each list item on its own."""
    return [p for p in re.split(r"\n\s*\n|\n(?=- )", text) if p.strip()]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start : following if following != -1 else len(text)]


def test_every_package_under_shared_is_in_the_readme_layout_and_the_architecture() -> None:
    packages = sorted(p.parent.name for p in (ROOT / "shared").glob("*/__init__.py"))
    assert packages == [
        "launchq",
        "launchq_cli",
        "launchq_client",
        "launchq_demo",
        "launchq_local",
        "launchq_ui",
    ]
    [layout] = [p for p in _paragraphs(README) if "**Code layout**" in p]
    architecture = (DOCS / "architecture.md").read_text()
    for package in packages:
        assert f"`{package}`" in layout, package
        assert f"`{package}`" in architecture, package
    assert "installs all six" in architecture


def test_the_readme_port_list_names_every_default_port_of_the_local_stack() -> None:
    [ports] = [p for p in _paragraphs(README) if p.startswith("Ports:")]
    text = " ".join(ports.split())
    for port in dataclasses.fields(Ports):
        assert str(port.default) in text, port.name
    assert "Cloud Storage emulator (fake-gcs-server) 4443" in text


def test_no_readme_line_starts_with_a_stray_copy_of_a_link() -> None:
    """An edit that left a link behind: a line opening with `[x](x).` after the same paragraph
    already linked x reads as a broken sentence."""
    for paragraph in _paragraphs(README):
        lines = paragraph.splitlines()
        for n, line in enumerate(lines):
            opening = re.match(r"\[[^\]]+\]\(([^)]+)\)\.", line)
            if opening is not None and n > 0:
                earlier = "\n".join(lines[:n])
                assert f"]({opening.group(1)})" not in earlier, line


def test_the_demo_section_names_every_item_the_demo_plays() -> None:
    demo = (ROOT / "shared" / "launchq_demo" / "demo.py").read_text()
    items = set(re.findall(r'"(demo-[a-z-]+)"', demo))
    assert {"demo-built", "demo-built-again", "demo-cross", "demo-source"} <= items
    section = _section((DOCS / "local-dev.md").read_text(), "## `make demo`")
    missing = sorted(item for item in items if f"`{item}`" not in section)
    assert not missing


def test_source_examples_enqueue_onto_queues_that_run_source_items() -> None:
    """`enqueue -q trainer --source` is refused: an example must name a queue with a `source`
    or `builder` block."""
    texts = [README, *(path.read_text() for path in DOCS.glob("*.md"))]
    texts += [path.read_text() for path in (ROOT / "examples" / "queues").glob("*.yaml")]
    found = [
        match.group(1)
        for text in texts
        for match in re.finditer(r"launchq enqueue -q (\S+)[^\n]*--source", text)
    ]
    assert found
    for queue in found:
        config = yaml.safe_load((ROOT / "examples" / "queues" / f"{queue}.yaml").read_text())
        assert "source" in config or "builder" in config, queue
