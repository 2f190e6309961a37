"""Deterministic candidate pools for the image-edit annotation pipeline, made from the sample scenes.

Run ``python seeds/generate_edits.py`` from the repository root (writes into ``seeds/``), or pass ``--out DIR``.
For each edit task (subject_add, subject_remove, color_alter) it picks SOURCES_PER_TASK PNG scenes of
``seeds/scenes/``, writes one instruction per scene in the grammar the offline judges read ("add a red
circle ...", "remove the blue square", "change the green star to yellow"), and three edited images from three
editor "models" whose quality is known:

* faithful: exactly the instruction, every other pixel unchanged;
* background_shift: the same edit, but everything outside the edited object also shifted, by a colour cast,
  a blur or an offset of a few pixels (which of the three rotates over the scenes);
* no_edit: the editor failed and returned the source pixels unchanged.

Which editor made which variant rotates too, so no editor is always the good one. Files written:

* ``<out>/edits/<task>/<editor>/<source>_<scene>.png``: the edited images (PNG, no metadata);
* ``<out>/candidate_pools/<task>.json``: the pool, the reference's meta_info.jsonl and per-model
  generation_results.jsonl in one document (item key ``<key>_model_<editor>``, paths relative to the
  project root)::

    {"edit_task": "subject_add",
     "meta_info": [{"key": "parkcam_scene_000_subject_add", "instruction": "...", "image_path": "seeds/scenes/..."}],
     "models": [{"name": "editor_alpha", "results": [{"key": "...", "image_path": "seeds/edits/..."}]}]}

* ``<out>/edits/edit_truth.jsonl``: per candidate item, the variant, the background shift, the edited object
  and its box in source pixels (x2, y2 exclusive), sorted by item key.

Nothing depends on time or the machine beyond Pillow/zlib; a rerun writes the same pixels.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image, ImageFilter

SEED = 20240917
TASKS = ("subject_add", "subject_remove", "color_alter")
EDITORS = ("editor_alpha", "editor_beta", "editor_gamma")
VARIANTS = ("faithful", "background_shift", "no_edit")
SHIFTS = ("color", "blur", "offset")
SOURCES_PER_TASK = 15
TEXTURED_PER_TASK = 2  # textured backgrounds compress badly: a few keep the sample small
COLOR_CASTS = ((24, 10, -18), (-20, 14, 22), (16, -22, 12))
OFFSETS = ((6, 4), (-5, 6), (4, -6))
BLUR_RADIUS = 2.0
KEEP_MARGIN = 2  # px around the edited object that a background shift leaves alone
OBJECT_TOLERANCE = 60.0  # RGB distance: a pixel of a flat-coloured shape is within this of its colour


def _load_scenes_module() -> ModuleType:
    path = Path(__file__).resolve().parent / "generate_scenes.py"
    spec = importlib.util.spec_from_file_location("generate_scenes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


scenes = _load_scenes_module()


@dataclass(frozen=True)
class Scene:
    rel_path: str  # relative to seeds/, e.g. scenes/parkcam/scene_000.png
    width: int
    height: int
    kind: str
    bg: str
    objects: tuple[dict, ...]

    @property
    def stem(self) -> str:
        parts = Path(self.rel_path).parts
        return f"{parts[-2]}_{Path(parts[-1]).stem}"


@dataclass(frozen=True)
class Edit:
    instruction: str
    obj: str  # "<colour> <shape>" of the edited object
    box: tuple[int, int, int, int]  # edited region in source pixels, x2/y2 exclusive
    faithful: np.ndarray  # the faithful edited image, (h, w, 3) uint8


def read_scenes(seeds_dir: Path) -> list[Scene]:
    rows = [json.loads(line) for line in (seeds_dir / "scene_truth.jsonl").read_text(encoding="utf-8").splitlines()]
    return [Scene(r["image_path"], r["width"], r["height"], r["background"]["kind"], r["background"]["color"],
                  tuple(r["objects"])) for r in rows if r["image_path"].endswith(".png")]


def _unique_objects(scene: Scene) -> list[dict]:
    """Objects whose (colour, shape) no other object of the scene shares: an instruction names them alone."""
    counts: dict[tuple[str, str], int] = {}
    for o in scene.objects:
        counts[(o["color"], o["shape"])] = counts.get((o["color"], o["shape"]), 0) + 1
    return [o for o in scene.objects if counts[(o["color"], o["shape"])] == 1]


def choose_scenes(all_scenes: list[Scene], task: str, rng: random.Random) -> list[Scene]:
    """SOURCES_PER_TASK scenes the task can edit, mostly plain or gradient, in path order."""
    if task == "subject_add":
        usable = [s for s in all_scenes if len(s.objects) <= 3]
    elif task == "subject_remove":
        usable = [s for s in all_scenes if len(s.objects) >= 2 and _unique_objects(s)]
    else:
        usable = [s for s in all_scenes if _unique_objects(s)]
    textured = [s for s in usable if s.kind == "textured"]
    smooth = [s for s in usable if s.kind != "textured"]
    picked = rng.sample(textured, TEXTURED_PER_TASK) + rng.sample(smooth, SOURCES_PER_TASK - TEXTURED_PER_TASK)
    return sorted(picked, key=lambda s: s.rel_path)


def _location(box: tuple[int, int, int, int], width: int, height: int) -> str:
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    vertical = "top" if cy < 0.4 else ("bottom" if cy > 0.6 else "middle")
    horizontal = "left" if cx < 0.4 else ("right" if cx > 0.6 else "centre")
    return "in the centre" if (vertical, horizontal) == ("middle", "centre") else f"in the {vertical} {horizontal}"


def _object_mask(img: np.ndarray, obj: dict) -> np.ndarray:
    """The pixels of a flat-coloured object: inside its box and close to its colour."""
    x1, y1, x2, y2 = obj["bbox"]
    mask = np.zeros(img.shape[:2], dtype=bool)
    patch = img[y1:y2, x1:x2].astype(float)
    colour = np.array(scenes.COLORS[obj["color"]], dtype=float)
    mask[y1:y2, x1:x2] = np.sqrt(((patch - colour) ** 2).sum(axis=2)) < OBJECT_TOLERANCE
    return mask


def add_subject(scene: Scene, img: np.ndarray, rng: random.Random) -> Edit:
    present = {(o["color"], o["shape"]) for o in scene.objects}
    combos = [(c, s) for s in scenes.SHAPES for c in scenes.COLORS
              if scenes.contrasts(c, scene.bg) and (c, s) not in present]
    colour, shape = rng.choice(combos)
    w, h = scene.width, scene.height
    taken = [tuple(o["bbox"]) for o in scene.objects]
    for _ in range(500):
        d = round(rng.uniform(0.18, 0.24) * min(w, h))
        x0, y0 = rng.randint(scenes.MARGIN, w - scenes.MARGIN - d), rng.randint(scenes.MARGIN, h - scenes.MARGIN - d)
        gap = scenes.GAP + KEEP_MARGIN + 2
        if all(x0 + d + gap <= bx1 or bx2 + gap <= x0 or y0 + d + gap <= by1 or by2 + gap <= y0
               for bx1, by1, bx2, by2 in taken):
            break
    else:
        raise RuntimeError(f"{scene.rel_path}: no room to add an object")
    mask = scenes.shape_mask(shape, x0, y0, d, w, h, rng)
    edited = img.copy()
    edited[mask] = scenes.COLORS[colour]
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    article = "an" if colour[0] in "aeiou" else "a"
    instruction = f"Add {article} {colour} {shape} {_location(box, w, h)} of the image."
    return Edit(instruction, f"{colour} {shape}", box, edited)


def _inpaint_rows(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill masked pixels by linear interpolation between the nearest unmasked pixels of their row: exact for
    plain and linear-gradient backgrounds, a smooth patch on textures (as a real inpainting model leaves)."""
    out = img.astype(float)
    for y in np.nonzero(mask.any(axis=1))[0]:
        row_mask = mask[y]
        known = np.nonzero(~row_mask)[0]
        holes = np.nonzero(row_mask)[0]
        for c in range(3):
            out[y, holes, c] = np.interp(holes, known, out[y, known, c])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def remove_subject(scene: Scene, img: np.ndarray, rng: random.Random) -> Edit:
    candidates = [o for o in _unique_objects(scene) if o["size"] != "small"] or _unique_objects(scene)
    obj = rng.choice(candidates)
    mask = _object_mask(img, obj)
    edited = _inpaint_rows(img, mask)
    return Edit(f"Remove the {obj['color']} {obj['shape']} from the image.", f"{obj['color']} {obj['shape']}",
                tuple(obj["bbox"]), edited)


def alter_color(scene: Scene, img: np.ndarray, rng: random.Random) -> Edit:
    obj = rng.choice(_unique_objects(scene))
    present = {(o["color"], o["shape"]) for o in scene.objects}
    colours = [c for c in scenes.COLORS if c != obj["color"] and scenes.contrasts(c, scene.bg)
               and (c, obj["shape"]) not in present]
    new = rng.choice(colours)
    edited = img.copy()
    edited[_object_mask(img, obj)] = scenes.COLORS[new]
    return Edit(f"Change the {obj['color']} {obj['shape']} to {new}.", f"{obj['color']} {obj['shape']}",
                tuple(obj["bbox"]), edited)


EDIT_MAKERS = {"subject_add": add_subject, "subject_remove": remove_subject, "color_alter": alter_color}


def shift_background(edited: np.ndarray, box: tuple[int, int, int, int], shift: str, index: int) -> np.ndarray:
    """The edited image with everything outside the edited object's box (plus KEEP_MARGIN) shifted."""
    if shift == "color":
        moved = np.clip(edited.astype(int) + np.array(COLOR_CASTS[index % len(COLOR_CASTS)]), 0, 255)
    elif shift == "blur":
        moved = np.asarray(Image.fromarray(edited).filter(ImageFilter.GaussianBlur(BLUR_RADIUS)), dtype=int)
    else:
        dx, dy = OFFSETS[index % len(OFFSETS)]
        h, w = edited.shape[:2]
        rows = np.clip(np.arange(h) - dy, 0, h - 1)
        cols = np.clip(np.arange(w) - dx, 0, w - 1)
        moved = edited[rows][:, cols].astype(int)
    out = moved.astype(np.uint8)
    x1, y1, x2, y2 = box
    h, w = edited.shape[:2]
    keep = (slice(max(0, y1 - KEEP_MARGIN), min(h, y2 + KEEP_MARGIN)),
            slice(max(0, x1 - KEEP_MARGIN), min(w, x2 + KEEP_MARGIN)))
    out[keep] = edited[keep]
    return out


def _save_png(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, "RGB").save(path, format="PNG", compress_level=9)


def generate_task(task: str, all_scenes: list[Scene], seeds_dir: Path, out_dir: Path,
                  rng: random.Random) -> tuple[dict, list[dict]]:
    """Write one task's edited images; return its pool document and truth rows."""
    meta_info: list[dict] = []
    results: dict[str, list[dict]] = {editor: [] for editor in EDITORS}
    truth: list[dict] = []
    for index, scene in enumerate(choose_scenes(all_scenes, task, rng)):
        source = np.asarray(Image.open(seeds_dir / scene.rel_path).convert("RGB"))
        edit = EDIT_MAKERS[task](scene, source, rng)
        key = f"{scene.stem}_{task}"
        meta_info.append({"key": key, "instruction": edit.instruction, "image_path": f"seeds/{scene.rel_path}"})
        shift = SHIFTS[index % len(SHIFTS)]
        shifted = shift_background(edit.faithful, edit.box, shift, index)
        images = {"faithful": edit.faithful, "background_shift": shifted, "no_edit": source}
        for offset, variant in enumerate(VARIANTS):
            editor = EDITORS[(index + offset) % len(EDITORS)]
            rel = f"edits/{task}/{editor}/{scene.stem}.png"
            _save_png(images[variant], out_dir / rel)
            results[editor].append({"key": key, "image_path": f"seeds/{rel}"})
            truth.append({"item_key": f"{key}_model_{editor}", "key": key, "edit_task": task, "model": editor,
                          "variant": variant, "background_shift": shift if variant == "background_shift" else None,
                          "edited_object": edit.obj, "edit_box": list(edit.box),
                          "source_image_path": f"seeds/{scene.rel_path}"})
    pool = {"edit_task": task, "meta_info": meta_info,
            "models": [{"name": editor, "results": results[editor]} for editor in EDITORS]}
    return pool, truth


def generate(out_dir: Path, seeds_dir: Path | None = None) -> None:
    """Write every task's edited images, pools and the truth rows under out_dir (stale edit files removed)."""
    out_dir = Path(out_dir)
    seeds_dir = Path(seeds_dir or Path(__file__).resolve().parent)
    for task in TASKS:
        for old in (out_dir / "edits" / task).rglob("*.png") if (out_dir / "edits" / task).is_dir() else []:
            old.unlink()
    rng = random.Random(SEED)
    all_scenes = read_scenes(seeds_dir)
    truth: list[dict] = []
    for task in TASKS:
        pool, rows = generate_task(task, all_scenes, seeds_dir, out_dir, rng)
        truth += rows
        pools = out_dir / "candidate_pools"
        pools.mkdir(parents=True, exist_ok=True)
        (pools / f"{task}.json").write_text(json.dumps(pool, indent=2) + "\n", encoding="utf-8")
    truth.sort(key=lambda r: r["item_key"])
    with open(out_dir / "edits" / "edit_truth.jsonl", "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in truth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the edit candidate pools from the sample scenes.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the seeds/ folder holding this script)")
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
