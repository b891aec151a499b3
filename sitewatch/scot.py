"""SpaceNet Change and Object Tracking (SCOT): how well buildings are tracked and their onsets found.

The SpaceNet 7 metric (Van Etten et al. 2021; reference implementation: solaris ``eval/scot.py``),
for one area seen at several dates. Ground truth and proposals are footprints with a building
``id`` that persists across dates.

* at each date, footprints are matched one to one, maximising the number of matches with
  IoU above ``threshold`` (0.25) and then their IoU (a linear assignment);
* **tracking**: matches are true positives, unmatched footprints false positives / negatives,
  and a match whose truth or proposal id was last matched to a different partner is a
  *mismatch* (it counts as one false positive and one false negative instead of a hit);
* **change detection**, from the second date on: a building that appears (an id not seen at
  any earlier date) is found when a new proposal id matches a new truth id; a new proposal
  matched to an old truth id, or unmatched, is a false positive, and a new truth id matched to
  an old proposal id, or unmatched, a false negative;
* each score is F1 = TP / (TP + (FP + FN) / 2), and SCOT = (1 + β²)·change·tracking /
  (β²·change + tracking) with β = 2 (change detection weighs four times as much).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import shapely
from scipy.optimize import linear_sum_assignment

IOU_THRESHOLD = 0.25
BETA = 2.0
_BASE_REWARD = 100.0


@dataclass(frozen=True)
class DateFootprints:
    """One date's footprints (shapely polygons in a metric CRS) and their persistent ids."""

    ids: list[int | str]
    geometries: list[shapely.Geometry]


@dataclass(frozen=True)
class ScotScores:
    """The counts and scores of SCOT (scores 0-1)."""

    tracking_tp: int
    tracking_fp: int
    tracking_fn: int
    mismatches: int
    change_tp: int
    change_fp: int
    change_fn: int
    tracking_score: float
    change_score: float
    scot: float

    def as_dict(self) -> dict[str, float | int]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def match_date(truth: DateFootprints, proposal: DateFootprints,
               threshold: float = IOU_THRESHOLD) -> list[tuple[int | str, int | str]]:
    """``(truth id, proposal id)`` pairs matched at one date: the most matches above ``threshold``,
    then the highest IoU."""
    if not truth.ids or not proposal.ids:
        return []
    truth_geoms, proposal_geoms = np.asarray(truth.geometries, object), np.asarray(proposal.geometries, object)
    t_idx, p_idx = shapely.STRtree(proposal_geoms).query(truth_geoms, predicate="intersects")
    reward = np.zeros((len(truth_geoms), len(proposal_geoms)))
    if t_idx.size:
        inter = shapely.area(shapely.intersection(truth_geoms[t_idx], proposal_geoms[p_idx]))
        union = shapely.area(shapely.union(truth_geoms[t_idx], proposal_geoms[p_idx]))
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        reward[t_idx, p_idx] = np.where(iou > threshold, _BASE_REWARD + iou, 0.0)
    rows, cols = linear_sum_assignment(reward, maximize=True)
    return [(truth.ids[r], proposal.ids[c]) for r, c in zip(rows, cols, strict=True) if reward[r, c] > 0]


def scot(truth: list[DateFootprints], proposals: list[DateFootprints], threshold: float = IOU_THRESHOLD,
         beta: float = BETA) -> ScotScores:
    """SCOT of a series (dates in order; ``truth[k]`` and ``proposals[k]`` are the same date)."""
    tp = fp = fn = change_tp = change_fp = change_fn = mismatches = 0
    seen_truth: set = set()
    seen_proposal: set = set()
    partner_of_truth: dict = {}
    partner_of_proposal: dict = {}
    for k, (true_date, proposed_date) in enumerate(zip(truth, proposals, strict=True)):
        matches = match_date(true_date, proposed_date, threshold)
        tp += len(matches)
        fp += len(proposed_date.ids) - len(matches)
        fn += len(true_date.ids) - len(matches)
        for true_id, proposed_id in matches:
            earlier = partner_of_truth.get(true_id, proposed_id) != proposed_id or \
                partner_of_proposal.get(proposed_id, true_id) != true_id
            mismatches += earlier
            partner_of_truth[true_id], partner_of_proposal[proposed_id] = proposed_id, true_id
        if k > 0:
            counts = _onsets(matches, true_date, proposed_date, seen_truth, seen_proposal)
            change_tp, change_fp, change_fn = change_tp + counts[0], change_fp + counts[1], change_fn + counts[2]
        seen_truth |= set(true_date.ids)
        seen_proposal |= set(proposed_date.ids)
    tracking = _f1(tp - mismatches, fp + mismatches, fn + mismatches)
    change = _f1(change_tp, change_fp, change_fn)
    combined = (1 + beta**2) * change * tracking / (beta**2 * change + tracking) if beta**2 * change + tracking else 0.0
    return ScotScores(tp - mismatches, fp + mismatches, fn + mismatches, mismatches, change_tp, change_fp, change_fn,
                      tracking, change, combined)


def _onsets(matches: list[tuple], truth: DateFootprints, proposal: DateFootprints, seen_truth: set,
            seen_proposal: set) -> tuple[int, int, int]:
    """Change-detection (TP, FP, FN) at one date: buildings whose id appears for the first time."""
    tp = fp = fn = 0
    for true_id, proposed_id in matches:
        new_truth, new_proposal = true_id not in seen_truth, proposed_id not in seen_proposal
        tp += new_truth and new_proposal
        fp += new_proposal and not new_truth
        fn += new_truth and not new_proposal
    matched_truth = {t for t, _ in matches}
    matched_proposal = {p for _, p in matches}
    fp += len(set(proposal.ids) - matched_proposal - seen_proposal)
    fn += len(set(truth.ids) - matched_truth - seen_truth)
    return tp, fp, fn


def _f1(tp: int, fp: int, fn: int) -> float:
    return tp / (tp + (fp + fn) / 2) if tp + (fp + fn) / 2 > 0 else 0.0
