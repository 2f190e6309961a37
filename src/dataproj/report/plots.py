"""The summary's PNG plots, drawn with matplotlib's object API (no pyplot state, so safe beside other threads).

Every function takes plain data (already computed in SQL) and a path, and writes one PNG. Sizes and fonts are
chosen so that the text stays readable when the image is shown at about 1000 px wide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RELEVANT, NOT_RELEVANT = "#3b82c4", "#e8756a"
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#86bcb6", "#d37295")


def _figure(width: float, height: float, **margins: float) -> Any:
    """A figure with fixed margins (in figure fractions): a layout engine would draw every figure twice."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(**{"left": 0.08, "right": 0.97, "bottom": 0.1, "top": 0.9, **margins})
    return figure


def _save(figure: Any, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, facecolor="white")
    return path


def _histogram(ax: Any, values: Sequence[float], *, bins: int, color: str, mean_label: str,
               value_range: tuple[float, float] | None = None) -> None:
    """A histogram with its mean as a dashed line, labelled for the legend (`mean_label` formats the mean)."""
    ax.hist(values, bins=bins, range=value_range, color=color, edgecolor="black")
    mean = sum(values) / len(values) if values else 0.0
    ax.axvline(mean, color="black", linestyle="--", label=mean_label.format(mean))


def _grid(count: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def _colors_for(labels: Sequence[str]) -> tuple[list[Any], str]:
    """The labels' own colours when every label names one (a colour facet), else the palette; and an edge."""
    from matplotlib.colors import is_color_like

    if labels and all(is_color_like(str(label)) for label in labels):
        return [str(label) for label in labels], "#555555"
    return [PALETTE[i % len(PALETTE)] for i in range(len(labels))], "white"


def _donut(ax: Any, labels: Sequence[str], counts: Sequence[int], title: str, unit: str) -> None:
    total = sum(counts)
    colors, edge = _colors_for(labels)
    wedges, _ = ax.pie(counts, startangle=90, counterclock=False, colors=colors,
                       wedgeprops={"width": 0.38, "edgecolor": edge, "linewidth": 1.2})
    ax.text(0, 0, f"{total}\n{unit}", ha="center", va="center", fontsize=13, fontweight="bold")
    ax.set_title(title, fontsize=14, fontweight="bold")
    legend = [f"{label}  {count} ({100 * count / total:.0f}%)" for label, count in zip(labels, counts, strict=True)]
    ax.legend(wedges, legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2 if len(labels) > 4 else 1,
              fontsize=11, frameon=False)
    ax.set_aspect("equal")


def donuts(panels: Sequence[tuple[str, Sequence[str], Sequence[int]]], path: Path, dpi: int, *,
           unit: str = "images", columns: int = 3) -> Path:
    """One donut per (title, labels, counts), with counts and percentages in a legend under each."""
    rows, cols = _grid(len(panels), columns)
    figure = _figure(5.2 * cols, 5.6 * rows, left=0.02, right=0.98, top=1 - 0.5 / (5.6 * rows),
                        bottom=1.6 / (5.6 * rows), hspace=0.55, wspace=0.15)
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax, (title, labels, counts) in zip(axes.flat, panels, strict=False):
        _donut(ax, labels, counts, title, unit)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return _save(figure, path, dpi)


def relevancy_distribution(rates: Sequence[tuple[str, float]], path: Path, dpi: int) -> Path:
    """Relevance rate per query (bars, sorted) and the distribution of those rates."""
    figure = _figure(12, 8.5, top=0.95, bottom=0.07, hspace=0.55)
    top, bottom = figure.subplots(2, 1)
    ordered = sorted(rates, key=lambda r: (-r[1], r[0]))
    top.bar(range(len(ordered)), [r[1] for r in ordered], color=RELEVANT)
    top.set_xticks(range(len(ordered)), [r[0] for r in ordered], rotation=60, ha="right", fontsize=10)
    top.set_title("Relevance rate per query", fontsize=14, fontweight="bold")
    top.set_ylabel("relevant / judged", fontsize=12)
    top.set_ylim(0, 1)
    top.grid(axis="y", alpha=0.3)
    values = [r[1] for r in rates]
    _histogram(bottom, values, bins=min(20, max(5, len(values))), color="#59a14f", mean_label="mean {:.3f}",
               value_range=(0, 1))
    bottom.set_title("Distribution of query relevance rates", fontsize=14, fontweight="bold")
    bottom.set_xlabel("relevance rate", fontsize=12)
    bottom.set_ylabel("queries", fontsize=12)
    bottom.legend(fontsize=11)
    bottom.grid(axis="y", alpha=0.3)
    return _save(figure, path, dpi)


def relevance_overview(relevant: int, not_relevant: int, path: Path, dpi: int) -> Path:
    figure = _figure(12, 5.5, left=0.02, wspace=0.3)
    left, right = figure.subplots(1, 2)
    left.pie([not_relevant, relevant], labels=[f"Not relevant ({not_relevant})", f"Relevant ({relevant})"],
             colors=[NOT_RELEVANT, RELEVANT], autopct="%1.1f%%", startangle=90, textprops={"fontsize": 12})
    left.set_title("Overall relevance distribution", fontsize=14, fontweight="bold")
    bars = right.bar(["Not relevant (0)", "Relevant (1)"], [not_relevant, relevant], color=[NOT_RELEVANT, RELEVANT])
    right.bar_label(bars, fontsize=12)
    right.set_title("Relevance label counts", fontsize=14, fontweight="bold")
    right.set_ylabel("query-image pairs", fontsize=12)
    right.tick_params(labelsize=12)
    return _save(figure, path, dpi)


def relevance_by_facet(facet: str, rows: Sequence[tuple[str, int, int]], path: Path, dpi: int) -> Path:
    """Stacked percentage of relevant / not relevant pairs per facet value (rows: value, relevant, judged)."""
    figure = _figure(max(8.0, 1.1 * len(rows) + 3), 5.5, left=0.1, bottom=0.2, top=0.9)
    ax = figure.subplots()
    labels = [str(r[0]) for r in rows]
    relevant = [100 * r[1] / r[2] if r[2] else 0 for r in rows]
    ax.bar(labels, [100 - v for v in relevant], color=NOT_RELEVANT, label="Not relevant (0)")
    ax.bar(labels, relevant, bottom=[100 - v for v in relevant], color=RELEVANT, label="Relevant (1)")
    for i, row in enumerate(rows):
        ax.text(i, 101, f"n={row[2]}", ha="center", va="bottom", fontsize=10)
    ax.set_ylim(0, 110)
    ax.set_title(f"Relevance by {facet}", fontsize=14, fontweight="bold", loc="left")
    ax.set_ylabel("% of judged pairs", fontsize=12)
    ax.set_xlabel(facet, fontsize=12)
    ax.tick_params(axis="x", rotation=30, labelsize=11)
    ax.legend(fontsize=11, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    return _save(figure, path, dpi)


def query_length_distribution(lengths: Sequence[int], path: Path, dpi: int) -> Path:
    figure = _figure(10, 5.5, bottom=0.12)
    ax = figure.subplots()
    _histogram(ax, lengths, bins=min(30, max(5, len(set(lengths)))), color="#4e79a7",
               mean_label="mean {:.1f} characters")
    ax.set_title("Query text length", fontsize=14, fontweight="bold")
    ax.set_xlabel("characters", fontsize=12)
    ax.set_ylabel("queries", fontsize=12)
    ax.legend(fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path, dpi)


def score_analysis(column: str, scorer: str, scores: Sequence[tuple[float, int | None]], path: Path,
                   dpi: int) -> Path:
    """Histogram, box and violin by relevance, and CDF of the similarity scores ((score, label) pairs)."""
    figure = _figure(13, 10, top=0.92, bottom=0.07, hspace=0.35, wspace=0.25)
    figure.suptitle(f"{column} ({scorer})", fontsize=15, fontweight="bold")
    (hist, box), (violin, cdf) = figure.subplots(2, 2)
    values = sorted(s for s, _ in scores)
    groups = [[s for s, label in scores if label == 0], [s for s, label in scores if label == 1]]
    names = ["Not relevant", "Relevant"]
    hist.hist(values, bins=30, color="#4e79a7", edgecolor="black")
    hist.set_title("Distribution", fontsize=13, fontweight="bold")
    hist.set_xlabel(column, fontsize=11)
    hist.set_ylabel("pairs", fontsize=11)
    present = [(name, group) for name, group in zip(names, groups, strict=True) if group]
    if present:
        parts = box.boxplot([g for _, g in present], tick_labels=[n for n, _ in present], patch_artist=True)
        for patch, (name, _) in zip(parts["boxes"], present, strict=True):
            patch.set_facecolor(RELEVANT if name == "Relevant" else NOT_RELEVANT)
        shaped = [(name, group) for name, group in present if len(set(group)) > 1]
        if shaped:
            bodies = violin.violinplot([g for _, g in shaped], showmeans=True)
            for body, (name, _) in zip(bodies["bodies"], shaped, strict=True):
                body.set_facecolor(RELEVANT if name == "Relevant" else NOT_RELEVANT)
            violin.set_xticks(range(1, len(shaped) + 1), [n for n, _ in shaped])
    box.set_title("By relevance (box)", fontsize=13, fontweight="bold")
    violin.set_title("By relevance (violin)", fontsize=13, fontweight="bold")
    for ax in (box, violin):
        ax.set_ylabel(column, fontsize=11)
        ax.grid(axis="y", alpha=0.3)
    cdf.plot(values, [(i + 1) / len(values) for i in range(len(values))], color="#4e79a7", linewidth=2)
    cdf.set_title("Cumulative distribution", fontsize=13, fontweight="bold")
    cdf.set_xlabel(column, fontsize=11)
    cdf.set_ylabel("share of pairs", fontsize=11)
    cdf.grid(alpha=0.3)
    return _save(figure, path, dpi)


def score_by_query(column: str, means: Sequence[tuple[str, float]], path: Path, dpi: int) -> Path:
    figure = _figure(12, 5.5, bottom=0.22)
    ax = figure.subplots()
    ax.bar([m[0] for m in means], [m[1] for m in means], color="#f28e2b")
    ax.set_title(f"Mean {column} per query", fontsize=14, fontweight="bold")
    ax.set_ylabel(f"mean {column}", fontsize=12)
    ax.tick_params(axis="x", rotation=60, labelsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path, dpi)


def confidence_distributions(by_category: dict[str, list[float]], path: Path, dpi: int) -> Path:
    rows, cols = _grid(len(by_category), 3)
    figure = _figure(5 * cols, 3.8 * rows, top=1 - 0.45 / (3.8 * rows), bottom=0.6 / (3.8 * rows), hspace=0.6,
                        wspace=0.3, left=0.06)
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax, (category, values) in zip(axes.flat, by_category.items(), strict=False):
        _histogram(ax, values, bins=20, color="#76b7b2", mean_label="mean {:.3f}", value_range=(0, 1))
        ax.set_title(category, fontsize=13, fontweight="bold")
        ax.set_xlabel("confidence", fontsize=11)
        ax.set_ylabel("pairs", fontsize=11)
        ax.legend(fontsize=10)
    for ax in list(axes.flat)[len(by_category):]:
        ax.axis("off")
    return _save(figure, path, dpi)


def confidence_boxplot(by_category: dict[str, list[float]], path: Path, dpi: int) -> Path:
    figure = _figure(max(8.0, 1.3 * len(by_category) + 2), 5.5, bottom=0.25)
    ax = figure.subplots()
    parts = ax.boxplot(list(by_category.values()), tick_labels=list(by_category), patch_artist=True)
    for i, patch in enumerate(parts["boxes"]):
        patch.set_facecolor(PALETTE[i % len(PALETTE)])
    ax.set_title("Confidence by facet", fontsize=14, fontweight="bold")
    ax.set_ylabel("confidence", fontsize=12)
    ax.tick_params(axis="x", rotation=30, labelsize=11)
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path, dpi)


def confidence_by_relevance(rows: Sequence[tuple[str, float | None, float | None]], path: Path, dpi: int) -> Path:
    """Mean confidence per facet for not relevant / relevant pairs (rows: facet, mean_0, mean_1)."""
    figure = _figure(max(8.0, 1.3 * len(rows) + 2), 5.5, bottom=0.25)
    ax = figure.subplots()
    positions = range(len(rows))
    ax.bar([p - 0.2 for p in positions], [r[1] or 0 for r in rows], 0.4, color=NOT_RELEVANT, label="Not relevant")
    ax.bar([p + 0.2 for p in positions], [r[2] or 0 for r in rows], 0.4, color=RELEVANT, label="Relevant")
    ax.set_xticks(list(positions), [r[0] for r in rows], rotation=30, ha="right", fontsize=11)
    ax.set_ylim(0, 1.05)
    ax.set_title("Mean confidence by facet and relevance", fontsize=14, fontweight="bold")
    ax.set_ylabel("mean confidence", fontsize=12)
    ax.legend(fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path, dpi)


def word_cloud(frequencies: dict[str, float], title: str, path: Path, dpi: int, colormap: str) -> Path:
    from wordcloud import WordCloud

    cloud = WordCloud(width=1200, height=600, background_color="white", max_words=100, colormap=colormap,
                      prefer_horizontal=0.95, random_state=42, min_font_size=12)
    image = cloud.generate_from_frequencies(frequencies).to_array()
    figure = _figure(12, 6.6, left=0.01, right=0.99, bottom=0.01, top=0.93)
    ax = figure.subplots()
    ax.imshow(image, interpolation="bilinear")
    ax.axis("off")
    ax.set_title(title, fontsize=16, fontweight="bold")
    return _save(figure, path, dpi)


def image_grid(images: Sequence[tuple[str, str]], path: Path, dpi: int, *, columns: int = 6) -> Path:
    """A grid of (caption, file path) images; an unreadable file shows its error instead."""
    from PIL import Image

    rows, cols = _grid(len(images), columns)
    figure = _figure(2.6 * cols, 2.5 * rows + 0.4, left=0.01, right=0.99, bottom=0.01,
                        top=1 - 0.6 / (2.5 * rows + 0.4), hspace=0.25, wspace=0.05)
    figure.suptitle(f"Random sample of {len(images)} images", fontsize=15, fontweight="bold")
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax, (caption, file) in zip(axes.flat, images, strict=False):
        try:
            with Image.open(file) as image:
                ax.imshow(image.convert("RGB"))
        except OSError as err:
            ax.text(0.5, 0.5, f"cannot read\n{str(err)[:40]}", ha="center", va="center", color="red", fontsize=9)
        ax.set_title(caption, fontsize=9)
        ax.axis("off")
    for ax in list(axes.flat)[len(images):]:
        ax.axis("off")
    return _save(figure, path, dpi)


def cost_bars(rows: Sequence[tuple[str, int, int, float, int]], path: Path, dpi: int) -> Path:
    """Tokens (input / output) with the cost, and real calls, per phase (rows: phase, in, out, usd, calls)."""
    figure = _figure(12, 5, wspace=0.3)
    left, right = figure.subplots(1, 2)
    names = [r[0] for r in rows]
    left.bar(names, [r[1] for r in rows], color="#4e79a7", label="input tokens")
    bars = left.bar(names, [r[2] for r in rows], bottom=[r[1] for r in rows], color="#f28e2b", label="output tokens")
    left.bar_label(bars, labels=[f"${r[3]:.4f}" for r in rows], fontsize=11, padding=2)
    left.set_title("Tokens per phase (cost above each bar)", fontsize=14, fontweight="bold")
    left.legend(fontsize=11)
    bars = right.bar(names, [r[4] for r in rows], color="#9c755f")
    right.bar_label(bars, fontsize=11)
    right.set_title("Paid calls per phase (ledger rows)", fontsize=14, fontweight="bold")
    for ax in (left, right):
        ax.tick_params(labelsize=12)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
    return _save(figure, path, dpi)
