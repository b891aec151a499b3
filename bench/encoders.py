"""Encoder benchmark: CPU forward time and training-step time of the U-Net per encoder.

    python bench/encoders.py [--encoders tu-tf_efficientnet_lite0 tu-tf_efficientnet_lite1 ...]
                             [--threads 2] [--out bench/results/encoders.json]

For each encoder, with its packaged ImageNet weights loaded (so a wrong weight file fails here):
parameters, median seconds for a forward pass of a batch of 8 tiles of 256² (inference mode),
and median seconds for one training step (forward, dice+bce backward, AdamW) on the same batch.
What a CPU-hour of training buys is steps/hour; what inference costs is the forward time relative
to lite0, the shipped encoder (issue 31: a larger network within 1.5x, or shipped as the accurate
option). Prints a table and writes JSON; timings are medians of a second round, after a first
round over every encoder and a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.files import atomic_path  # noqa: E402
from sitewatch.network import build_network  # noqa: E402

DECODER = (128, 64, 48, 32, 16)


def median_seconds(step, repeats: int) -> float:
    """Median wall seconds of ``step()`` over ``repeats`` runs after one warm-up."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(encoder: str, batch: int, size: int, repeats: int) -> dict:
    """Forward and training-step seconds of one encoder's U-Net."""
    network = build_network("Unet", encoder, decoder_channels=DECODER, encoder_weights="package")
    params = sum(p.numel() for p in network.parameters())
    images = torch.rand(batch, 3, size, size)
    target = (torch.rand(batch, 1, size, size) > 0.7).float()
    network.eval()

    def forward() -> None:
        with torch.inference_mode():
            network(images)

    forward_s = median_seconds(forward, repeats)
    network.train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)

    def train_step() -> None:
        optimizer.zero_grad()
        logits = network(images)
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + dice
        loss.backward()
        optimizer.step()

    step_s = median_seconds(train_step, max(2, repeats // 2))
    return {"encoder": encoder, "parameters": params, "forward_s": forward_s,
            "tiles_per_s": batch / forward_s, "train_step_s": step_s,
            "steps_per_hour": 3600 / step_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=[
        "tu-tf_efficientnet_lite0", "tu-tf_efficientnet_lite1", "tu-tf_efficientnet_lite2"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/encoders.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # a first round warms the thread pool and the kernels' caches (the first network measured was
    # otherwise slower than larger ones); the second round is reported
    for name in args.encoders:
        measure(name, args.batch, args.size, 1)
    rows = [measure(name, args.batch, args.size, args.repeats) for name in args.encoders]
    base = rows[0]["forward_s"]
    print(f"{'encoder':28} {'params':>10} {'fwd s/batch':>12} {'tiles/s':>8} {'x lite0':>8} "
          f"{'step s':>8} {'steps/h':>8}")
    for row in rows:
        row["forward_vs_first"] = row["forward_s"] / base
        print(f"{row['encoder']:28} {row['parameters']:>10,} {row['forward_s']:>12.3f} "
              f"{row['tiles_per_s']:>8.2f} {row['forward_vs_first']:>8.2f} "
              f"{row['train_step_s']:>8.2f} {row['steps_per_hour']:>8.0f}")
    result = {"command": " ".join(["python", "bench/encoders.py", *sys.argv[1:]]),
              "machine": {"cpu": platform.processor() or platform.machine(),
                          "threads": args.threads, "torch": torch.__version__},
              "batch": args.batch, "tile": args.size, "rows": rows}
    with atomic_path(args.out) as tmp:  # a JSON whole or not at all
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
