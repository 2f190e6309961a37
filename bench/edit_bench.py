"""Edit-annotation metrics benchmark: pairs/s of ssim, lpips and emd through the batched SQL functions against
one pair at a time in a Python loop with the reference libraries, on 512x512 pairs, measured in one run.

Both sides do the same work per pair: decode the two PNGs, build the unedited mask from the box, compute the
metric as REFERENCE.md §3 defines it.

  loop  skimage.metrics.structural_similarity(full=True) and the masked mean of its cropped map; lpips.LPIPS
        (AlexNet) on the composite against the source; open_clip ViT-B/32 patch tokens of both images, then
        ot.dist + ot.emd2. The LPIPS and CLIP backbones are randomly initialised with torch.manual_seed(0) on
        both sides (no weights are downloaded): same architecture and cost, the same numbers on both sides.
  udf   `select ssim(a, b, boxes) from pairs` and unedit_area(a, b, boxes, ['lpips'|'emd'], 'random') through
        DuckDB with the dataproj runtime, memoised images and patch tokens cleared before every run.
  ot    the EMD's optimal-transport stage alone on precomputed 49x768 token sets (40 edited patches kept): the
        loop's ot.dist + ot.emd2 per pair against the function's cost + ot.emd2 (goal: no slower).

Layouts: `grouped` (default) is the pipeline's shape, three edits of each source, so a source's AlexNet
features and CLIP tokens are computed once for its three pairs; `distinct` gives every pair its own source.

Each round runs every measurement once, in turn; the printed numbers are medians over rounds, each ratio the
median of per-round ratios (the machine is shared and noisy). Values are compared pair by pair: SSIM within
1e-4 absolute, LPIPS and EMD within 1e-4 relative. Goals: SSIM >= 3x, LPIPS >= 1.2x, EMD >= 1x.

Usage: python bench/edit_bench.py [ssim|lpips|emd|ot|all ...] [--pairs 24] [--rounds 3] [--size 512]
       [--layout grouped|distinct|both] [--write bench/RESULTS_edit.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / ".work" / "edit_bench"
SCENES = sorted((REPO / "seeds" / "scenes").rglob("scene_*.png"))
GOALS = {"ssim": 3.0, "lpips": 1.2, "emd": 1.0, "ot": 1.0}


@dataclass(frozen=True)
class Pair:
    source: str
    edited: str
    box: tuple[int, int, int, int]


# ---- data --------------------------------------------------------------------------------------------------


def make_pairs(count: int, size: int, layout: str) -> list[Pair]:
    """512x512 pairs from the sample scenes: a pasted patch (the edit) plus, for two of every three, a blur or
    a colour cast of the background."""
    folder = WORK / f"{layout}_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        source_index = index // 3 if layout == "grouped" else index
        scene = SCENES[(source_index * 7) % len(SCENES)]
        source_path = folder / f"source_{source_index:03d}.png"
        with Image.open(scene) as opened:
            source = opened.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        if not source_path.exists():
            source.save(source_path)
        box = (size // 4 + 8 * (index % 3), size // 3, size // 2 + 8 * (index % 3), size // 2 + size // 6)
        edited = source.copy()
        edited.paste((200, 40, 40), box)
        if index % 3 == 1:
            edited = edited.filter(ImageFilter.GaussianBlur(2))
        elif index % 3 == 2:
            edited = Image.fromarray(np.clip(np.asarray(edited, dtype=int) + (18, -10, 12), 0, 255).astype(np.uint8))
        edited_path = folder / f"edited_{index:03d}.png"
        edited.save(edited_path)
        pairs.append(Pair(str(source_path), str(edited_path), box))
    return pairs


def load(pair: Pair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with Image.open(pair.source) as s, Image.open(pair.edited) as e:
        source = np.asarray(s.convert("RGB"))
        edited_image = e.convert("RGB")
        if edited_image.size != s.size:
            edited_image = edited_image.resize(s.size, Image.Resampling.BICUBIC)
        edited = np.asarray(edited_image)
    mask = np.ones(source.shape[:2], dtype=np.float32)
    x1, y1, x2, y2 = pair.box
    mask[y1:y2, x1:x2] = 0
    return source, edited, mask


# ---- the reference loop --------------------------------------------------------------------------------------


def loop_ssim(pairs: list[Pair]) -> list[float]:
    from skimage.metrics import structural_similarity

    values = []
    for pair in pairs:
        source, edited, mask = load(pair)
        _, full = structural_similarity(source, edited, win_size=11, gaussian_weights=True, sigma=1.5,
                                        data_range=255, channel_axis=2, full=True)
        values.append(float(full[5:-5, 5:-5][mask[5:-5, 5:-5] == 1].mean()))
    return values


class Reference:
    """The reference libraries' models, made exactly as dataproj.vision.models makes the random ones."""

    def __init__(self) -> None:
        import lpips
        import open_clip
        import torch

        torch.manual_seed(0)
        self.lpips = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
        torch.manual_seed(0)
        self.clip, _, self.preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
        self.clip.eval()
        self.visual = self.clip.visual
        self.visual.output_tokens = True  # this instance only: (pooled, tokens)

    def tokens(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            _, tokens = self.visual(self.preprocess(Image.fromarray(pixels))[None])
        return tokens[0].numpy().astype(np.float64)


def loop_lpips(pairs: list[Pair], ref: Reference) -> list[float]:
    import torch

    values = []
    with torch.no_grad():
        for pair in pairs:
            source, edited, mask = load(pair)
            s = torch.from_numpy(source.copy()).permute(2, 0, 1).float()[None] / 127.5 - 1
            e = torch.from_numpy(edited.copy()).permute(2, 0, 1).float()[None] / 127.5 - 1
            m = torch.from_numpy(mask)
            values.append(float(ref.lpips(e * m + s * (1 - m), s)) / float(mask.mean()))
    return values


def loop_emd(pairs: list[Pair], ref: Reference) -> list[float]:
    import ot

    from dataproj.vision.emd import EMD_MIN_UNEDITED, patch_unedited_fractions

    values = []
    for pair in pairs:
        source, edited, mask = load(pair)
        keep = patch_unedited_fractions(mask, 224, 32) > EMD_MIN_UNEDITED
        xs, xt = ref.tokens(source), ref.tokens(edited)[keep]
        values.append(float(ot.emd2(np.full(len(xs), 1 / len(xs)), np.full(len(xt), 1 / len(xt)), ot.dist(xs, xt))))
    return values


# ---- the SQL functions ---------------------------------------------------------------------------------------


class Functions:
    """A DuckDB connection with the dataproj runtime's functions and a `pairs` table."""

    def __init__(self, pairs: list[Pair]) -> None:
        import pyarrow as pa

        self.table = pa.table({"i": list(range(len(pairs))), "a": [p.source for p in pairs],
                               "b": [p.edited for p in pairs], "boxes": [[list(map(float, p.box))] for p in pairs]})
        self.runtime: Any = None
        self.reset()

    def reset(self) -> None:
        """A new runtime with an empty call cache: unedit_area() is cached, and a repeat must compute again."""
        import duckdb

        from dataproj.runtime.registry import builtin_specs
        from dataproj.runtime.runtime import Runtime

        if self.runtime is not None:
            self.close()
        cache = WORK / "calls.duckdb"
        cache.unlink(missing_ok=True)
        self.runtime = Runtime(REPO, builtin_specs(), cache)
        self.con = duckdb.connect()
        self.runtime.register(self.con)
        self.runtime.begin_node(self.con, "edit_bench")
        self.con.register("pairs_arrow", self.table)
        self.con.execute("create table pairs as select i, a, b, boxes::double[][] as boxes from pairs_arrow")

    def run(self, metric: str) -> list[float]:
        from dataproj.vision.emd import clear_memo

        clear_memo()
        call = ("ssim(a, b, boxes)" if metric == "ssim"
                else f"unedit_area(a, b, boxes, ['{metric}'], 'random').{metric}")
        return [row[1] for row in self.con.execute(f"select i, {call} from pairs order by i").fetchall()]

    def close(self) -> None:
        self.con.close()
        self.runtime.close()


# ---- the optimal-transport stage alone -------------------------------------------------------------------------


TokenSet = tuple[np.ndarray, np.ndarray, np.ndarray]  # source tokens, edited tokens, kept edited patches


def token_sets(count: int) -> list[TokenSet]:
    """49x768 source and edited token sets, 40 of the edited patches kept (as in a pair with a small box)."""
    rng = np.random.default_rng(0)
    keep = np.arange(49) >= 9
    return [(rng.standard_normal((49, 768)).astype(np.float32), rng.standard_normal((49, 768)).astype(np.float32),
             keep) for _ in range(count)]


def ot_loop(sets: list[TokenSet]) -> list[float]:
    import ot

    out = []
    for xs, xt, keep in sets:
        kept = xt[keep].astype(np.float64)
        a, b = np.full(len(xs), 1 / len(xs)), np.full(len(kept), 1 / len(kept))
        out.append(float(ot.emd2(a, b, ot.dist(xs.astype(np.float64), kept))))
    return out


def ot_function(sets: list[TokenSet]) -> list[float]:
    from dataproj.vision.emd import earth_movers_distances

    return earth_movers_distances([s[0] for s in sets], [s[1] for s in sets], [s[2] for s in sets])


# ---- measuring ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    metric: str
    layout: str
    pairs: int
    loop_rate: list[float]
    udf_rate: list[float]
    ratios: list[float]
    max_diff: float
    relative: bool

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    def row(self) -> str:
        diff = f"{self.max_diff:.1e} {'rel' if self.relative else 'abs'}"
        goal = GOALS[self.metric]
        verdict = "met" if self.ratio >= goal else "missed"
        return (f"| {self.metric} | {self.layout} | {self.pairs} | {statistics.median(self.loop_rate):.1f} | "
                f"{statistics.median(self.udf_rate):.1f} | {self.ratio:.2f}x | >= {goal}x ({verdict}) | {diff} |")


def timed(fn: Callable[[], list[float]]) -> tuple[float, list[float]]:
    started = time.perf_counter()
    values = fn()
    return time.perf_counter() - started, values


def compare(loop_values: list[float], udf_values: list[Any], relative: bool) -> float:
    worst = 0.0
    for expected, got in zip(loop_values, udf_values, strict=True):
        if got is None:
            return float("inf")
        diff = abs(expected - got)
        worst = max(worst, diff / max(abs(expected), 1e-6) if relative else diff)
    return worst


def measure(metrics: list[str], layout: str, count: int, size: int, rounds: int) -> list[Result]:
    pairs = make_pairs(count, size, layout)
    functions = Functions(pairs)
    ref = Reference() if {"lpips", "emd"} & set(metrics) else None
    loops: dict[str, Callable[[], list[float]]] = {
        "ssim": lambda: loop_ssim(pairs), "lpips": lambda: loop_lpips(pairs, ref),  # type: ignore[arg-type]
        "emd": lambda: loop_emd(pairs, ref)}  # type: ignore[arg-type]
    sets = token_sets(count * 20)
    results = {m: Result(m, layout if m != "ot" else "49x768 tokens", len(sets) if m == "ot" else count, [], [], [],
                         0.0, m != "ssim") for m in metrics}
    for metric in metrics:  # warm-up: imports, models, first-call costs
        if metric == "ot":
            ot_loop(sets[:5]), ot_function(sets[:5])
        else:
            functions.run(metric)
    for round_number in range(rounds):
        for metric in metrics:
            if metric == "ot":
                loop_s, expected = timed(lambda: ot_loop(sets))
                udf_s, got = timed(lambda: ot_function(sets))
            else:
                loop_s, expected = timed(loops[metric])
                functions.reset()
                udf_s, got = timed(lambda metric=metric: functions.run(metric))
            result = results[metric]
            n = result.pairs
            result.loop_rate.append(n / loop_s)
            result.udf_rate.append(n / udf_s)
            result.ratios.append(loop_s / udf_s)
            result.max_diff = max(result.max_diff, compare(expected, got, result.relative))
            print(f"  round {round_number + 1} {metric:5s} {layout:8s} loop {n / loop_s:8.1f} pairs/s   "
                  f"udf {n / udf_s:8.1f} pairs/s   ratio {loop_s / udf_s:5.2f}", flush=True)
    functions.close()
    return list(results.values())


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        "# Edit-annotation metrics benchmark (bench/edit_bench.py)",
        "",
        f"`python bench/edit_bench.py {' '.join(args.sections)} --pairs {args.pairs} --rounds {args.rounds} "
        f"--size {args.size} --layout {args.layout}`, {time.strftime('%Y-%m-%d')}, {platform.platform()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average before the run "
        f"{args.load_before:.1f} (a shared machine). Pairs/s are medians over rounds; the ratio is the median of "
        "per-round ratios (loop time / function time).",
        "",
        "| metric | layout | pairs | loop pairs/s | function pairs/s | ratio | goal | max value difference |",
        "|---|---|---|---|---|---|---|---|",
        *(r.row() for r in results),
        "",
        "loop: one pair at a time with skimage / lpips / open_clip + POT, decoding both PNGs per pair; function: the "
        "batched SQL functions through DuckDB (ssim(); unedit_area(..., 'random') for lpips and emd, the code path "
        "of lpips() and emd() with a randomly initialised backbone), memoised images and tokens cleared before "
        "every run. grouped: three edits per source (the pipeline's shape); distinct: one pair per source. ot: the "
        "optimal-transport stage alone: ot.dist + ot.emd2 vs the function's cost + ot.emd2, per pair.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sections", nargs="*", help="ssim, lpips, emd, ot or all (default)")
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--layout", choices=["grouped", "distinct", "both"], default="both")
    parser.add_argument("--write", type=Path, default=None, help="write the results table (e.g. bench/RESULTS_edit.md)")
    args = parser.parse_args(argv)
    args.sections = args.sections or ["all"]
    unknown = set(args.sections) - {"ssim", "lpips", "emd", "ot", "all"}
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}: use ssim, lpips, emd, ot or all")
    metrics = ["ssim", "lpips", "emd", "ot"] if "all" in args.sections else args.sections
    args.load_before = os.getloadavg()[0]
    sys.path.insert(0, str(REPO / "src"))
    results: list[Result] = []
    layouts = ["grouped", "distinct"] if args.layout == "both" else [args.layout]
    for index, layout in enumerate(layouts):
        # ssim and ot do not depend on the layout: measured once
        chosen = [m for m in metrics if index == 0 or m in ("lpips", "emd")]
        print(f"{layout}: {', '.join(chosen)} on {args.pairs} pairs of {args.size}x{args.size}", flush=True)
        results += measure(chosen, layout, args.pairs, args.size, args.rounds)
    text = report(results, args)
    print(text)
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    missed = [r for r in results if r.ratio < GOALS[r.metric] or r.max_diff > 1e-4]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
