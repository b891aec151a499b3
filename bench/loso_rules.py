"""The inference rules chosen leave-one-source-out, from held-out results already measured (issue 31).

    python bench/loso_rules.py [--out bench/results/loso_rules.json]

Two rules were chosen on the held-out sources they are scored on (the model card says so): the default
model's **working pixel size** (input ÷ 2 within 0.5-1 m, from runs at 0.5 m, 1 m and the input's own size:
``bench/results/heldout_ms_*.json``, ``heldout.json``) and the PlanetScope model's **multi-scale pass** (on from
2.5 m, from runs with and without it: ``heldout_planetscope_model_single_pass.json``,
``heldout_planetscope_model_multiscale_1-3m.json``, ``heldout_ps_0.5m_multiscale.json``). Here each satellite
source is held out in turn: for every input pixel size the option with the best mean pixel IoU over the *other*
sources is chosen and the held-out source scored with it, next to what the shipped rule gives it. No model
runs: the per-source figures of those files are the inputs. Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorded import command_line  # noqa: E402 (bench/, the script's folder)

from sitewatch.files import atomic_path  # noqa: E402

RESULTS = REPO / "bench" / "results"
SATELLITE = ("xbd", "idabd", "benchmark_samples", "shanghai", "inria_austin")
#: option name -> result files holding it, per input pixel size
WORK_SIZE = {"work at 0.5 m": ["heldout_ms_work0.5m.json", "heldout_ms_own_gsd.json"],
             "work at 1 m": ["heldout_ms_work1m.json", "heldout_ms_own_gsd.json"],
             "work at the input's size": ["heldout_ms_own_gsd.json"]}
WORK_SHIPPED = {"1": "work at 0.5 m", "2": "work at 1 m", "3": "work at 1 m"}
MULTISCALE = {"one pass": ["heldout_planetscope_model_single_pass.json"],
              "multi-scale": ["heldout_planetscope_model_multiscale_1-3m.json", "heldout_ps_0.5m_multiscale.json"]}
MULTISCALE_SHIPPED = {"0.5": "one pass", "1": "one pass", "2": "one pass", "3": "multi-scale"}


def option_scores(files: list[str], sizes: list[str], option: str) -> dict[tuple[str, str], float]:
    """(source, size) -> pixel IoU of one option, from the first of ``files`` that measured that size under it.

    ``heldout_ms_own_gsd.json`` ran at the input's own size: at 0.5 m that *is* working at 0.5 m, at 1 m
    working at 1 m; it counts for those options only there."""
    scores: dict[tuple[str, str], float] = {}
    for name in files:
        rows = json.loads((RESULTS / name).read_text())["per_source"]
        for row in rows:
            size = str(row["size"])
            own = name == "heldout_ms_own_gsd.json"
            if own and option != "work at the input's size" and float(size) != float(option.split()[2]):
                continue
            if size in sizes and row["source"] in SATELLITE:
                scores.setdefault((row["source"], size), float(row["pixel_iou"]))
    return scores


def held_out_choice(options: dict[str, dict[tuple[str, str], float]], shipped: dict[str, str]) -> list[dict]:
    """Per source and size: the option the other sources choose, its score there, and the shipped rule's."""
    rows = []
    for size, rule in shipped.items():
        sources = sorted({s for scores in options.values() for (s, z) in scores if z == size})
        for held in sources:
            usable = {name: scores for name, scores in options.items()
                      if all((s, size) in scores for s in sources)}
            others = [s for s in sources if s != held]
            chosen = max(usable, key=lambda name: sum(usable[name][(s, size)] for s in others))
            rows.append({"size": size, "source": held, "chosen_on_others": chosen,
                         "held_out_iou": usable[chosen][(held, size)], "shipped": rule,
                         "shipped_iou": usable[rule][(held, size)] if rule in usable else None})
    return rows


CROPS = {"one pass": "planetscope_planetscope_model_single_pass.json",
         "multi-scale": "planetscope_planetscope_model.json"}


def crop_choice() -> list[dict]:
    """Real PlanetScope crops (``bench/planetscope.py``, the previous PlanetScope model's runs), each held out in
    turn: the option with most (large buildings found − open ground falsely found) on the other crops, and the
    held-out crop's counts under it."""
    crops = {name: {c["crop"]: c for c in json.loads((RESULTS / path).read_text())["crops"]}
             for name, path in CROPS.items()}
    rows = []
    for held in sorted(crops["multi-scale"]):
        merit = {name: sum(c["found"] - c["falsely_found"] for crop, c in by.items() if crop != held)
                 for name, by in crops.items()}
        chosen = max(merit, key=merit.get)
        got = crops[chosen][held]
        rows.append({"crop": held, "chosen_on_others": chosen, "found": got["found"],
                     "large_buildings": got["large_buildings"], "falsely_found": got["falsely_found"],
                     "open_ground": got["open_ground"]})
    return rows


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}\n")
    print("| input pixel size (m) | source held out | chosen on the other sources | its IoU there | shipped rule | "
          "shipped IoU |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        shipped = "-" if row["shipped_iou"] is None else f"{row['shipped_iou']:.3f}"
        print(f"| {row['size']} | {row['source']} | {row['chosen_on_others']} | {row['held_out_iou']:.3f} | "
              f"{row['shipped']} | {shipped} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "loso_rules.json")
    args = parser.parse_args()
    work = held_out_choice({name: option_scores(files, list(WORK_SHIPPED), name) for name, files in WORK_SIZE.items()},
                           WORK_SHIPPED)
    fusion = held_out_choice({name: option_scores(files, list(MULTISCALE_SHIPPED), name)
                              for name, files in MULTISCALE.items()}, MULTISCALE_SHIPPED)
    table("Working pixel size of the default model", work)
    table("Multi-scale pass of the PlanetScope model (area-averaged held-out images)", fusion)
    crops = crop_choice()
    print("\nMulti-scale pass on real PlanetScope crops (3 m), each crop held out\n")
    print("| crop held out | chosen on the other crops | large buildings found | open ground falsely found |")
    print("|---|---|---|---|")
    for row in crops:
        print(f"| {row['crop']} | {row['chosen_on_others']} | {row['found']} of {row['large_buildings']} | "
              f"{row['falsely_found']} of {row['open_ground']} |")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps({"command": command_line(), "working_size": work, "multiscale": fusion,
                                   "multiscale_real_planetscope": crops}, indent=1))


if __name__ == "__main__":
    main()
