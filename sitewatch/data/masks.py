"""Readers for image tiles with raster masks and no georeferencing.

* 0/255 masks: ``benchmark_samples/*`` (Inria, WHU, SpaceNet, crowdAI, ISPRS samples) and
  ``inria_austin`` (``img/`` + ``label/``).
* colour masks: ``dubai/Tile N/{images,masks}`` (Humans in the Loop, 6 classes; building is
  RGB (60, 16, 152) as published in the masks; "Unlabeled" (155, 155, 155) is ignored).

None of these carry a pixel size, so each source gets its dataset's published ground sample
distance (``gsd_estimated=True``); ``NOMINAL_GSD_M`` lists them and a data config may override.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sitewatch.data.common import (
    IGNORE,
    LabeledImage,
    ensure_same_size,
    paired,
    read_binary_mask,
    read_picture,
    read_rgb,
    require_dir,
    subfolders,
)
from sitewatch.errors import SitewatchError

#: Published ground sample distance (m) of sources without georeferencing.
NOMINAL_GSD_M: dict[str, float] = {
    "benchmark_samples/crowdai": 0.3,
    "benchmark_samples/inria": 0.3,
    "benchmark_samples/inria_austin_chicago": 0.3,
    "benchmark_samples/isprs": 0.3,
    "benchmark_samples/nzlnd": 0.3,
    "benchmark_samples/spacenet": 0.3,
    "benchmark_samples/whu_east_asia": 0.45,
    "benchmark_samples/whu_sample": 0.6,
    "inria_austin": 0.3,
    "dubai": 0.6,
}

DUBAI_BUILDING_RGB = (60, 16, 152)
DUBAI_UNLABELED_RGB = (155, 155, 155)
_COLOUR_TOLERANCE = 10


def _pairs_for_subset(subset_dir: Path) -> list[tuple[Path, Path, str]]:
    """``(image, mask, group suffix)`` for one benchmark_samples subset, by its layout."""
    name = subset_dir.name
    if name == "crowdai":  # image/{i}_img.png ↔ gt/{ii}.png
        out = []
        for image in sorted((subset_dir / "image").glob("*_img.png")):
            index = image.stem.split("_")[0]
            mask = subset_dir / "gt" / f"{index * 2}.png"
            if not mask.is_file():
                raise SitewatchError(f"{image}: mask {mask.name} missing")
            out.append((image, mask, ""))
        return out
    if (subset_dir / "train_data").is_dir():  # {split}_data/{images,gt}/*.tif
        out = []
        for split_dir in sorted(subset_dir.glob("*_data")):
            split = split_dir.name.removesuffix("_data")
            out += [(i, m, split) for i, m in paired(split_dir / "images", split_dir / "gt")]
        return out
    if (subset_dir / "images").is_dir():  # images/X ↔ gt/X
        return [(i, m, "") for i, m in paired(subset_dir / "images", subset_dir / "gt")]
    out = []  # X.png ↔ X_gt.png in one folder
    for image in sorted(subset_dir.glob("*.png")):
        if image.stem.endswith("_gt"):
            continue
        mask = image.with_name(f"{image.stem}_gt{image.suffix}")
        if not mask.is_file():
            raise SitewatchError(f"{image}: mask {mask.name} missing")
        out.append((image, mask, ""))
    return out


def _binary_sample(
    image_path: Path, mask_path: Path, *, source: str, group: str, gsd_m: float
) -> LabeledImage:
    image = read_rgb(image_path)
    label = read_binary_mask(mask_path)
    ensure_same_size(image, label, image_path, mask_path)
    return LabeledImage(
        name=image_path.stem, source=source, group=group, image=image, label=label,
        gsd_m=gsd_m, gsd_estimated=True,
    )


def read_benchmark_samples(root: Path) -> Iterator[LabeledImage]:
    """Yield every image of ``root/benchmark_samples/<subset>`` with its 0/255 mask."""
    base = require_dir(root / "benchmark_samples", "benchmark_samples")
    for subset in subfolders(base, "subsets"):
        key = f"benchmark_samples/{subset.name}"
        gsd = NOMINAL_GSD_M.get(key, 0.3)
        for image, mask, split in _pairs_for_subset(subset):
            group = f"{key}/{split}" if split else key
            yield _binary_sample(image, mask, source="benchmark_samples", group=group, gsd_m=gsd)


INRIA_TILE = re.compile(r"^([a-z\-]+\d+)_")


def read_inria_austin(root: Path) -> Iterator[LabeledImage]:
    """Yield ``root/inria_austin/img/*.png`` with ``label/*.png``; group = Inria city tile."""
    base = require_dir(root / "inria_austin", "inria_austin")
    pairs = paired(require_dir(base / "img", "inria_austin/img"), base / "label")
    if not pairs:
        raise SitewatchError(f"{base / 'img'}: no images")
    for image, mask in pairs:
        match = INRIA_TILE.match(image.stem)
        tile = match.group(1) if match else image.stem
        yield _binary_sample(
            image, mask, source="inria_austin", group=f"inria_austin/{tile}",
            gsd_m=NOMINAL_GSD_M["inria_austin"],
        )


def colour_mask_to_label(
    rgb: np.ndarray,
    building: tuple[int, int, int] = DUBAI_BUILDING_RGB,
    unlabeled: tuple[int, int, int] | None = DUBAI_UNLABELED_RGB,
) -> np.ndarray:
    """Turn an ``H×W×3`` colour-class mask into 0/1/255 (building / other / unlabelled)."""
    rgb = rgb.astype(np.int16)

    def near(colour: tuple[int, int, int]) -> np.ndarray:
        return np.all(np.abs(rgb - np.array(colour, np.int16)) <= _COLOUR_TOLERANCE, axis=-1)

    label = near(building).astype(np.uint8)
    if unlabeled is not None:
        label[near(unlabeled)] = IGNORE
    return label


def read_dubai(root: Path) -> Iterator[LabeledImage]:
    """Yield ``root/dubai/Tile N/images/*.jpg`` with the building class of ``masks/*.png``."""
    base = require_dir(root / "dubai", "dubai")
    for tile in subfolders(base, "'Tile N' folders"):
        for image_path, mask_path in paired(tile / "images", tile / "masks"):
            image = read_rgb(image_path)
            colours = read_picture(mask_path)
            if colours.shape[2] < 3:
                raise SitewatchError(f"{mask_path}: expected an RGB colour mask")
            label = colour_mask_to_label(colours[..., :3])
            ensure_same_size(image, label, image_path, mask_path)
            yield LabeledImage(
                name=f"{tile.name.replace(' ', '')}_{image_path.stem}", source="dubai",
                group=f"dubai/{tile.name}", image=image, label=label,
                gsd_m=NOMINAL_GSD_M["dubai"], gsd_estimated=True,
            )
