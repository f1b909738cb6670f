#!/usr/bin/env python3
"""Every metric the dashboard and the alert rules use is one sessiongate exports.

  deploy/check-metrics.py [--promql-rules FILE]

Reads deploy/metrics.txt (the one list of metric families, labels and closed label values) and
checks, in deploy/grafana/sessiongate.json (panel queries, variables, annotations) and in
deploy/prometheus/alerts.yml and alerts.test.yml:
  - every sessiongate_* name is a listed family (histograms: its _bucket, _sum, _count series);
  - every label in a selector belongs to that family (or is job, instance, le on buckets), and a
    label with a closed set of values is only matched against values of that set;
  - every label in `by (...)` / `without (...)` belongs to a family the expression uses;
  - the dashboard's structure: a datasource variable, every query on it, unique panel ids.
With --promql-rules FILE it also writes every dashboard query, Grafana variables replaced, as a
recording rule to FILE, so that `promtool check rules FILE` checks their PromQL syntax.
Families that nothing uses are listed, not failed.
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ALWAYS = {"job", "instance"}

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


def load_families():
    families = {}
    with open(os.path.join(HERE, "metrics.txt"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 3 or parts[1] not in ("counter", "gauge", "histogram"):
                problem(f"metrics.txt:{n}", f"expected 'name type labels [label=v1|v2 ...]': {line}")
                continue
            name, kind, labels = parts[0], parts[1], parts[2]
            if not re.fullmatch(r"sessiongate_[a-z0-9_]+", name):
                problem(f"metrics.txt:{n}", f"{name}: not a sessiongate_ name")
            if kind == "counter" and not name.endswith("_total"):
                problem(f"metrics.txt:{n}", f"{name}: a counter's name ends in _total")
            values = {}
            for spec in parts[3:]:
                label, _, vals = spec.partition("=")
                values[label] = set(vals.split("|"))
            families[name] = {
                "kind": kind,
                "labels": set() if labels == "-" else set(labels.split(",")),
                "values": values,
            }
    return families


def series_names(families):
    """Series name -> (family, extra labels allowed)."""
    out = {}
    for name, fam in families.items():
        if fam["kind"] == "histogram":
            out[name + "_bucket"] = (name, {"le"})
            out[name + "_sum"] = (name, set())
            out[name + "_count"] = (name, set())
        else:
            out[name] = (name, set())
    return out


SELECTOR = re.compile(r"\b(sessiongate_[A-Za-z0-9_]+)\s*(\{([^}]*)\})?")
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
GROUPING = re.compile(r"\b(by|without)\s*\(([^)]*)\)")


def check_expr(where, expr, families, series, used):
    expr_families = []
    for m in SELECTOR.finditer(expr):
        name = m.group(1)
        if name not in series:
            problem(where, f"{name} is not in deploy/metrics.txt")
            continue
        family, extra = series[name]
        used.add(family)
        expr_families.append(family)
        fam = families[family]
        allowed = fam["labels"] | ALWAYS | extra
        body = m.group(3) or ""
        pos = 0
        while pos < len(body.strip()):
            mm = MATCHER.match(body, pos)
            if not mm:
                problem(where, f"{name}{{{body}}}: cannot read the matchers")
                break
            pos = mm.end()
            label, op, value = mm.groups()
            if label not in allowed:
                problem(where, f"{name} has no label {label} (has: {', '.join(sorted(allowed))})")
                continue
            closed = fam["values"].get(label)
            if closed and "$" not in value:
                wanted = value.split("|") if op in ("=~", "!~") else [value]
                for v in wanted:
                    if re.fullmatch(r"[A-Za-z0-9_]+", v) and v not in closed:
                        problem(where, f'{name}{{{label}{op}"{value}"}}: {v} is not a value of {label} ({"|".join(sorted(closed))})')
    if not expr_families:
        return
    labels = set(ALWAYS) | {"le"}
    for f in expr_families:
        labels |= families[f]["labels"]
    for m in GROUPING.finditer(expr):
        for label in (l.strip() for l in m.group(2).split(",")):
            if label and label not in labels:
                problem(where, f"{m.group(1)} ({label}): no metric of this expression has that label")


def grafana_exprs(dashboard):
    """(where, expr) of every query in the dashboard."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if "expr" in t:
                    out.append((f"panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else q
            out.append((f"variable ${v.get('name')}", q))
    for a in dashboard.get("annotations", {}).get("list", []):
        if "expr" in a:
            out.append((f"annotation '{a.get('name')}'", a["expr"]))
    return out


def check_dashboard(dashboard):
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = [n for n, v in variables.items() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if not ds:
        problem("dashboard", "no Prometheus datasource variable")
        return
    ref = "${" + ds[0] + "}"
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            if p.get("type") != "row":
                if p.get("datasource", {}).get("uid") != ref:
                    problem(f"panel {p.get('id')}", f"datasource is not {ref}")
                for t in p.get("targets", []):
                    if t.get("datasource", {}).get("uid") != ref:
                        problem(f"panel {p.get('id')} {t.get('refId')}", f"datasource is not {ref}")
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for n, v in variables.items():
        if v.get("type") == "query" and v.get("datasource", {}).get("uid") != ref:
            problem(f"variable ${n}", f"datasource is not {ref}")
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        problem("dashboard", f"duplicate panel ids {sorted(dup)}")


def yaml_exprs(path):
    """(where, text) of each expr in a rules file, or each series of a promtool test file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        import yaml
    except ImportError:
        # No PyYAML: the whole file, as one text (names and selectors are still checked).
        return [(os.path.basename(path), text)]
    doc = yaml.safe_load(text)
    out = []
    for g in doc.get("groups", []) or []:
        for r in g.get("rules", []):
            out.append((f"{os.path.basename(path)} {r.get('alert') or r.get('record')}", str(r.get("expr", ""))))
    for i, t in enumerate(doc.get("tests", []) or []):
        for s in t.get("input_series", []):
            out.append((f"{os.path.basename(path)} test {i + 1}", s.get("series", "")))
    return out


def promql_rules(exprs, path):
    """Dashboard queries as recording rules, Grafana's variables replaced by plain values."""
    subst = [("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h")]
    lines = ["groups:", "  - name: sessiongate-dashboard-queries", "    rules:"]
    for n, (where, expr) in enumerate(exprs):
        for a, b in subst:
            expr = expr.replace(a, b)
        expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
        if expr.startswith("label_values("):
            continue
        lines.append(f"      - record: dashboard:query_{n}")
        lines.append(f"        expr: {json.dumps(expr)}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    families = load_families()
    series = series_names(families)
    used = set()
    count = 0
    with open(os.path.join(HERE, "grafana", "sessiongate.json"), encoding="utf-8") as f:
        dashboard = json.load(f)
    check_dashboard(dashboard)
    dash_exprs = grafana_exprs(dashboard)
    sources = [("sessiongate.json " + w, e) for w, e in dash_exprs]
    for name in ("alerts.yml", "alerts.test.yml"):
        sources += yaml_exprs(os.path.join(HERE, "prometheus", name))
    for where, expr in sources:
        check_expr(where, expr, families, series, used)
        count += 1
    if len(argv) == 3 and argv[1] == "--promql-rules":
        promql_rules(dash_exprs, argv[2])
    unused = sorted(set(families) - used)
    print(f"{len(families)} metric families in deploy/metrics.txt, {count} expressions checked")
    if unused:
        print("not used by the dashboard or the alerts: " + ", ".join(unused))
    if problems:
        for p in problems:
            print("  " + p)
        print(f"{len(problems)} problem(s)")
        return 1
    print("every metric and label used is in deploy/metrics.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
