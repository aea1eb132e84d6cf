"""Peak memory of ``ferclean audit`` on hostile inputs (zip bombs, a huge ``.jpg``) vs normal ones.

Usage::

    python benchmarks/bench_hostile.py [--n-faces 2500] [--bomb-gib 2]

Builds, in a temporary folder, the demo data (``--n-faces`` faces: 2,782 images by
default, enough for the reader to decode in worker processes) as a PNG zip and as a
folder, then the hostile copies the issue reported:

- ``zip_one_bomb``: the zip plus one entry of ``--bomb-gib`` GiB of zeros, deflated to a
  few MB (written in 1 MiB chunks; it never exists inflated);
- ``zip_two_bombs``: two such entries, sorted far apart so that two decode workers each
  meet one (the case that reached 7.4 GB);
- ``folder_huge_jpg``: the folder plus a sparse file of ``--bomb-gib`` GiB named ``.jpg``
  (it takes no disk space).

Each case runs ``ferclean audit PATH --on-bad skip`` in a fresh interpreter. Memory is
sampled every 10 ms as the RSS summed over the process and its decode workers (forked
workers share pages with their parent, so the sum overcounts: a pessimistic figure), and
read from the kernel's high-water marks (the main process's ``VmHWM``; the largest
worker's ``ru_maxrss``). Ratios compare each hostile case with the normal audit of the
same form. Writes ``benchmarks/results/hostile.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from ferclean.demo import demo_dataset  # noqa: E402
from ferclean.io import save  # noqa: E402
from ferclean.io.folder import MAX_IMAGE_BYTES, read_folder  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "hostile.json"
# Sorted first and last among the demo's entries: the reader's chunks put them in
# different workers.
BOMB_NAMES = ("test/angry/PrivateTest_0000bomb.jpg", "train/surprise/Training_zzzzbomb.jpg")

_AUDIT_CODE = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from ferclean.cli import main

code = main(["audit", {path!r}, "--on-bad", "skip", "--out", {out!r}])
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({{"exit": code, "main_hwm_kib": hwm,
                  "worker_max_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}))
"""


def add_zero_entry(path: Path, name: str, n_bytes: int) -> None:
    """Append a deflated entry of ``n_bytes`` zeros, streamed in 1 MiB chunks."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "a") as zf, zf.open(info, "w", force_zip64=True) as fh:
        for _ in range(n_bytes >> 20):
            fh.write(chunk)


def tree_rss_kib(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, from /proc (0 once they are gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f
                               if line.startswith("VmRSS:")), 0)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def run_audit(path: Path, out: Path) -> dict[str, Any]:
    code = _AUDIT_CODE.format(repo=str(REPO), path=str(path), out=str(out))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.01)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"audit of {path} failed ({proc.returncode}):\n{stderr}")
    status = json.loads(stdout.strip().splitlines()[-1])
    return {
        "exit_code": status["exit"],
        "wall_s": round(wall, 2),
        "peak_tree_rss_mib": round(peak / 1024, 1),
        "peak_main_hwm_mib": round(status["main_hwm_kib"] / 1024, 1),
        "peak_worker_mib": round(status["worker_max_kib"] / 1024, 1),
        "stderr_last_line": stderr.strip().splitlines()[-1] if stderr.strip() else "",
    }


def build(work: Path, n_faces: int, bomb_bytes: int) -> dict[str, Path]:
    ds = demo_dataset(n_faces=n_faces)
    paths = {"zip": save(ds, work / "demo.zip", image_format="png"),
             "folder": save(ds, work / "demo", image_format="png")}
    one = work / "one_bomb.zip"
    shutil.copyfile(paths["zip"], one)
    add_zero_entry(one, BOMB_NAMES[0], bomb_bytes)
    two = work / "two_bombs.zip"
    shutil.copyfile(one, two)
    add_zero_entry(two, BOMB_NAMES[1], bomb_bytes)
    huge = work / "huge_jpg"
    shutil.copytree(paths["folder"], huge)
    with open(huge / BOMB_NAMES[0], "wb") as fh:
        fh.truncate(bomb_bytes)  # sparse: no disk used
    return {"zip": paths["zip"], "zip_one_bomb": one, "zip_two_bombs": two,
            "folder": paths["folder"], "folder_huge_jpg": huge}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-faces", type=int, default=2500)
    parser.add_argument("--bomb-gib", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON result file")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        parser.error("this benchmark reads /proc (Linux)")
    bomb_bytes = int(args.bomb_gib * 2**30) >> 20 << 20

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        inputs = build(work, args.n_faces, bomb_bytes)
        print(f"built inputs in {time.perf_counter() - started:.0f} s: "
              + ", ".join(f"{k} {_size(p)}" for k, p in inputs.items()), flush=True)
        cases: dict[str, Any] = {}
        for name, path in inputs.items():
            result = run_audit(path, work / f"audit-{name}")
            dropped = read_folder(path, on_bad="skip").dropped
            result.update(input_bytes_on_disk=_disk_bytes(path), n_dropped=len(dropped),
                          dropped_reasons=dropped.reason.tolist())
            cases[name] = result
            print(f"{name:16s} peak tree RSS {result['peak_tree_rss_mib']:7.1f} MiB  main "
                  f"{result['peak_main_hwm_mib']:6.1f}  worker {result['peak_worker_mib']:6.1f}"
                  f"  {result['wall_s']:5.1f} s  dropped {len(dropped)}", flush=True)
    for name, result in cases.items():
        base = cases["zip" if name.startswith("zip") else "folder"]
        result["ratio_tree_rss_vs_normal"] = round(
            result["peak_tree_rss_mib"] / base["peak_tree_rss_mib"], 3)
        result["ratio_main_vs_normal"] = round(
            result["peak_main_hwm_mib"] / base["peak_main_hwm_mib"], 3)
    for name in ("zip_one_bomb", "zip_two_bombs", "folder_huge_jpg"):
        print(f"{name}: {cases[name]['ratio_tree_rss_vs_normal']:.3f}x the normal audit's "
              f"peak tree RSS ({cases[name]['ratio_main_vs_normal']:.3f}x main)")

    result = {
        "benchmark": "hostile",
        "command": "ferclean audit PATH --on-bad skip",
        "n_faces": args.n_faces,
        "n_images": len(demo_dataset(n_faces=args.n_faces)),
        "bomb_bytes": bomb_bytes,
        "max_image_bytes": MAX_IMAGE_BYTES,
        "cases": cases,
        "reported_before_fix": {"zip_one_bomb_gb": 4.4, "zip_two_bombs_gb": 7.4},
        "hardware": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def _disk_bytes(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def _size(path: Path) -> str:
    return f"{_disk_bytes(path) / 2**20:.1f} MiB on disk"


if __name__ == "__main__":
    raise SystemExit(main())
