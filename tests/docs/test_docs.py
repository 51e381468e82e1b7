"""The documentation as a reader meets it: every relative link resolves, the README stays a front door,
and the product's text speaks of what the product is, not of how it was built.

Files are the repository's own (``git ls-files``, plus new files git does not ignore), read as text.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from functools import cache
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200

# Where the product's text lives (top-level folders and files).
PRODUCT_ROOTS = ("README.md", "docs", "src", "pipeline", "components", "tests", "benchmarks", "quality",
                 "manifests", "configs", "images", "Makefile", "pyproject.toml", ".ci")

# Words about how the product was made, never about what it is (case-insensitive).
PROVENANCE = [
    re.compile(r"\bissues?[ -]?#?\d+", re.IGNORECASE),
    re.compile(r"\bsessions?[ -]\d+", re.IGNORECASE),
    re.compile(r"\bround\s+of\s+work", re.IGNORECASE),
    re.compile(r"[(]issue", re.IGNORECASE),
]
# In Markdown: a 7-40 character hex word with a digit and a letter, i.e. a commit hash used as a label.
COMMIT_HASH = re.compile(r"(?<![\w./:+-])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![\w/:+-]|\.\w)")

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)")
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


@cache
def repo_files() -> tuple[str, ...]:
    """Tracked files plus new ones git does not ignore, that exist in the working tree."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode()
        names = sorted({n for n in out.split("\0") if n})
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but hidden/venv ones
        names = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(ROOT).parts))
    return tuple(n for n in names if (ROOT / n).is_file())


def markdown_files() -> list[str]:
    return [n for n in repo_files() if n.endswith(".md")]


def product_files() -> list[str]:
    return [n for n in repo_files() if n in PRODUCT_ROOTS or n.split("/", 1)[0] in PRODUCT_ROOTS
            or n.endswith(".md")]


def text_of(name: str) -> str | None:
    try:
        return (ROOT / name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def prose_lines(text: str, blank_code: bool = True) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks; inline code spans blanked unless ``blank_code`` is off."""
    lines, in_fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line) if blank_code else line))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images -> their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "").lower()
    kept = "".join(c for c in text if c.isalnum() or c in " -_" or unicodedata.category(c).startswith("M"))
    return kept.replace(" ", "-")


@cache
def anchors(name: str) -> frozenset[str]:
    """Every anchor a Markdown file offers: heading slugs (repeats numbered -1, -2, ...) and HTML anchors."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    text = (ROOT / name).read_text(encoding="utf-8")
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def link_targets(text: str) -> list[tuple[int, str]]:
    targets = []
    for number, line in prose_lines(text):
        targets += [(number, t.strip("<>")) for t in LINK.findall(line)]
        targets += [(number, t) for t in HTML_SRC.findall(line)]
        targets += [(number, t.strip("<>")) for t in REFERENCE.findall(line)]
    return targets


def broken_links(name: str) -> list[str]:
    problems = []
    for number, target in link_targets((ROOT / name).read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part)
        if path_part:
            base = ROOT if path_part.startswith("/") else (ROOT / name).parent
            resolved = (base / path_part.lstrip("/")).resolve()
        else:
            resolved = ROOT / name
        where = f"{name}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where} (no such file)")
            continue
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{where} (outside the repository)")
            continue
        if anchor and resolved.suffix == ".md" and unquote(anchor).lower() not in anchors(
                str(resolved.relative_to(ROOT))):
            problems.append(f"{where} (no heading with anchor #{anchor})")
    return problems


def test_markdown_files_are_found():
    names = markdown_files()
    assert "README.md" in names and any(n.startswith("docs/") for n in names), names


def test_every_relative_link_and_image_resolves():
    problems = [p for name in markdown_files() for p in broken_links(name)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_is_a_short_front_door_with_the_two_commands_first():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    head = "\n".join(lines[:10])
    assert "make demo" in head and "make test" in head, "README.md: `make demo` and `make test` in its first 10 lines"


def test_markdown_tables_are_well_formed():
    """Each Markdown table row has as many cells as its header, and a separator row follows the header.
    GitHub splits a row on every unescaped ``|``, inside code spans too, so those must be written ``\\|``."""
    problems = []
    for name in markdown_files():
        rows: list[tuple[int, str]] = []
        for number, line in [*prose_lines((ROOT / name).read_text(encoding="utf-8"), blank_code=False), (-1, "")]:
            if line.lstrip().startswith("|"):
                rows.append((number, line))
                continue
            if rows:
                cells = [re.split(r"(?<!\\)\|", row.strip().removeprefix("|").removesuffix("|")) for _, row in rows]
                if len(rows) < 2 or not all(re.fullmatch(r"\s*:?-+:?\s*", c) for c in cells[1]):
                    problems.append(f"{name}:{rows[0][0]}: table without a separator row")
                elif len({len(c) for c in cells}) != 1:
                    problems.append(f"{name}:{rows[0][0]}: rows with {sorted({len(c) for c in cells})} cells")
                rows = []
    assert not problems, "malformed tables:\n" + "\n".join(problems)


def test_no_words_about_how_the_product_was_made():
    offenders = []
    for name in product_files():
        text = text_of(name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            hits = [m.group(0) for pattern in PROVENANCE for m in pattern.finditer(line)]
            if name.endswith(".md"):
                hits += [f"commit-like {m.group(0)}" for m in COMMIT_HASH.finditer(line)]
            if hits:
                offenders.append(f"{name}:{number}: {', '.join(hits)}")
    assert not offenders, (f"{len(offenders)} lines speak of how the product was made (name the change "
                           "instead):\n" + "\n".join(offenders))
