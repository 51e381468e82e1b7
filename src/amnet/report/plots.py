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
    "image_only": ("#9467bd", "v", "--"),
}
HIT, MISS, EXACT = "#1a9641", "#bdbdbd", "#2166ac"  # label match, neither, the exact target
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


EXAMPLES_LEGEND = "blue: the exact target (this item, changed) · green: has every requested label"


def _frame(ax, colour: str, width: float) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set(color=colour, linewidth=width)


def examples_grid(blocks: Sequence[dict]) -> bytes:
    """Fig. 7 as one picture: per query, its thumbnail (and, when it has one, its exact target's) and
    manipulation, then one row of top results per variant: a thick blue frame on the exact target, a
    green one on results with every requested label, a thin grey one otherwise; a legend line on top.

    ``blocks``: ``{"manipulation", "query_thumb", "rows": {variant: (thumbs, hits[, exact])}}`` with an
    optional ``"target_thumb"`` (None or absent: no exact target, e.g. examples written before targets).
    """
    targets = any(b.get("target_thumb") is not None for b in blocks)
    lead = 2 if targets else 1  # query (+ exact target) columns
    n_rows = sum(len(b["rows"]) for b in blocks)
    n_cols = lead + max((len(row[0]) for b in blocks for row in b["rows"].values()), default=1)
    fig = plt.figure(figsize=(1.25 * n_cols + 1.2, 1.25 * n_rows + 0.45 * len(blocks) + 0.35))
    grid = fig.add_gridspec(1 + n_rows + len(blocks), n_cols + 1,
                            width_ratios=[*[1] * lead, 1.2, *[1] * (n_cols - lead)],
                            height_ratios=[0.3, *[h for b in blocks for h in [0.3] + [1] * len(b["rows"])]],
                            hspace=0.15, wspace=0.08)
    legend = fig.add_subplot(grid[0, :])
    legend.axis("off")
    legend.text(0, 0.1, EXAMPLES_LEGEND if targets else "green: has every requested label", fontsize=9)
    row = 1
    for q, block in enumerate(blocks):
        title = fig.add_subplot(grid[row, :])
        title.axis("off")
        title.text(0, 0.1, f"query {q + 1}: {block['manipulation']}", fontsize=10, weight="bold")
        row += 1
        span = len(block["rows"])
        query_ax = fig.add_subplot(grid[row : row + span, 0])
        query_ax.imshow(_image(block["query_thumb"]))
        query_ax.set_title("query", fontsize=8)
        _frame(query_ax, "black", 0.8)
        if block.get("target_thumb") is not None:
            target_ax = fig.add_subplot(grid[row : row + span, 1])
            target_ax.imshow(_image(block["target_thumb"]))
            target_ax.set_title("exact target", fontsize=8, color=EXACT)
            _frame(target_ax, EXACT, 2)
        for variant, (thumbs, hits, *rest) in block["rows"].items():
            exact = rest[0] if rest else [False] * len(thumbs)
            label = fig.add_subplot(grid[row, lead])
            label.axis("off")
            label.text(1.0, 0.5, variant, ha="right", va="center", fontsize=8)
            for j, (thumb, hit, is_target) in enumerate(zip(thumbs, hits, exact, strict=True)):
                ax = fig.add_subplot(grid[row, lead + 1 + j])
                ax.imshow(_image(thumb))
                if is_target:
                    _frame(ax, EXACT, 6)
                else:
                    _frame(ax, HIT if hit else MISS, 4 if hit else 1.5)
            row += 1
    return _png(fig, dpi=80)  # thumbnails are 64 px: more dots only add bytes
