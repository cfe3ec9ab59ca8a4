#!/usr/bin/env python3
"""Validates schemas/examples against schemas/social_event.v1.schema.json (JSON Schema draft-07).

valid/*.json must validate; invalid/*.json whose expected reason is `schema` or `malformed_json`
must fail (to parse or to validate). Reasons only the decoder can know (too_large, future_time,
unknown_brand) and examples marked `decoder_only:` in their .expect sidecar are skipped, with a
note. Examples carrying a `header: ce_specversion=...` line are CloudEvents binary mode: their
body is checked against #/definitions/event_body, because id/time may come from headers.
Usage: check_examples.py SCHEMA EXAMPLES_DIR
"""
import datetime
import json
import re
import pathlib
import sys

import jsonschema

DECODER_ONLY_REASONS = {"too_large", "future_time", "unknown_brand"}


def read_expect(path: pathlib.Path) -> dict:
    sidecar = path.with_suffix(".expect")
    out = {"headers": []}
    if sidecar.exists():
        for line in sidecar.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "header":
                out["headers"].append(value.split("=", 1)[0])
            else:
                out[key] = value
    return out


def reject_constant(name):
    # Python's json accepts NaN/Infinity; JSON (and simdjson) do not.
    raise ValueError(f"non-JSON constant {name}")


def load(path: pathlib.Path):
    return json.loads(path.read_bytes().decode("utf-8"), parse_constant=reject_constant)


RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def is_rfc3339(value) -> bool:
    """RFC 3339 date-time, checked here rather than through jsonschema's optional
    rfc3339-validator dependency, which Debian's python3-jsonschema does not pull in."""
    if not isinstance(value, str):
        return True
    m = RFC3339.match(value)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    if m.group(8) not in ("Z", "z"):
        oh, om = int(m.group(8)[1:3]), int(m.group(8)[4:6])
        if oh > 23 or om > 59:
            return False
    return True


def main() -> int:
    schema_path, examples = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    checker = jsonschema.FormatChecker()
    checker.checks("date-time")(is_rfc3339)
    full = jsonschema.Draft7Validator(schema, format_checker=checker)
    body_schema = {"definitions": schema["definitions"], "allOf": [{"$ref": "#/definitions/event_body"}]}
    body = jsonschema.Draft7Validator(body_schema, format_checker=checker)

    failures, checked, skipped = [], 0, 0
    valid = sorted((examples / "valid").glob("*.json"))
    invalid = sorted((examples / "invalid").glob("*.json"))
    if len(valid) < 12 or len(invalid) < 15:
        failures.append(f"too few examples: {len(valid)} valid, {len(invalid)} invalid")

    for path in valid:
        expect = read_expect(path)
        validator = body if "ce_specversion" in expect["headers"] else full
        try:
            errors = [e.message for e in validator.iter_errors(load(path))]
        except Exception as e:  # noqa: BLE001 - any parse failure is a failure here
            errors = [f"does not parse: {e}"]
        checked += 1
        if errors:
            failures.append(f"{path.name}: expected valid, got {errors[:3]}")

    for path in invalid:
        expect = read_expect(path)
        reason = expect.get("reason")
        if reason is None or "detail" not in expect:
            failures.append(f"{path.name}: .expect sidecar needs `reason:` and `detail:`")
            continue
        if reason in DECODER_ONLY_REASONS or "decoder_only" in expect:
            skipped += 1
            print(f"skip {path.name}: decoder-only ({expect.get('decoder_only', reason)})")
            continue
        if reason not in ("schema", "malformed_json"):
            failures.append(f"{path.name}: unknown reason {reason!r}")
            continue
        validator = body if "ce_specversion" in expect["headers"] else full
        checked += 1
        try:
            instance = load(path)
        except Exception:  # noqa: BLE001 - unparseable is the expected outcome for malformed_json
            continue
        if reason == "malformed_json":
            failures.append(f"{path.name}: expected malformed JSON but Python parsed it")
        elif validator.is_valid(instance):
            failures.append(f"{path.name}: expected schema failure but it validates")

    for f in failures:
        print("FAIL", f)
    print(f"{checked} checked, {skipped} decoder-only skipped, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
