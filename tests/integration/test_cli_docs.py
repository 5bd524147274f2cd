"""docs/cli.md ends with every command's `--help`; it must match the CLI as built.

Regenerate after changing a command:

    python - <<'PY'
    from pathlib import Path
    from launchq_cli import main
    from launchq_cli.common import REFERENCE_MARKER, render_reference
    doc = Path("docs/cli.md"); head = doc.read_text().split(REFERENCE_MARKER)[0]
    doc.write_text(head + REFERENCE_MARKER + "\n\n" + render_reference(main))
    PY

(or `launchq cli-reference` prints the generated part).
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from launchq_cli import main
from launchq_cli.common import REFERENCE_MARKER, render_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert REFERENCE_MARKER in text
    generated = text.split(REFERENCE_MARKER, 1)[1].lstrip("\n")
    assert generated == render_reference(main), "docs/cli.md is stale: see this module's doc"


def test_every_command_is_documented() -> None:
    generated = render_reference(main)
    for name in ("enqueue", "ls", "status", "cancel", "watch", "sweep", "dev", "emulators", "ui",
                 "vertex-emulator", "queue apply", "queue get", "queue ls", "queue pending",
                 "queue pause", "queue resume", "queue validate", "queue render"):  # fmt: skip
        assert f"### `launchq {name}`" in generated


def test_the_hidden_generator_prints_the_same() -> None:
    result = CliRunner().invoke(main, ["cli-reference"])
    assert result.exit_code == 0
    assert result.stdout == render_reference(main)
