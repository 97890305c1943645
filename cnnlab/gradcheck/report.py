"""The gradcheck table: one row per layer, backend and reference, showing the worst tensor.

gradcheck.json keeps every variant and tensor; the table keeps the screen readable.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from cnnlab.gradcheck.run import Record


def _worst(records: Iterable[Record]) -> dict[tuple, Record]:
    """The worst record of each (layer, backend, reference) over variants and tensors."""

    def badness(r: Record) -> tuple:
        # A failure outranks any pass; then the larger error (absolute for zero gradients).
        error = r.worst_abs_error if r.zero_gradient else r.rel_error
        return (not r.passed, error or 0.0)

    rows: dict[tuple, Record] = {}
    for r in records:
        key = (r.model or r.layer, r.backend, r.reference)
        if key not in rows or badness(r) > badness(rows[key]):
            rows[key] = r
    return rows


def render(records: list[Record], console: Console) -> None:
    """Print the table and a one-line verdict."""
    table = Table(
        title="Gradient checks, float64 (each row: the worst tensor and variant)",
        title_justify="left",
    )
    for name, justify in [
        ("layer", "left"),
        ("backend", "left"),
        ("worst tensor", "left"),
        ("reference", "left"),
        ("rel. error", "right"),
        ("worst |a−ref|", "right"),
        ("pass", "center"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    skipped: dict[str, str] = {}
    for (layer, backend, reference), r in _worst(records).items():
        if r.skipped:
            skipped[backend] = r.reason
            continue
        rel = "zero grad" if r.zero_gradient else f"{r.rel_error:.2e}"
        mark = "[green]✓[/]" if r.passed else "[bold red]✗[/]"
        table.add_row(layer, backend, r.tensor, reference, rel, f"{r.worst_abs_error:.1e}", mark)
    if skipped:
        table.caption = "; ".join(f"{b} skipped: {why}" for b, why in skipped.items())
        table.caption_justify = "left"
    console.print(table)


def verdict(records: list[Record]) -> str:
    """One line: how many checks ran and failed, and the worst relative error seen."""
    ran = [r for r in records if not r.skipped]
    failed = [r for r in ran if not r.passed]
    scored = [r for r in ran if not r.zero_gradient]
    worst = max(scored, key=lambda r: r.rel_error or 0.0, default=None)
    where = (
        f"; worst rel. error {worst.rel_error:.2e} ({worst.model or worst.layer} / "
        f"{worst.variant} / {worst.backend} / {worst.tensor} vs {worst.reference})"
        if worst
        else ""
    )
    skipped = sorted({r.backend for r in records if r.skipped})
    skip_note = f"; skipped: {', '.join(skipped)}" if skipped else ""
    status = f"{len(failed)} FAILED" if failed else "all passed" if ran else "none ran"
    return f"{len(ran)} checks, {status}{where}{skip_note}"
