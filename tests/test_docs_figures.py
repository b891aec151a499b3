"""The figures the documents quote are the ones in bench/results (issue 34: documents and measurements
cannot drift apart): docs/BENCHMARKS.md's tables, the model card's held-out tables, the README's status
figures, the report's measured sentences and the costs in the command-line help."""

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
    now = json.loads((RESULTS / "flags.json").read_text())["scores"]
    after = json.loads((RESULTS / "flags_ee48119.json").read_text())["scores"]
    before = json.loads((RESULTS / "flags_before_issue32.json").read_text())["scores"]
    for size, label in (("native", "native"), ("3", "3 m")):
        for name, result in ((f"{label}, now", now[size]), (f"{label}, after", after[size]),
                             (f"{label}, before", before[size])):
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


# --- the older figures: model card tables, README status lines, the report's sentences, CLI help, sizing ---

CARD = (REPO / "models" / "MODEL_CARD.md").read_text()
README = (REPO / "README.md").read_text()


def _result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _heldout_table(before: str, after: str) -> list[str]:
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from compare_heldout import table_lines

    return [line for line in table_lines(_result(before), _result(after)) if line.startswith("| ")]


def test_model_card_held_out_tables_are_the_bench_results() -> None:
    for before, after in (("heldout_previous_0.5m_model.json", "heldout.json"),  # previous -> default model
                          ("heldout.json", "heldout_planetscope_model.json")):  # default -> previous PlanetScope
        missing = [line for line in _heldout_table(before, after) if line not in CARD]
        assert not missing, (before, after, missing)
    # previous PlanetScope model -> the shipped blend: per source, and the means in the comparison table
    rows = _heldout_table("heldout_planetscope_model.json", "heldout_ps_stage5_0.5_3m.json")
    assert not [line for line in rows if "→" in line and line.count("|") == 8 and line not in CARD]
    means = _result("heldout_ps_stage5_0.5_3m.json")["mean_satellite_pixel_iou"]
    assert f"**{means['0.5']:.3f}** |" in _card_line("fine sources at 0.5 m (simulated)")
    assert f"**{means['3']:.3f}** |" in _card_line("at 3 m (area-averaged, simulated)")


def _card_line(needle: str) -> str:
    lines = [line for line in CARD.splitlines() if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def test_readme_and_report_quote_the_default_models_held_out_means() -> None:
    from sitewatch.report import MEASURED

    means = _result("heldout.json")["mean_satellite_pixel_iou"]
    quoted = ", ".join(f"{means[size]:.3f} at {size} m" for size in ("0.5", "1", "2", "3"))
    assert quoted in " ".join(README.split()), quoted
    sentence = MEASURED[_result("inference.json")["model_sha256"]]
    assert ", ".join(f"{means[size]:.2f} at {size} m" for size in ("0.5", "1", "2")) in sentence


def test_report_quotes_the_planetscope_models_measurements() -> None:
    from sitewatch.report import MEASURED

    crops = _result("planetscope_ps_stage5.json")
    sentence = MEASURED[crops["sha256"]]
    kinds = crops["totals"]["by_kind"]
    aircraft, boats = kinds["open_ground/aircraft"], kinds["open_ground/boat"]
    ground = [value for kind, value in kinds.items()
              if kind.startswith("open_ground/") and kind not in ("open_ground/aircraft", "open_ground/boat")]
    assert f"finds {crops['totals']['found']} of {crops['totals']['large_buildings']} large buildings" in sentence
    assert f"calls {sum(v['hit'] for v in ground)} of {sum(v['total'] for v in ground)} open-ground spots" in sentence
    assert f"{aircraft['hit']} of {aircraft['total']} parked aircraft" in sentence
    assert f"{boats['hit']} of {boats['total']} boats" in sentence
    (pair,) = [run for run in _result("spacenet7.json")["runs"]
               if (run["earlier"], run["later"], run["dates"]) == ("2018_01", "2020_01", 2)]
    held_out = pair["scores"]["held_out"]
    assert f"finds {held_out['found']} of {held_out['labelled_new']} buildings" in sentence
    assert f"{held_out['right_new_records']} of its {held_out['new_records']} new records" in sentence
    means = _result("heldout_ps_stage5_0.5_3m.json")["mean_satellite_pixel_iou"]
    assert f"{means['0.5']:.2f} at 0.5 m and {means['3']:.2f} at 3 m" in sentence


def test_costs_in_readme_and_help_are_the_bench_results() -> None:
    from sitewatch.cli import MULTISCALE_HELP, TTA_HELP

    passes = {(row["multiscale"], row["tta"]): row["relative"] for row in _result("inference.json")["passes"]}
    tta, multiscale = passes[(False, True)], passes[(True, False)]
    assert 3.5 <= tta <= 3.75 and "3.5-3.7x" in TTA_HELP and "3.5-3.7× the time" in README
    assert "3.5-3.7× the time" in CARD and "3.5-3.7× the time" in BENCHMARKS
    assert not re.search(r"\b(4|3\.5)× the time", README + CARD + BENCHMARKS)  # no older cost left anywhere
    assert 1.2 <= multiscale <= 1.3 and "1.2-1.3x" in MULTISCALE_HELP
    onnx = next(row for row in _result("inference.json")["efficiency"] if row["backend"] == "onnx")
    assert 1.8 <= onnx["end_to_end_tiles_per_s"] <= 3.3 and "~1.8-3.3 tiles of 1,024² per second" in README
    assert f"At the {onnx['end_to_end_tiles_per_s']:.2f} end-to-end tiles/s of the latest run" in BENCHMARKS
    own = [row["peak_rss_mib"] for row in _result("peers.json")["rows"] if row["tool"] == "sitewatch"]
    assert [round(mib / 1024, 1) for mib in own] == [0.7, 1.1]  # 2,048² then 8,192²
    assert (f"**{own[0]:,.0f} MiB for a 2,048² raster and {own[1]:,.0f} MiB for 8,192²**" in BENCHMARKS
            and f"+{own[1] - own[0]:.0f} MiB for 16× the pixels" in BENCHMARKS)
    assert "peak memory ~0.7 GiB for a 2,048² raster, ~1.1 GiB for 8,192²" in " ".join(README.split())
    per_s = _result("vectorize.json")["results"][0]["buildings_per_s"]
    assert f"~{round(per_s, -1):.0f} buildings/s" in " ".join(README.split())
    speed = next(row for row in _result("gsd_speed.json")["rows"]
                 if row["model"].startswith("sitewatch") and row["raster_gsd_m"] > 2)
    assert f"~{speed['km2_per_minute']:.0f} km² per minute" in README
    startup = _result("startup.json")["results"]
    assert max(entry["median_s"] for entry in startup.values()) < 0.35 and "answer in ~0.3 s" in " ".join(
        README.split())


def test_roof_cut_table_and_choice_are_the_bench_result() -> None:
    from sitewatch.footprints import FootprintOptions

    result = _result("roof_trim.json")
    options = FootprintOptions()
    shipped = (f"core ≥ {options.roof_core_p:g}, grown {options.roof_core_grow_m:g} m, "
               f"from {options.roof_core_min_m2:g} m²")
    assert set(result["leave_one_source_out"].values()) == {shipped}  # every held-out source chose the shipped one
    by = {(row["source"], row["size"], row["setting"]): row for row in result["rows"]}

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for (source, size, setting), after in by.items():
        if setting != shipped:
            continue
        before = by[(source, size, "no cut (before)")]
        line = _line(f"| {source} | {size} | {fmt(before['pixel_iou'])} → **{fmt(after['pixel_iou'])}** |")
        assert f"{fmt(before['large_mean_iou'])} → **{fmt(after['large_mean_iou'])}** |" in line


def test_leave_one_source_out_rules_are_the_bench_result() -> None:
    rules = _result("loso_rules.json")
    work = rules["working_size"]
    agree = [row for row in work if row["chosen_on_others"] == row["shipped"]]
    (other,) = [row for row in work if row["chosen_on_others"] != row["shipped"]]
    assert f"the shipped rule's in {len(agree)} of {len(work)} source-size cases" in " ".join(CARD.split())
    assert f"would score {other['held_out_iou']:.3f} against the rule's {other['shipped_iou']:.3f}" in " ".join(
        CARD.split())
    assert all(row["chosen_on_others"] == "multi-scale" for row in rules["multiscale_real_planetscope"])
    assert all(row["chosen_on_others"] == "one pass" for row in rules["multiscale"])


def test_more_steps_table_is_the_bench_result() -> None:
    curve = _result("loso_lr5e4_long.json")["runs"]["loso_lite0_lr5e4_long"]["curve"]
    window = [entry for entry in curve if 2400 <= entry["step"] <= 2913]
    means = [sum(entry[key] for entry in window) / len(window)
             for key in ("shanghai", "inria_austin", "benchmark_samples", "mean")]
    assert f"| 2,400-2,913 | - | {means[0]:.3f} / {means[1]:.3f} / {means[2]:.3f} / **{means[3]:.3f}** |" in BENCHMARKS
    last = sum(entry["mean"] for entry in curve[-5:]) / 5
    assert f"mean of its last five validations {last:.3f}" in " ".join(BENCHMARKS.split())


def test_trained_on_table_and_rotation_table_are_the_bench_results() -> None:
    before = _result("heldout.json")["mean_satellite_pixel_iou"]
    after = _result("heldout_ms_more.json")["mean_satellite_pixel_iou"]
    cells = " | ".join(f"{before[size]:.3f} → {after[size]:.3f}" for size in ("0.5", "1", "2", "3"))
    assert f"| mean pixel IoU | {cells} |" in BENCHMARKS
    pairs = _result("rotation.json")["pairs"]
    unturned = [pair["rows"][0] for pair in pairs]
    assert not any(row["applied"] for row in unturned) and len(pairs) == 18
    large = [row for pair in pairs if pair["shape_px"][0] >= 1000 for row in pair["rows"][1:5]]
    assert all(row["applied"] and abs(row["measured_deg"] - row["turned_deg"]) <= 0.08 for row in large)
    small = [row for pair in pairs if pair["shape_px"][0] < 1000 for row in pair["rows"][1:4]]
    assert sum(row["applied"] for row in small) == 3 and len(small) == 30
    assert "| LEVIR-CD crops, DSIFN, demo site (10, 256 px) | 0 of 10 | 3 of 30 |" in BENCHMARKS
