#!/usr/bin/env python3
"""The reference in docs/ matches the code (issue 19 item 8; ctest docs_reference).

- Every metric name the product code exports (a "socialpulse_*" string literal in base/,
  operators/, state/, pipeline/, app/) is in a table row of docs/metrics.md, and every metric
  that table names is exported by the code.
- Every relative link in README.md, the folder READMEs and docs/*.md points to a file that exists.
Configuration keys are checked by the C++ test ConfigReference.* against the parser's own schema.
"""
import argparse
import pathlib
import re
import sys

CODE_DIRS = ["base", "operators", "state", "pipeline", "app"]
METRIC_LITERAL = re.compile(r'"(socialpulse_[a-z0-9_]+)"')
DOC_METRIC = re.compile(r"`(socialpulse_[a-z0-9_]+)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def exported_metrics(root):
    names = set()
    for d in CODE_DIRS:
        for f in (root / d).rglob("*"):
            if f.suffix in (".cc", ".h"):
                names.update(METRIC_LITERAL.findall(f.read_text(encoding="utf-8")))
    return names


def documented_metrics(doc):
    names = set()
    for line in doc.splitlines():
        if line.startswith("| `socialpulse_"):
            names.update(DOC_METRIC.findall(line.split("|")[1]))
    return names


def broken_links(root):
    pages = [root / "README.md", *root.glob("*/README.md"), *(root / "docs").glob("*.md")]
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:
            if not (page.parent / target).exists():
                yield f"{page.relative_to(root)}: link to missing {target}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    root = pathlib.Path(ap.parse_args().root)
    doc_path = root / "docs" / "metrics.md"
    if not doc_path.exists():
        print("FAIL: docs/metrics.md is missing", file=sys.stderr)
        return 1
    code = exported_metrics(root)
    docs = documented_metrics(doc_path.read_text(encoding="utf-8"))
    failures = [f"metric {m} is exported but not in docs/metrics.md" for m in sorted(code - docs)]
    failures += [f"docs/metrics.md lists {m}, which the code does not export"
                 for m in sorted(docs - code)]
    if len(code) < 30:
        failures.append(f"found only {len(code)} metric names in the code: the scan is broken")
    failures += list(broken_links(root))
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    if not failures:
        print(f"ok: {len(code)} metrics documented, links resolve")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
