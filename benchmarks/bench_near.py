"""Near duplicates on the real FER-2013: planted-copy recall, precision sample, speed.

Usage::

    python benchmarks/bench_near.py [FER2013_ZIP] [--sheets DIR] [--review FILE]

1. **Recall.** For every edit kind of :data:`ferclean.demo.NEAR_EDITS` the script copies
   60 real images (distinct sources, seed 2013), edits each copy (the ranges below, as
   the issue specifies them) and appends it to the dataset in *another split* than its
   source, a third of them under another label. A copy counts as found when the
   auditor's verified pairs hold (source, copy); ``group_recall`` counts it when both
   land in one near group. Flips are scored with ``mirror=True`` (the others both ways).
   Label-conflict and cross-split-leak recall (``duplicates="all"``) are reported too.
2. **Precision.** Verified pairs between two *original* FER-2013 images are the
   auditor's claims about the real data. A seeded random sample of them (the 200 pairs
   with the smallest seeded hash of their positions) is drawn as
   contact sheets (written to ``--sheets``, default ``/tmp/ferclean_near_sheets``; never
   into the repository: the images are FER-2013's) for a person to judge. The verdicts
   live in ``--review`` (default ``benchmarks/results/near_precision_review.json``:
   ``{"verdicts": {"<i>-<j>": "copy" | "different" | "unsure"}}``); the precision and
   its Wilson 95% interval are computed from them.
3. **Agreement and speed** (best of 5, wall and CPU time, on the 35,887 originals):
   hashing with :func:`ferclean.similarity.hashing.hash_images` (each method) against imagehash
   itself, image by image (bits equal? how many apart? and the time of imagehash's
   per-image loop); the 17 search hashes, the search,
   the verification, the whole auditor; and the brute-force reference, all pairs of the
   plain pHash codes by numpy popcount (imagededup's method, vectorised), against
   multi-index hashing on the same codes.

Writes ``benchmarks/results/near.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ferclean.auditors import AuditContext, CrossSplitLeakAuditor, LabelConflictAuditor
from ferclean.auditors.near import NearDuplicateAuditor
from ferclean.dataset import FaceDataset
from ferclean.demo import NEAR_EDITS
from ferclean.io import load
from ferclean.similarity.hashing import METHODS, hash_images
from ferclean.similarity.near import (
    DEFAULT_TRANSFORMS,
    NearDuplicateIndex,
    _candidates,
    near_hashes,
)
from ferclean.similarity.search import HammingIndex

HERE = Path(__file__).resolve().parent
PER_KIND = 200
SEED = 2013
SAMPLE = 200  # precision sample size
S = 48


# --------------------------------------------------------------------------- edits
def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _signed(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi) * rng.choice([-1.0, 1.0]))


def edit(kind: str, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One edited copy and a description of the edit's parameters."""
    if kind == "jpeg":
        q = int(rng.integers(30, 71))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")), f"q={q}"
    if kind == "brightness":
        d = _signed(rng, 15, 30)
        return _u8(img.astype(np.float32) + d), f"{d:+.0f}"
    if kind == "contrast":
        f = float(rng.choice([rng.uniform(0.75, 0.9), rng.uniform(1.1, 1.3)]))
        x = img.astype(np.float32)
        return _u8((x - x.mean()) * f + x.mean()), f"x{f:.2f}"
    if kind == "gamma":
        g = float(rng.choice([rng.uniform(0.7, 0.87), rng.uniform(1.15, 1.4)]))
        return _u8(255.0 * (img / 255.0) ** g), f"g={g:.2f}"
    if kind == "noise":
        s = rng.uniform(4, 8)
        return _u8(img.astype(np.float32) + rng.normal(0, s, img.shape)), f"sd={s:.1f}"
    if kind == "blur":
        s = rng.uniform(0.6, 1.0)
        return _u8(ndimage.gaussian_filter(img.astype(np.float32), s, mode="nearest")), (
            f"sigma={s:.2f}")
    if kind == "shift":
        while True:
            dy, dx = (int(v) for v in rng.integers(-3, 4, size=2))
            if dx or dy:
                break
        p = np.pad(img, 3, mode="edge")
        return p[3 - dy:3 - dy + S, 3 - dx:3 - dx + S].copy(), f"{dy:+d},{dx:+d}"
    if kind == "crop":
        c = int(rng.integers(2, 5))
        crop = Image.fromarray(img[c:S - c, c:S - c])
        return np.asarray(crop.resize((S, S), Image.Resampling.BILINEAR)), f"{c}px"
    if kind == "rotate":
        a = _signed(rng, 3, 6)
        out = ndimage.rotate(img.astype(np.float32), a, reshape=False, order=1, mode="nearest")
        return _u8(out), f"{a:+.1f}deg"
    if kind == "flip":
        return img[:, ::-1].copy(), "mirror"
    raise ValueError(kind)


def plant(ds: FaceDataset, rng: np.random.Generator) -> tuple[FaceDataset, list[dict]]:
    """The dataset with edited copies appended, and one record per copy."""
    n = len(ds)
    flat = ds.pixels.reshape(n, -1)
    # sources: not flat (a blank frame has no content to copy), not exact duplicates
    # (so the truth is one pair per copy), distinct across kinds
    ctx = AuditContext(ds)
    ok = (flat.std(axis=1) > 10) & (ctx.exact_groups.group_of < 0)
    sources = rng.choice(np.flatnonzero(ok), PER_KIND * len(NEAR_EDITS), replace=False)
    pixels, labels, splits, records = [], [], [], []
    for k, kind in enumerate(NEAR_EDITS):
        other_label = rng.permutation(np.arange(PER_KIND) < PER_KIND // 3)
        for j in range(PER_KIND):
            src = int(sources[k * PER_KIND + j])
            copy, params = edit(kind, ds.pixels[src], rng)
            split = int(rng.choice([s for s in range(3) if s != ds.splits[src]]))
            label = int(ds.labels[src])
            if other_label[j]:
                label = int(rng.choice([v for v in range(7) if v != label]))
            pixels.append(copy)
            labels.append(label)
            splits.append(split)
            records.append({"kind": kind, "source": src, "copy": n + len(records),
                            "params": params, "relabelled": bool(other_label[j])})
    planted = FaceDataset(
        np.concatenate([ds.pixels, np.stack(pixels)]),
        labels=np.concatenate([ds.labels, labels]),
        splits=np.concatenate([ds.splits, splits]),
        ids=np.concatenate([ds.ids, [f"planted-{r['kind']}-{r['source']}" for r in records]]),
    )
    return planted, records


# --------------------------------------------------------------------------- helpers
def best_of(fn, repeat: int = 5) -> dict:
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"wall_s": round(min(walls), 3), "cpu_s": round(min(cpus), 3), "result": out}


def pair_hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """A seeded pseudo-random 64-bit key per pair (splitmix64 of ``i``, ``j``, SEED)."""
    x = (i.astype(np.uint64) << np.uint64(32)) ^ j.astype(np.uint64) ^ np.uint64(SEED)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def contact_sheets(px: np.ndarray, pairs: list[tuple[int, int, float]], out: Path) -> None:
    """Pairs side by side, 4x size, 5 per row, 40 per sheet, numbered."""
    out.mkdir(parents=True, exist_ok=True)
    scale, cols, per = 4, 5, 40
    size = S * scale
    cw, ch = 2 * size + 16, size + 16
    for sheet in range(0, len(pairs), per):
        chunk = pairs[sheet:sheet + per]
        rows = -(-len(chunk) // cols)
        im = Image.new("L", (cols * cw, rows * ch), 255)
        draw = ImageDraw.Draw(im)
        for k, (i, j, sim) in enumerate(chunk):
            r, c = divmod(k, cols)
            x0, y0 = c * cw, r * ch
            im.paste(Image.fromarray(px[i]).resize((size, size), Image.NEAREST), (x0, y0 + 14))
            im.paste(Image.fromarray(px[j]).resize((size, size), Image.NEAREST),
                     (x0 + size + 4, y0 + 14))
            draw.text((x0 + 2, y0 + 1), f"{sheet + k}: {i}-{j} sim {sim:.3f}", fill=0)
        im.save(out / f"precision_{sheet // per:02d}.png")


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=os.environ.get(
        "FERCLEAN_DATA", str(HERE.parent.parent / "shared/data/fer2013.zip")))
    parser.add_argument("--sheets", default="/tmp/ferclean_near_sheets")
    parser.add_argument("--review", default=str(HERE / "results/near_precision_review.json"))
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    load_avg = os.getloadavg()
    ds = load(args.data)
    n = len(ds)
    result: dict = {"benchmark": "near_duplicates", "images": n,
                    "machine": {"python": platform.python_version(), "numpy": np.__version__,
                                "cpus": os.cpu_count(), "load_avg_at_start": load_avg},
                    "defaults": {"radius": 8, "similarity": 0.97,
                                 "transforms": [t.describe() for t in DEFAULT_TRANSFORMS]}}

    # ---- recall on planted copies
    rng = np.random.default_rng(SEED)
    planted, records = plant(ds, rng)
    recall: dict = {}
    for mirror in (False, True):
        ctx = AuditContext(planted)
        auditor = NearDuplicateAuditor(mirror=mirror)
        auditor.audit(planted, ctx)
        pairs = set(zip(auditor.pairs_.i.tolist(), auditor.pairs_.j.tolist(), strict=True))
        group = auditor.groups_.group_of
        conflicts = LabelConflictAuditor(duplicates="all")
        conflicts.audit(planted, ctx)
        leaks = CrossSplitLeakAuditor(duplicates="all")
        leaks.audit(planted, ctx)

        def in_near(groups, a, b):
            return any(g == "near" and a in m and b in m for g, m in groups)

        for kind in NEAR_EDITS:
            recs = [r for r in records if r["kind"] == kind]
            found = [(r["source"], r["copy"]) in pairs for r in recs]
            grouped = [group[r["source"]] >= 0 and group[r["source"]] == group[r["copy"]]
                       for r in recs]
            missed = [{"source": r["source"], "params": r["params"]}
                      for r, f in zip(recs, found, strict=True) if not f]
            conflict_recs = [r for r in recs if r["relabelled"]]
            entry = {
                "copies": len(recs),
                "recall": round(float(np.mean(found)), 4),
                "group_recall": round(float(np.mean(grouped)), 4),
                "leak_recall": round(float(np.mean(
                    [in_near(leaks.groups_, r["source"], r["copy"]) for r in recs])), 4),
                "conflict_recall": round(float(np.mean(
                    [in_near(conflicts.groups_, r["source"], r["copy"])
                     for r in conflict_recs])), 4),
                "missed": missed,
            }
            recall.setdefault("mirror" if mirror else "default", {})[kind] = entry
        print("mirror" if mirror else "default",
              {k: v["recall"] for k, v in recall["mirror" if mirror else "default"].items()},
              flush=True)
        if not mirror:
            original = auditor.pairs_[(auditor.pairs_.i < n) & (auditor.pairs_.j < n)]
            result["original_pairs"] = {
                "verified_pairs": int(len(original)),
                "images_in_pairs": int(len(set(original.i) | set(original.j))),
            }
    result["recall"] = recall
    result["recall_summary"] = {
        kind: recall["mirror" if kind == "flip" else "default"][kind]["recall"]
        for kind in NEAR_EDITS}

    # ---- precision sample among original images (default settings)
    ctx = AuditContext(ds)
    auditor = NearDuplicateAuditor()
    auditor.audit(ds, ctx)
    pairs = auditor.pairs_
    # a uniform random sample that stays put when a few pairs come or go: the pairs
    # with the smallest seeded hash of (i, j)
    sample = pairs.iloc[np.sort(np.argsort(pair_hash(pairs.i.to_numpy(), pairs.j.to_numpy()),
                                           kind="stable")[:SAMPLE])]
    sample_pairs = [(int(a), int(b), float(s)) for a, b, s in zip(
        sample.i, sample.j, sample.similarity, strict=True)]
    contact_sheets(ds.pixels, sample_pairs, Path(args.sheets))
    precision: dict = {"verified_pairs": int(len(pairs)), "sample_size": len(sample_pairs),
                       "sample_seed": SEED, "sheets": args.sheets,
                       "sample_similarity_quantiles": {
                           q: round(float(sample.similarity.quantile(q)), 4)
                           for q in (0.0, 0.1, 0.5)} if len(sample) else {},
                       "sample": [f"{a}-{b}" for a, b, _ in sample_pairs],
                       "similarity_quantiles": {
                           q: round(float(pairs.similarity.quantile(q)), 4)
                           for q in (0.01, 0.1, 0.5)} if len(pairs) else {}}
    review = Path(args.review)
    if review.exists():
        verdicts = json.loads(review.read_text())["verdicts"]
        judged = [verdicts.get(k) for k in precision["sample"]]
        copies = sum(v == "copy" for v in judged)
        different = sum(v == "different" for v in judged)
        unsure = sum(v == "unsure" for v in judged)
        missing = sum(v is None for v in judged)
        decided = copies + different
        precision.update({
            "judged_copy": copies, "judged_different": different, "judged_unsure": unsure,
            "not_judged": missing,
            "precision": round(copies / decided, 4) if decided else None,
            "precision_wilson95": wilson(copies, decided),
            "precision_unsure_as_wrong": round(copies / max(decided + unsure, 1), 4),
        })
    result["precision"] = precision
    print("precision", {k: v for k, v in precision.items() if k != "sample"}, flush=True)

    # ---- speed on the originals
    if not args.skip_speed:
        # agreement with imagehash itself on every image, and its per-image loop's time
        import imagehash

        reference = {"ahash": imagehash.average_hash, "dhash": imagehash.dhash,
                     "phash": imagehash.phash, "whash": imagehash.whash}
        agreement: dict = {}
        for method, fn in reference.items():
            t, c = time.perf_counter(), time.process_time()
            ref = [int(str(fn(Image.fromarray(p))), 16) for p in ds.pixels]
            loop = {"wall_s": round(time.perf_counter() - t, 3),
                    "cpu_s": round(time.process_time() - c, 3)}
            ours = hash_images(ds.pixels, method)
            bits = np.array([bin(int(a) ^ b).count("1") for a, b in zip(ours, ref, strict=True)])
            agreement[method] = {"images": n, "identical": int((bits == 0).sum()),
                                 "max_bits_apart": int(bits.max()),
                                 "imagehash_loop": loop}
        result["imagehash_agreement"] = agreement
        print("agreement", agreement, flush=True)
        speed: dict = {}
        for method in METHODS:
            speed[f"hash_images_{method}"] = {
                k: v for k, v in best_of(lambda m=method: hash_images(ds.pixels, m)).items()
                if k != "result"}
        t = best_of(lambda: near_hashes(ds.pixels))
        codes = t.pop("result")
        speed["near_hashes_17_transforms"] = t
        t = best_of(lambda: _candidates(HammingIndex(radius=8).fit(codes[:, 0]), codes, 8,
                                        self_join=True))
        speed["search_17_transforms_mih"] = {k: v for k, v in t.items() if k != "result"}
        speed["search_hits"] = int(len(t["result"][0]))
        index = NearDuplicateIndex().fit(ds.pixels)
        t = best_of(lambda: index.pairs())
        speed["search_and_verification"] = {k: v for k, v in t.items() if k != "result"}
        t = best_of(lambda: NearDuplicateAuditor().audit(ds, AuditContext(ds)))
        speed["near_auditor_total"] = {k: v for k, v in t.items() if k != "result"}
        # the trade-off behind the default radius: 6 is faster, and finds fewer copies
        index6 = NearDuplicateIndex(radius=6).fit(ds.pixels)
        t = best_of(lambda: index6.pairs())
        found6 = t.pop("result")
        speed["search_and_verification_radius_6"] = t
        speed["verified_near_pairs_radius_6"] = int((found6.kind != "exact").sum())
        speed["verified_near_pairs_radius_8"] = int((index.pairs().kind != "exact").sum())
        plain = hash_images(ds.pixels, "phash")
        t = best_of(lambda: HammingIndex(radius=8, backend="brute").fit(plain).pairs(), 1)
        brute_pairs = t.pop("result")
        speed["reference_brute_force_plain_phash_r8"] = t
        t = best_of(lambda: HammingIndex(radius=8).fit(plain).pairs())
        mih_pairs = t.pop("result")
        speed["mih_plain_phash_r8"] = t
        assert all(np.array_equal(a, b) for a, b in zip(brute_pairs, mih_pairs, strict=True))
        speed["plain_phash_pairs_r8"] = int(len(mih_pairs))
        speed["ratios"] = {
            **{f"imagehash_loop_over_hash_images_{m}": round(
                agreement[m]["imagehash_loop"]["wall_s"] / speed[f"hash_images_{m}"]["wall_s"], 1)
               for m in METHODS},
            "brute_over_mih_plain_phash": round(
                speed["reference_brute_force_plain_phash_r8"]["wall_s"]
                / speed["mih_plain_phash_r8"]["wall_s"], 1),
            "brute_plain_over_near_search_and_verification": round(
                speed["reference_brute_force_plain_phash_r8"]["wall_s"]
                / speed["search_and_verification"]["wall_s"], 2),
        }
        result["speed"] = speed
        print("speed", json.dumps(speed), flush=True)

    out = HERE / "results" / "near.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
