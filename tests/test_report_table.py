"""The terminal summary table and the number formats it shares with the dashboard."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from gradwire.report.fmt import MISSING, fmt_bytes, fmt_speedup, fmt_time
from gradwire.report.table import (
    COLUMNS,
    COMPACT_COLUMNS,
    ESTIMATE_CAPTION,
    print_summary,
    summary_table,
)
from gradwire.results import Row, add_speedups

UNITS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}


def row(point: int, codec: str, name: str, it: float, workers: int = 8, **kw) -> Row:
    base = dict(
        scenario="unit",
        point=point,
        point_id=f"p{point}",
        codec=codec,
        codec_name=name,
        model="resnet50",
        batch_size=32,
        workers=workers,
        topology="fat_tree",
        collective="ring",
        device="a100",
        seed=1,
        overlap=True,
        iteration_s=it,
        compute_s=0.1,
        forward_s=0.03,
        backward_s=0.065,
        optimizer_s=0.005,
        encode_s=0.002,
        decode_s=0.001,
        comm_s=it / 2,
        exposed_comm_s=it / 4,
        hidden_comm_s=it / 4,
        bytes_per_rank=1.2e7,
        bits_per_element=4.06,
        compression_ratio=32 / 4.06,
    )
    base.update(kw)
    return Row(**base)


def render(rows: list[Row]) -> str:
    console = Console(record=True, width=260, color_system=None)
    print_summary(rows, console=console)
    return console.export_text()


@given(st.floats(min_value=1e-9, max_value=1e4, allow_nan=False))
def test_fmt_time_reads_back_within_rounding(seconds):
    text = fmt_time(seconds)
    m = re.fullmatch(r"(-?[0-9.e+-]+) (µs|ms|s)", text)
    assert m is not None, text
    back = float(m.group(1)) * UNITS[m.group(2)]
    # 3 significant digits: relative rounding error at most half a unit in the 3rd digit
    assert back == pytest.approx(seconds, rel=5e-3)
    assert m.group(2) == ("µs" if seconds < 1e-3 else "ms" if seconds < 1 else "s") or (
        float(m.group(1)) >= 999.5  # rounding up to the next unit's boundary
    )


@given(st.floats(min_value=1.0, max_value=1e12, allow_nan=False))
def test_fmt_bytes_reads_back_within_rounding(n):
    value, unit = fmt_bytes(n).split(" ")
    scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
    assert float(value) * scale == pytest.approx(n, rel=5e-3)


def test_missing_values_are_dashes():
    assert fmt_time(math.nan) == MISSING
    assert fmt_speedup(math.nan) == MISSING
    assert fmt_speedup(math.inf) == MISSING
    assert fmt_speedup(2.345) == "2.35×"


def test_table_has_a_line_per_point_and_codec_with_speedups():
    rows = add_speedups(
        [
            row(0, "fp32", "fp32", 0.40),
            row(0, "onebit", "onebit", 0.20),
            row(0, "qsgd(bits=4)", "qsgd", 0.16),
            row(1, "fp32", "fp32", 0.30, workers=16),
            row(1, "qsgd(bits=4)", "qsgd", 0.25, workers=16),
        ]
    )
    table = summary_table(rows)
    assert [c.header for c in table.columns] == list(COLUMNS)
    assert table.row_count == 5
    text = render(rows)
    workers_col = COLUMNS.index("workers") + 1
    lines = {
        ln.split("│")[2].strip() + "@" + ln.split("│")[workers_col].strip(): ln
        for ln in text.splitlines()
        if ln.count("│") > 10 and "codec" not in ln
    }
    # speedups computed against the same point's fp32 and onebit rows
    assert "2.50×" in lines["qsgd(bits=4)@8"] and "1.25×" in lines["qsgd(bits=4)@8"]
    assert "1.20×" in lines["qsgd(bits=4)@16"]
    assert lines["qsgd(bits=4)@16"].split("│")[COLUMNS.index("vs 1-bit") + 1].strip() == MISSING  # no onebit
    assert "400 ms" in lines["fp32@8"] and "12 MB" in lines["fp32@8"]
    assert ESTIMATE_CAPTION not in text
    # one rule between the two points (the header has its own heavy rule)
    assert sum(1 for ln in text.splitlines() if ln.startswith("├")) == 1


def test_estimates_are_marked():
    rows = add_speedups(
        [row(0, "fp32", "fp32", 0.4, estimate=True), row(0, "qsgd(bits=4)", "qsgd", 0.2)]
    )
    text = render(rows)
    assert ESTIMATE_CAPTION.split(":")[0] in text and "rescaled" in text
    fp = next(ln for ln in text.splitlines() if "│ fp32" in ln)
    q = next(ln for ln in text.splitlines() if "│ qsgd" in ln)
    assert "400 ms*" in fp and "200 ms*" not in q


def test_speedup_cells_are_coloured_by_direction():
    rows = add_speedups(
        [row(0, "fp32", "fp32", 0.4), row(0, "slow", "slow", 0.8), row(0, "fast", "fast", 0.2)]
    )
    table = summary_table(rows)
    vs_fp32 = table.columns[COLUMNS.index("vs fp32")]
    styles = {c.plain: str(c.style) for c in vs_fp32.cells}
    assert styles == {"1.00×": "", "0.50×": "red", "2.00×": "bold green"}


def test_baselines_first_and_no_onebit_column_without_onebit():
    rows = add_speedups([row(0, "qsgd(bits=4)", "qsgd", 0.2), row(0, "bf16", "bf16", 0.3),
                         row(0, "fp32", "fp32", 0.4)])
    table = summary_table(rows)
    headers = [c.header for c in table.columns]
    assert "vs 1-bit" not in headers and headers[:3] == ["point", "codec", "vs fp32"]
    assert [c.plain if hasattr(c, "plain") else c for c in table.columns[1].cells] == ["fp32", "bf16", "qsgd(bits=4)"]


def test_other_formats_carry_every_row_and_column():
    import csv
    import io
    import json

    from gradwire.report.table import format_summary

    rows = add_speedups([row(0, "fp32", "fp32", 0.4), row(0, "onebit", "onebit", 0.2),
                         row(1, "fp32", "fp32", 0.3, workers=16), row(1, "onebit", "onebit", 0.1, workers=16)])
    recs = json.loads(format_summary(rows, "json"))
    assert len(recs) == 4 and recs[1]["codec"] == "onebit" and recs[1]["vs fp32"] == "2.00×"
    table = list(csv.reader(io.StringIO(format_summary(rows, "csv"))))
    assert table[0] == list(COLUMNS) and len(table) == 5 and table[4][COLUMNS.index("vs fp32")] == "3.00×"
    md = format_summary(rows, "markdown").splitlines()
    assert len(md) == 6 and md[0].startswith("| point | codec | vs fp32")
    with pytest.raises(ValueError, match="format"):
        format_summary(rows, "yaml")


def test_narrow_terminal_gets_the_compact_table(capsys):
    rows = add_speedups([row(0, "fp32", "fp32", 0.4), replace(row(0, "q", "q", 0.1))])
    print_summary(rows, console=Console(width=100, color_system=None))
    out = capsys.readouterr().out
    assert "4.00×" in out and "unit" in out and "…" not in out  # nothing squashed
    assert "hidden comm" not in out and "breakdown columns left out" in out
    headers = [c.header for c in summary_table(rows, compact=True).columns]
    # every compact column but "vs 1-bit" (no 1-bit SGD row here)
    assert len(headers) == len(COMPACT_COLUMNS) - 1 and "codec" in headers and "vs fp32" in headers


def test_compact_table_fits_80_columns_without_cropping():
    codecs = ["fp32", "onebit", "qsgd(bits=4, bucket=512)", "qsgdinf(bits=2, bucket=8192)"]
    rows = add_speedups(
        [
            row(
                p,
                c,
                c.split("(")[0],
                0.1 + 0.01 * i + p,
                workers=4 * (p + 1),
                params={"workers": 4 * (p + 1), "cluster.bandwidth_Gbps": 100},
            )
            for p in range(2)
            for i, c in enumerate(codecs)
        ]
    )
    console = Console(width=80, record=True, color_system=None)
    print_summary(rows, console=console)
    text = console.export_text()
    assert "…" not in text
    assert all(f"  {c} " in text for c in codecs)  # every codec on one line, indented
    assert "workers=4" in text and "workers=8" in text  # points labelled by swept values
