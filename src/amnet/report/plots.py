"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed).

Each function takes plain numbers keyed by variant (in the paper's order) and returns a PNG, so the
report can both embed it in the HTML page and write it next to ``report.md``. Every variant keeps
one colour and marker across figures.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

STYLE = {  # variant -> (colour, marker, line style)
    "amnet": ("#1f77b4", "o", "-"),
    "no_memory": ("#ff7f0e", "s", "-"),
    "no_ranking": ("#2ca02c", "^", "-"),
    "attribute_based": ("#7f7f7f", "D", "--"),
}
HIT, MISS = "#1a9641", "#bdbdbd"
DPI = 110


def _style(variant: str, i: int) -> tuple[str, str, str]:
    return STYLE.get(variant, (f"C{4 + i}", "x", ":"))


def _png(fig: Figure, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _k_curves(curves: Mapping[str, Sequence[float]], title: str, at: int, tag: str, marks: Sequence[int],
              xlabel: str, ylabel: str) -> bytes:
    """A metric against k, one line per variant, its value at k = ``at`` in the legend (``tag``), dotted
    vertical lines at ``marks``."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for i, (variant, curve) in enumerate(curves.items()):
        colour, marker, line = _style(variant, i)
        ks = range(1, len(curve) + 1)
        value = f"{curve[at - 1]:.3f}" if len(curve) >= at else "n/a"
        ax.plot(ks, curve, color=colour, linestyle=line, marker=marker, markevery=[0, 4, 9, 19, 29, 49][:len(curve)],
                markersize=5, linewidth=2.4 if variant == "amnet" else 1.6, label=f"{variant} ({tag} = {value})")
    for k in marks:
        ax.axvline(k, color="#999999", linewidth=0.8, linestyle=":")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(1, 50), ylim=(0, 1.0))
    ax.set_xticks([1, 5, 10, 20, 30, 40, 50])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", frameon=True, fontsize=9)
    return _png(fig)


def topk_curves(curves: Mapping[str, Sequence[float]], title: str) -> bytes:
    """Top-k accuracy against k (Fig. 5), one line per variant, top-20 in the legend."""
    return _k_curves(curves, title, 20, "top-20", (20,), "k (results returned)", "top-k accuracy")


def recall_curves(curves: Mapping[str, Sequence[float]], title: str) -> bytes:
    """Recall@K of the exact target against K (beside Fig. 5), one line per variant, R@10 in the legend."""
    return _k_curves(curves, title, 10, "R@10", (10, 50), "K (results returned)", "Recall@K (exact target)")


def gallery_sizes(accuracy: Mapping[str, Mapping[str, float]], present: Mapping[str, Mapping[str, float]],
                  sizes: Mapping[str, int]) -> bytes:
    """Top-20 accuracy against gallery size (Fig. 6): all queries (absent targets are misses) and
    the queries whose target is still in the subset."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    fractions = sorted(sizes, key=float)
    xs = [sizes[f] for f in fractions]
    panels = ((axes[0], accuracy, "all one-attribute queries\n(target absent from the subset = miss)"),
              (axes[1], present, "queries whose target is in the subset"))
    for ax, values, title in panels:
        for i, (variant, curve) in enumerate(values.items()):
            colour, marker, line = _style(variant, i)
            ax.plot(xs, [curve.get(f, float("nan")) for f in fractions], color=colour, marker=marker,
                    linestyle=line, linewidth=2.4 if variant == "amnet" else 1.6, label=variant)
        ax.set_xticks(xs, [f"{sizes[f]}\n({float(f):.0%})" for f in fractions])
        ax.set(xlabel="gallery size (images)", title=title, ylim=(0, 1.0))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-20 accuracy")
    axes[0].legend(loc="upper left", fontsize=9)
    return _png(fig)


def per_attribute(values: Mapping[str, Mapping[str, float]]) -> bytes:
    """Grouped bars: top-20 accuracy by manipulated attribute, one bar per variant."""
    attributes = list(dict.fromkeys(a for per in values.values() for a in per))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(attributes) + 2), 4.2))
    width = 0.8 / max(len(values), 1)
    for i, (variant, per) in enumerate(values.items()):
        colour, _, _ = _style(variant, i)
        xs = [a + (i - (len(values) - 1) / 2) * width for a in range(len(attributes))]
        ax.bar(xs, [per.get(a, 0.0) for a in attributes], width, color=colour, label=variant)
    ax.set_xticks(range(len(attributes)), attributes)
    ax.set(xlabel="manipulated attribute", ylabel="top-20 accuracy", ylim=(0, 1.0),
           title="One-attribute manipulation: top-20 accuracy by the attribute changed")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right", fontsize=9, ncols=2)
    return _png(fig)


def _image(data: bytes):
    return Image.open(io.BytesIO(data)).convert("RGB")


def examples_grid(blocks: Sequence[dict]) -> bytes:
    """Fig. 7 as one picture: per query, its thumbnail and manipulation, then one row of top results
    per variant with a green frame on exact matches.

    ``blocks``: ``{"manipulation", "query_thumb", "rows": {variant: (thumbs, hits)}}``.
    """
    n_rows = sum(len(b["rows"]) for b in blocks)
    n_cols = 1 + max((len(t) for b in blocks for t, _ in b["rows"].values()), default=1)
    fig = plt.figure(figsize=(1.25 * n_cols + 1.2, 1.25 * n_rows + 0.45 * len(blocks)))
    grid = fig.add_gridspec(n_rows + len(blocks), n_cols + 1, width_ratios=[1, 1.2, *[1] * (n_cols - 1)],
                            height_ratios=[h for b in blocks for h in [0.3] + [1] * len(b["rows"])],
                            hspace=0.15, wspace=0.08)
    row = 0
    for q, block in enumerate(blocks):
        title = fig.add_subplot(grid[row, :])
        title.axis("off")
        title.text(0, 0.1, f"query {q + 1}: {block['manipulation']}", fontsize=10, weight="bold")
        row += 1
        query_ax = fig.add_subplot(grid[row : row + len(block["rows"]), 0])
        query_ax.imshow(_image(block["query_thumb"]))
        query_ax.set_title("query", fontsize=8)
        query_ax.set_xticks([])
        query_ax.set_yticks([])
        for variant, (thumbs, hits) in block["rows"].items():
            label = fig.add_subplot(grid[row, 1])
            label.axis("off")
            label.text(1.0, 0.5, variant, ha="right", va="center", fontsize=8)
            for j, (thumb, hit) in enumerate(zip(thumbs, hits, strict=True)):
                ax = fig.add_subplot(grid[row, 2 + j])
                ax.imshow(_image(thumb))
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set(color=HIT if hit else MISS, linewidth=4 if hit else 1.5)
            row += 1
    return _png(fig, dpi=80)  # thumbnails are 64 px: more dots only add bytes
