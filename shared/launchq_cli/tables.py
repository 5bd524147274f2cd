"""Item tables that fit the terminal: which columns give way first, and how far names shrink.

Rich shrinks every column of a table wider than the terminal in proportion, so at 80 columns
each header collapsed to `…` while a 19-digit job id kept its width. Instead, each column here
has a fixed width (its longest cell or header), and when the table does not fit:

1. columns are dropped whole, lowest value first, in each table's `give_way` order (for `ls` and
   `watch`: job id, attempts, what ran, duration, submitter, age, queue, priority);
2. the flexible columns (the display name, what ran, a waiting reason) take what is left, down to
   a minimum, and end in `…` when cut;
3. the item id, its state (and a pending item's position) never give way: they are what a
   person types next (`launchq status ITEM`).

Headers are never cut: a kept column is at least as wide as its header.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

Row = dict[str, Any]
# A bordered Rich table spends 3 cells per column (two of padding, one border) and 1 more.
_PER_COLUMN = 3
_EDGE = 1


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Row], str]  # Rich markup allowed (a styled state)
    give_way: int = 0  # dropped when too wide: 1 first, then 2, ...; 0 never
    flexible: bool = False  # may shrink to `minimum`, ending in …
    minimum: int = 8


def plain_width(markup: str) -> int:
    from rich.text import Text

    return Text.from_markup(markup).cell_len


def fitted_table(
    columns: Sequence[Column],
    rows: Sequence[Row],
    width: int,
    title: str | None = None,
    caption: str | None = None,
) -> Table:
    """A table of `rows` no wider than `width`, columns dropped or shrunk as described above."""
    from rich.table import Table

    cells = [[column.cell(row) for column in columns] for row in rows]
    natural = [
        max([len(column.header)] + [plain_width(line[k]) for line in cells])
        for k, column in enumerate(columns)
    ]
    floor = [
        min(natural[k], max(column.minimum, len(column.header))) if column.flexible else natural[k]
        for k, column in enumerate(columns)
    ]
    kept = list(range(len(columns)))

    def needed(widths: Sequence[int]) -> int:
        return sum(widths[k] + _PER_COLUMN for k in kept) + _EDGE

    droppable = [k for k, column in enumerate(columns) if column.give_way]
    for k in sorted(droppable, key=lambda k: columns[k].give_way):
        if needed(floor) <= width:
            break
        kept.remove(k)
    widths = {k: floor[k] for k in kept}
    spare = width - needed(floor)
    for k in kept:  # flexible columns grow back towards their natural width, in column order
        if spare <= 0:
            break
        grow = min(natural[k] - widths[k], spare)
        widths[k] += grow
        spare -= grow
    table = Table(title=title, title_justify="left", caption=caption, expand=False)
    for k in kept:
        table.add_column(columns[k].header, width=widths[k], no_wrap=True, overflow="ellipsis")
    for line in cells:
        table.add_row(*(line[k] for k in kept))
    return table


# -- the columns people find their runs by ------------------------------------------------------


def text(key: str) -> Callable[[Row], str]:
    """A plain cell (markup escaped): names and reasons are whatever people typed."""
    from rich.markup import escape

    def cell(row: Row) -> str:
        value = row.get(key)
        return "-" if value is None or value == "" else escape(str(value))

    return cell


def submitter(row: Row) -> str:
    from rich.markup import escape

    claim = row.get("submitted_by") or {}
    return escape(str(claim.get("value"))) if claim.get("value") else "-"


def priority(row: Row) -> str:
    name = row.get("priority_name")
    if name is not None:
        return str(name)
    return "-" if row.get("priority") is None else str(row["priority"])
