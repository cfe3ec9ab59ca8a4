#!/usr/bin/env python3
"""Fails when an #include breaks the dependency direction app -> pipeline -> {operators, state} -> base.

STYLE.md rule 1 and the folder READMEs: base/ (the shared error model) includes nothing of ours;
operators/ is pure logic (nothing from pipeline/, state/ or app/; no librdkafka, RocksDB or
prometheus-cpp header); state/ stores bytes and knows no operator (nothing from operators/);
pipeline/ knows no CLI (nothing from app/).
Usage: check_dependency_direction.py [--root DIR] [--self-test]
"""
import argparse
import pathlib
import posixpath
import re
import sys
import tempfile


SOURCE_SUFFIXES = {".h", ".hh", ".hpp", ".cc", ".cpp", ".cxx", ".inc"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def is_kafka(path):
    return "rdkafka" in path  # librdkafka/rdkafka.h, rdkafka_mock.h, rdkafkacpp.h


def under(*folders):
    return lambda path: any(path.startswith(f + "/") for f in folders)


def starts(prefix):
    return lambda path: path.startswith(prefix)


# folder -> [(what it must not include, predicate on the normalised include path)]
RULES = {
    "base": [
        ("anything of ours", under("operators", "state", "pipeline", "app")),
        ("librdkafka", is_kafka),
        ("RocksDB", starts("rocksdb/")),
        ("prometheus-cpp", starts("prometheus/")),
    ],
    "operators": [
        ("pipeline/, state/ or app/", under("pipeline", "state", "app")),
        ("librdkafka", is_kafka),
        ("RocksDB", starts("rocksdb/")),
        ("prometheus-cpp", starts("prometheus/")),
    ],
    "state": [
        ("pipeline/ or app/", under("pipeline", "app")),
        ("operators/", under("operators")),
    ],
    "pipeline": [
        ("app/", under("app")),
    ],
}


def normalise(root, source, delimiter, included):
    """The include as a path from the repository root when it is one of ours ("../state/x.h" from
    operators/ is state/x.h); system includes unchanged."""
    if delimiter == '"' and (included.startswith("./") or included.startswith("../")):
        joined = posixpath.normpath(
            posixpath.join(source.parent.relative_to(root).as_posix(), included))
        return joined
    return posixpath.normpath(included)


def violations(root):
    found = []
    scanned = {}
    for folder, rules in RULES.items():
        files = sorted(p for p in (root / folder).rglob("*") if p.suffix in SOURCE_SUFFIXES)
        scanned[folder] = len(files)
        for source in files:
            text = source.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                included = normalise(root, source, m.group(1), m.group(2))
                for what, forbidden in rules:
                    if forbidden(included):
                        found.append(f"{source.relative_to(root)}:{number}: includes {m.group(2)}"
                                     f" ({folder}/ must not include {what})")
    return found, scanned


def check(root):
    found, scanned = violations(root)
    empty = [folder for folder, n in scanned.items() if n == 0]
    if empty:
        print(f"no sources found in {', '.join(empty)} under {root}: wrong --root?")
        return 1
    for v in found:
        print(v)
    summary = ", ".join(f"{folder}/ {n}" for folder, n in scanned.items())
    print(f"{len(found)} dependency-direction violation(s) in {summary} files")
    return 1 if found else 0


def self_test():
    """The checker flags each kind of bad include and passes the allowed ones."""
    allowed = {
        "base/a.h": ["#include <tl/expected.hpp>", "#include <string>"],
        "operators/a.cc": ['#include "operators/event.h"', '#include "base/result.h"',
                           "#include <absl/container/flat_hash_map.h>",
                           "#include <tl/expected.hpp>"],
        "state/a.cc": ['#include "state/a.h"', "#include <rocksdb/db.h>", '#include "base/result.h"'],
        "pipeline/a.cc": ['#include "operators/event.h"', '#include "state/checkpoint_store.h"',
                          "#include <librdkafka/rdkafka.h>", "#include <prometheus/counter.h>"],
    }
    bad = {
        "operators/b.h": ['#include "pipeline/kafka.h"', '#include "state/checkpoint_store.h"',
                          '#include "app/cli.h"', "#include <librdkafka/rdkafka.h>",
                          "#  include <rocksdb/db.h>", "#include <prometheus/registry.h>",
                          '#include "../pipeline/config.h"'],
        "base/b.h": ['#include "operators/time.h"', '#include "state/checkpoint_store.h"',
                     "#include <librdkafka/rdkafka.h>"],
        "state/b.cc": ['#include "pipeline/config.h"', '#include "app/cli.h"',
                       '#include "operators/event.h"', '#include "operators/time.h"'],
        "pipeline/b.cc": ['#include "app/cli.h"'],
    }
    expected_bad = sum(len(lines) for lines in bad.values())
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for files in (allowed, bad):
            for name, lines in files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        found, _ = violations(root)
    flagged_allowed = [v for v in found if "/a." in v.split(":")[0]]
    if len(found) != expected_bad or flagged_allowed:
        print(f"self-test failed: expected {expected_bad} violations in the b files, got:")
        for v in found:
            print("  " + v)
        return 1
    print(f"self-test passed: {expected_bad} bad includes flagged, allowed ones passed")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    return self_test() if args.self_test else check(args.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
