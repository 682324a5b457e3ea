"""The documentation holds together: every relative link in README.md and docs/*.md points at a file
that exists (and at a heading that exists when it names one), and README.md stays a front page."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); one level of brackets inside the text is allowed.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
LINE_ANCHOR = re.compile(r"^L\d+(-L\d+)?$")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
            fence = None
        elif fence is None:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text in lower case, characters other than
    letters, digits, spaces, '-' and '_' dropped, each space a '-'."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers, not snake_case
    text = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub makes for page: one per heading (repeats get -1, -2, ...), plus <a id>."""
    seen: Counter[str] = Counter()
    found = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        if match := HEADING.match(line):
            base = slug(match.group(2))
            found.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link in page's prose (not in code blocks or code spans)."""
    out = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub("", line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        if match := REFERENCE_DEF.match(line):
            targets.append(match.group(1))
        out.extend((number, target.strip("<>")) for target in targets)
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, target in links(page):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # http(s), mailto: not checked here
        path_part, _, fragment = target.partition("#")
        where = f"{page.relative_to(root)}:{number}: {target}"
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{where}: no such file")
            continue
        if root not in destination.parents and destination != root:
            problems.append(f"{where}: outside the repository")
            continue
        if not fragment:
            continue
        if destination.suffix == ".md":
            if unquote(fragment).lower() not in anchors(destination):
                problems.append(f"{where}: no heading with anchor #{fragment}")
        elif not (destination.is_file() and LINE_ANCHOR.match(fragment)):
            problems.append(f"{where}: a #fragment on a file that is not Markdown must be a line (#L12)")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    assert not broken_links(page), "\n".join(broken_links(page))


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; keep it to {README_MAX_LINES}"


def test_every_setting_is_in_the_configuration_page():
    from contract.settings import Settings

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [f"RECO_{name.upper()}" for name in Settings.model_fields if f"`RECO_{name.upper()}`" not in page]
    assert not missing, f"docs/configuration.md lacks {missing}"


TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_test_exists(page: Path):
    """The Guarantees table names the test that checks each guarantee: a renamed or deleted test
    must not leave the table pointing at nothing."""
    missing = []
    for path, name in TEST_REFERENCE.findall(page.read_text(encoding="utf-8")):
        source = ROOT / path
        if not source.is_file() or not re.search(rf"^\s*(async\s+)?def {name}\(", source.read_text(encoding="utf-8"),
                                                 re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, f"{page.relative_to(ROOT)} names tests that do not exist: {missing}"


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Triton's model environment", "tritons-model-environment"),
    ("Summary: the 2026-11-27 defaults against item-kNN and the targets",
     "summary-the-2026-11-27-defaults-against-item-knn-and-the-targets"),
    ("Measured by `make faults`", "measured-by-make-faults"),
    ("The knob: `RECO_DIVERSITY` (λ), a category re-rank", "the-knob-reco_diversity-λ-a-category-re-rank"),
    ("Run of 2026-11-27 (commit a6887e6)", "run-of-2026-11-27-commit-a6887e6"),
    ("**Bold** and [a link](x.md)", "bold-and-a-link"),
])
def test_slugs_follow_githubs_rules(heading: str, anchor: str):
    assert slug(heading) == anchor


def test_the_checker_finds_a_missing_file_and_a_missing_heading(tmp_path: Path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (tmp_path / "outside.md").write_text("# Outside\n", encoding="utf-8")
    (root / "docs" / "other.md").write_text("# Other page\n\n## Other page\n", encoding="utf-8")
    (root / "tool.py").write_text("x = 1\n", encoding="utf-8")
    page = root / "docs" / "page.md"
    page.write_text("# Here\n\n[ok](#here) [bad](#nowhere) [gone](missing.md) [up](../docs/other.md#other-page-1)\n"
                    "[out](../../outside.md) `[code](x.md)`\n```\n# not a heading\n[fenced](y.md)\n```\n"
                    "[web](https://example.com/#x) [line](../tool.py#L1) [not a line](../tool.py#intro)\n",
                    encoding="utf-8")
    problems = broken_links(page, root=root)
    assert [p.split(": ", 2)[-1] for p in problems] == [
        "no heading with anchor #nowhere", "no such file", "outside the repository",
        "a #fragment on a file that is not Markdown must be a line (#L12)"], problems
