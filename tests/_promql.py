"""Pull the PromQL out of deploy/grafana/dashboards and deploy/prometheus/alerts.yml, and take
just enough of it apart for the observability tests: the metric names an expression reads, and
the "signal" side of each alert clause (see the convention at the top of alerts.yml)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPS = ("and", "or", "unless")
_OPEN, _CLOSE = "([{", ")]}"


def load_dashboards(directory: str | Path = DASHBOARDS_DIR) -> dict[str, dict]:
    """{file stem: dashboard JSON} for every *.json under ``directory``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(directory).glob("*.json"))}


def iter_panels(dashboard: dict):
    """Every panel, including panels nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(directory: str | Path = DASHBOARDS_DIR) -> list[tuple[str, str, str]]:
    """[(dashboard file stem, panel title, expr)] for every Prometheus target of every panel."""
    out = []
    for name, dash in load_dashboards(directory).items():
        for panel in iter_panels(dash):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((name, panel.get("title", ""), target["expr"].strip()))
    return out


def alert_rules(file: str | Path = ALERTS_FILE) -> list[dict]:
    doc = yaml.safe_load(Path(file).read_text()) or {}
    return [r for g in doc.get("groups") or [] for r in g.get("rules", []) if "alert" in r]


def alert_expressions(file: str | Path = ALERTS_FILE) -> list[tuple[str, str]]:
    """[(alert name, expr)] in file order."""
    return [(r["alert"], " ".join(r["expr"].split())) for r in alert_rules(file)]


def _scan(expr: str):
    """Yield (index, char, depth) for characters outside string literals."""
    depth, i, n = 0, 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            i = j + 1
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        yield i, c, depth
        i += 1


def _is_word_at(expr: str, i: int, word: str) -> bool:
    end = i + len(word)
    if expr[i:end].lower() != word:
        return False
    before = expr[i - 1] if i > 0 else " "
    after = expr[end] if end < len(expr) else " "
    return not (before.isalnum() or before in "_:") and not (after.isalnum() or after in "_:")


def split_set_operators(expr: str) -> list[str]:
    """Split on top-level ``and``/``or``/``unless``; drops ``on(...)``/``ignoring(...)``."""
    parts, start, skip_to = [], 0, -1
    for i, c, depth in _scan(expr):
        if i < skip_to or depth != 0 or not c.isalpha():
            continue
        for op in _SET_OPS:
            if _is_word_at(expr, i, op):
                parts.append(expr[start:i])
                start = skip_to = i + len(op)
                break
    parts.append(expr[start:])
    cleaned = []
    for p in parts:
        p = p.strip()
        p = re.sub(r"^(on|ignoring)\s*\([^)]*\)\s*", "", p)
        cleaned.append(p.strip())
    return cleaned


def split_comparison(clause: str) -> tuple[str, str | None, str | None]:
    """(left, operator, right) at the first top-level comparison; (clause, None, None) if none."""
    for i, c, depth in _scan(clause):
        if depth != 0 or c not in "=!<>":
            continue
        two = clause[i:i + 2]
        if two in ("==", "!=", ">=", "<="):
            return clause[:i].strip(), two, clause[i + 2:].strip()
        if c in "<>":
            return clause[:i].strip(), c, clause[i + 1:].strip()
    return clause.strip(), None, None


def alert_signals(expr: str) -> list[str]:
    """The left-hand signal of every clause of an alert expression."""
    return [split_comparison(clause)[0] for clause in split_set_operators(expr)]


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (function names, keywords, label names and
    grouping labels excluded)."""
    s = expr
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', s)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range / subquery windows
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if word.lower() in _KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    # {__name__="..."} selectors
    names.update(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    return names
