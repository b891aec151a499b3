"""The figures docs/BENCHMARKS.md quotes are the ones in bench/results (issue 34: documents and
measurements cannot drift apart). Checked for the tables written from this session's benches."""

from __future__ import annotations

import json
import re

from conftest import REPO

BENCHMARKS = (REPO / "docs" / "BENCHMARKS.md").read_text()
RESULTS = REPO / "bench" / "results"


def _line(*needles: str) -> str:
    """The one line of BENCHMARKS.md holding every needle."""
    lines = [line for line in BENCHMARKS.splitlines() if all(needle in line for needle in needles)]
    assert len(lines) == 1, (needles, lines)
    return lines[0]


def test_footprint_quality_table_is_the_bench_result() -> None:
    after = json.loads((RESULTS / "outline_quality.json").read_text())["by_source"]
    before = {(e["source"], e["pixel_m"]): e for e in json.loads((RESULTS / "outline_quality_before.json").read_text())[
        "by_source"]}
    rows = [e for e in after if e["method"] == "sitewatch"]
    assert len(rows) == 16
    for entry in rows:
        line = _line(f"| {entry['source']} | {entry['pixel_m']:g} | {entry['matched']} of {entry['reference']} |")
        old = before[(entry["source"], entry["pixel_m"])]
        assert f"{old['mean_iou']:.3f} → **{entry['mean_iou']:.3f}**" in line
        assert f"{old['mean_vertices']:.1f} → **{entry['mean_vertices']:.1f}**" in line


def test_flags_table_is_the_bench_result() -> None:
    scores = json.loads((RESULTS / "flags.json").read_text())["scores"]
    before = json.loads((RESULTS / "flags_before_issue32.json").read_text())["scores"]
    for size, label in (("native", "native"), ("3", "3 m")):
        for name, result in ((f"{label}, after", scores[size]), (f"{label}, before", before[size])):
            line = _line(f"| {name} |")
            assert f"{result['hall_right']} of {result['hall_scored']}" in line
            assert f"{result['new_right']} / {result['new_scored']}" in line
            assert f"{result['regions_found']} of {result['regions']}" in line


def test_leave_one_pair_out_figures_are_the_bench_result() -> None:
    lopo = json.loads((RESULTS / "flags_lopo.json").read_text())
    assert f"{lopo['shipped']['right']} of {lopo['shipped']['of']}" in _line("| shipped (0.75, 0.5, 1,000 m²) |")
    assert f"{lopo['tuned']['right']} of {lopo['tuned']['of']}" in _line("| best of the grid")
    assert f"**{lopo['leave_one_pair_out']['right']} of {lopo['leave_one_pair_out']['of']}**" in _line(
        "| leave-one-pair-out |")


def test_encoder_table_is_the_bench_result() -> None:
    rows = json.loads((RESULTS / "encoders.json").read_text())["rows"]
    for row in rows:
        name = re.sub(r"^tu-tf_efficientnet_lite(\d)$", r"EfficientNet-Lite\1", row["encoder"])
        line = _line(f"| {name}", f"| {row['parameters']:,} |")
        assert f"| {row['forward_s']:.3f} | {row['forward_vs_first']:.2f} | {row['train_step_s']:.2f} |" in line
