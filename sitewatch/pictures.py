"""Pictures for the report: a raster window with outlines, building ids, a scale bar, a north arrow
and its date, as a PNG data URI (so the report is one self-contained file).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from PIL import Image, ImageDraw, ImageFont
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from sitewatch.raster import ground_pixel_size_m

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


@dataclass(frozen=True)
class Outline:
    """Polygons to draw (in the raster's CRS): colour, line width in picture pixels, ids or not
    (the ``id_column`` value after ``id_prefix``)."""

    frame: gpd.GeoDataFrame
    colour: tuple[int, int, int]
    width: int = 2
    ids: bool = False
    id_column: str = "change_id"
    id_prefix: str = ""


@dataclass(frozen=True)
class Picture:
    """A captioned picture: title and PNG data URI."""

    title: str
    uri: str


def picture(raster: Path, window: Window | None, max_px: int, outlines: list[Outline], label: str,
            title: str) -> Picture:
    """A window of ``raster`` (whole when None), at most ``max_px`` a side (small ones enlarged),
    with ``outlines``, a scale bar, a north arrow and ``label`` (its date) drawn on it."""
    image, transform, crs = _read(raster, window, max_px)
    draw = ImageDraw.Draw(image)
    for outline in outlines:
        _outline(draw, transform, outline)
    _scale_bar(draw, image.size, transform, crs)
    _north_arrow(draw, image.size)
    _label(draw, (6, 6), label)
    return Picture(title, data_uri(image))


def crop_window(raster: Path, bounds: tuple[float, float, float, float], margin: float) -> Window:
    """The window around ``bounds`` (raster CRS) with ``margin`` of its size and 10 pixels around."""
    with rasterio.open(raster) as dataset:
        left, bottom, right, top = bounds
        pad = max(right - left, top - bottom) * margin + 10 * abs(dataset.transform.a)
        window = from_bounds(left - pad, bottom - pad, right + pad, top + pad, dataset.transform)
        return window.round_offsets().round_lengths()


def data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _read(path: Path, window: Window | None, max_px: int) -> tuple[Image.Image, rasterio.Affine, object]:
    """RGB picture of a raster window with its transform and CRS (2-98 % stretch if not 8-bit)."""
    with rasterio.open(path) as dataset:
        window = (window or Window(0, 0, dataset.width, dataset.height)).intersection(
            Window(0, 0, dataset.width, dataset.height))
        scale = max(0.25, max(window.width, window.height) / max_px)  # small sites are enlarged
        shape = (max(1, int(window.height / scale)), max(1, int(window.width / scale)))
        bands = [1, 2, 3] if dataset.count >= 3 else [1, 1, 1]
        pixels = dataset.read(bands, window=window, out_shape=(3, *shape), resampling=Resampling.average)
        transform = dataset.window_transform(window) @ rasterio.Affine.scale(window.width / shape[1],
                                                                             window.height / shape[0])
        crs = dataset.crs
    if pixels.dtype != np.uint8:
        finite = np.isfinite(pixels)
        low, high = np.percentile(pixels[finite], [2, 98]) if finite.any() else (0.0, 1.0)
        pixels = np.where(finite, np.clip((pixels - low) / max(high - low, 1e-6) * 255, 0, 255), 0)
    return Image.fromarray(np.moveaxis(pixels.astype(np.uint8), 0, -1)), transform, crs


def _outline(draw: ImageDraw.ImageDraw, transform: rasterio.Affine, outline: Outline) -> None:
    inverse = ~transform
    for row in outline.frame.itertuples():
        geometry = row.geometry
        parts = [geometry] if geometry.geom_type == "Polygon" else list(getattr(geometry, "geoms", []))
        for polygon in parts:
            points = [inverse @ (x, y) for x, y in np.asarray(polygon.exterior.coords)[:, :2]]
            if len(points) >= 3:
                draw.line(points + [points[0]], fill=outline.colour, width=outline.width)
        if outline.ids and hasattr(row, outline.id_column):
            anchor = geometry.representative_point()
            text = f"{outline.id_prefix}{int(getattr(row, outline.id_column))}"
            _label(draw, inverse @ (anchor.x, anchor.y), text, small=True)


def _font(small: bool) -> ImageFont.ImageFont:
    # ids at 16 px of a 900 px picture: about 8-9 px high where the report shows two pictures side by side
    return ImageFont.load_default(size=16 if small else 18)


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, small: bool = False) -> None:
    """Text on a white box with a black edge, readable on any image."""
    left, top, right, bottom = draw.textbbox(xy, text, font=_font(small))
    draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=WHITE, outline=BLACK)
    draw.text(xy, text, fill=BLACK, font=_font(small))


def _scale_bar(draw: ImageDraw.ImageDraw, size: tuple[int, int], transform: rasterio.Affine, crs) -> None:
    """A bar of a round length (1, 2 or 5 × 10ⁿ m) at most a quarter of the picture wide."""
    if crs is None:
        return
    metres_per_px = ground_pixel_size_m(crs, transform, *size)
    longest = size[0] / 4 * metres_per_px
    length = max(v for v in _round_lengths(longest) if v <= longest)
    px = length / metres_per_px
    x0, y0 = 8, size[1] - 14
    draw.rectangle((x0 - 3, y0 - 18, x0 + px + 3, y0 + 7), fill=WHITE, outline=BLACK)
    draw.rectangle((x0, y0, x0 + px, y0 + 4), fill=BLACK)
    draw.text((x0, y0 - 16), f"{length:g} m", fill=BLACK, font=_font(True))


def _round_lengths(longest: float) -> list[float]:
    exponent = math.floor(math.log10(max(longest, 1e-3)))
    return [m * 10.0 ** e for e in range(exponent - 1, exponent + 1) for m in (1, 2, 5)]


def _north_arrow(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    """Grid north, up (every picture is of a north-up raster grid)."""
    x, y = size[0] - 18, 8
    draw.rectangle((x - 10, y - 2, x + 10, y + 30), fill=WHITE, outline=BLACK)
    draw.polygon([(x, y), (x - 6, y + 12), (x + 6, y + 12)], fill=BLACK)
    draw.text((x - 4, y + 14), "N", fill=BLACK, font=_font(True))


@dataclass(frozen=True)
class MapImage:
    """One date's picture warped to Web Mercator for the report's map, with its lat/lon bounds."""

    date: str
    uri: str
    bounds: list[list[float]]  # [[south, west], [north, east]] degrees


def map_image(raster: Path, date: str, max_px: int = 1024) -> MapImage:
    """The raster warped to EPSG:3857 (what the map draws in), nodata transparent, at most ``max_px``."""
    with rasterio.open(raster) as dataset:
        west, south, east, north = transform_bounds(dataset.crs, "EPSG:3857", *dataset.bounds, densify_pts=21)
        scale = max(east - west, north - south) / max_px
        width, height = max(1, round((east - west) / scale)), max(1, round((north - south) / scale))
        transform = rasterio.Affine(scale, 0, west, 0, -scale, north)
        bands = [1, 2, 3] if dataset.count >= 3 else [1, 1, 1]
        rgb = np.zeros((3, height, width), np.float32)
        for k, band in enumerate(bands):
            reproject(rasterio.band(dataset, band), rgb[k], dst_transform=transform, dst_crs="EPSG:3857",
                      resampling=Resampling.average, dst_nodata=np.nan)
    valid = np.isfinite(rgb).all(axis=0)
    if dataset.dtypes[0] != "uint8" and valid.any():
        low, high = np.percentile(rgb[:, valid], [2, 98])
        rgb = (rgb - low) / max(high - low, 1e-6) * 255
    pixels = np.dstack([np.clip(np.nan_to_num(rgb), 0, 255).transpose(1, 2, 0), valid * 255]).astype(np.uint8)
    (lon0, lat0), (lon1, lat1) = (Transformer.from_crs(3857, 4326, always_xy=True).transform(x, y)
                                  for x, y in ((west, south), (east, north)))
    return MapImage(date, data_uri(Image.fromarray(pixels, "RGBA")), [[lat0, lon0], [lat1, lon1]])
