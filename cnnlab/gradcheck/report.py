"""The gradcheck table: one row per layer, backend and reference, showing the worst tensor.

"Worst" is the closest to its tolerance: numeric tolerances differ from tensor to tensor (they
follow the differences' estimated error). gradcheck.json keeps every variant and tensor; the
table keeps the screen readable.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from cnnlab.gradcheck.run import Record


def _share(r: Record) -> float:
    """How much of its tolerance a record's error uses (absolute error for zero gradients)."""
    error = r.worst_abs_error if r.zero_gradient else r.rel_error
    return (error or 0.0) / (r.threshold or 1.0)


def _worst(records: Iterable[Record]) -> dict[tuple, Record]:
    """The worst record of each (layer, backend, reference) over variants and tensors."""

    def badness(r: Record) -> tuple:
        # A failure outranks any pass; then the larger share of the tolerance used.
        return (not r.passed, _share(r))

    rows: dict[tuple, Record] = {}
    for r in records:
        key = (r.model or r.layer, r.backend, r.reference)
        if key not in rows or badness(r) > badness(rows[key]):
            rows[key] = r
    return rows


def render(records: list[Record], console: Console, precision: str = "64-true") -> None:
    """Print the table and a one-line verdict; precision: what the checks ran in (a mixed
    one: torch under autocast, against torch in float64)."""
    how = "float64" if precision == "64-true" else f"{precision} against torch in float64"
    table = Table(
        title=f"Gradient checks, {how} (each row: the worst tensor and variant)",
        title_justify="left",
    )
    for name, justify in [
        ("layer", "left"),
        ("backend", "left"),
        ("worst tensor", "left"),
        ("reference", "left"),
        ("rel. error", "right"),
        ("tolerance", "right"),
        ("worst |a−ref|", "right"),
        ("pass", "center"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for (layer, backend, reference), r in _worst(records).items():
        if r.skipped:
            continue  # in the caption
        if r.passed is False and r.rel_error is None:  # a user's code raised, hung or died
            table.add_row(layer, backend, f"failed: {r.reason}", "", "", "", "", "[bold red]✗[/]")
            continue
        rel = "zero grad" if r.zero_gradient else f"{r.rel_error:.2e}"
        tol = f"{r.threshold:.1e}" + (" abs" if r.zero_gradient else "")
        tensor = f"{r.tensor} ({r.method})" if r.method not in ("", "elements") else r.tensor
        mark = "[green]✓[/]" if r.passed else "[bold red]✗[/]"
        row = (layer, backend, tensor, reference, rel, tol, f"{r.worst_abs_error:.1e}", mark)
        table.add_row(*row)
    caption = _skips(records)
    if caption:
        table.caption = caption
        table.caption_justify = "left"
    console.print(table)


def _skips(records: list[Record]) -> str:
    """What was skipped, one line per backend and reason: the layers skipped whole, then
    those where only some cases were (a user's convention without an option)."""
    ran = {(r.backend, r.model or r.layer) for r in records if not r.skipped}
    whole: dict[tuple[str, str], list[str]] = {}
    some: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if not r.skipped:
            continue
        target = str(r.model or r.layer)  # a whole-model check's record has no layer
        group = some if (r.backend, target) in ran else whole
        layers = group.setdefault((r.backend, r.reason), [])
        if target not in layers:
            layers.append(target)
    lines = [f"{b} skipped {', '.join(ls)}: {why}" for (b, why), ls in whole.items()]
    lines += [f"{b} skipped some cases of {', '.join(ls)}: {why}" for (b, why), ls in some.items()]
    return "\n".join(lines)


def verdict(records: list[Record]) -> str:
    """One line: how many checks ran and failed, the worst relative error seen, and what failed
    or else the check nearest its tolerance (numeric tolerances differ from tensor to tensor)."""
    ran = [r for r in records if not r.skipped]
    failed = [r for r in ran if not r.passed]
    scored = [r for r in ran if not r.zero_gradient]
    worst = max(scored, key=lambda r: r.rel_error or 0.0, default=None)
    nearest = max(ran, key=_share, default=None)
    where = f"; worst rel. error {worst.rel_error:.2e} ({_name(worst)})" if worst else ""
    if failed:
        # What failed, tensor by tensor (or what the code did), instead of the nearest pass.
        what = dict.fromkeys(
            f"{r.model or r.layer} {r.tensor or 'code'} on {r.backend}" for r in failed
        )
        where += f"; failed: {', '.join(what)}"
    elif nearest:
        where += f"; largest share of a tolerance: {_share(nearest):.0%} ({_name(nearest)})"
    skipped = sorted({r.backend for r in records if r.skipped})
    skip_note = f"; skipped: {', '.join(skipped)}" if skipped else ""
    status = f"{len(failed)} FAILED" if failed else "all passed" if ran else "none ran"
    return f"{len(ran)} checks, {status}{where}{skip_note}"


def _name(r: Record) -> str:
    return f"{r.model or r.layer} / {r.variant} / {r.backend} / {r.tensor} vs {r.reference}"
