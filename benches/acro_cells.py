"""ACRO's per-cell disclosure verdicts for one table, as a reference for unseen's own checks.

Reads microdata (a CSV with header `subject,row,col,value`), runs ACRO (PyPI `acro`, the
statistical-disclosure-control checker of AI-SDC) with its default risk appetite (threshold 10,
p-ratio p 0.10, nk-rule n 2 k 0.9, zeros disclosive) on
`crosstab(df.row, df.col, values=df.value, aggfunc="sum")`, and writes one JSON object:

    {"acro_version": "...", "seconds": best wall seconds of the crosstab call, "rows": microdata rows,
     "aggfunc": "sum", "checks": {ACRO check name: "pass" | "fail" | "review"},
     "dominance_undefined_negative": bool,
     "cells": [{"row": "...", "col": "...", "threshold": bool, "p_ratio": bool, "nk_rule": bool,
                "zeros": bool, "negative": bool}, ...]}

A true verdict means ACRO finds the cell disclosive by that rule. The verdicts are ACRO's own
per-cell masks (the `sdc["cells"]` positions of the output's record, which ACRO's
`ManyChecksResults.get_table_sdc` takes from each check's mask), cross-checked against the
record's labelled `outcome` table. Every cell of ACRO's table is listed, empty ones included
(ACRO crosstabs with dropna=False, so that is every row label x every col label).

A rule ACRO does not run for this kind of table is false for every cell and absent from
`checks`: for sums and means ACRO runs MinimumThresholdCheck, NKCheck, PPercentCheck (and the
always-passing PresenceOfLinkedTableCheck) but not PresenceOfZeroCheck, which it runs only for
counts (`--aggfunc count`, i.e. `crosstab(df.row, df.col)`), medians, minima, maxima and modes.
If any value in the table is negative ACRO does not evaluate dominance at all: NKCheck and
PPercentCheck then report "review" and mark exactly the cells holding a negative value, which
this script reports as `negative` (with `dominance_undefined_negative` true), not as p_ratio or
nk_rule.

Usage: python benches/acro_cells.py --data MICRODATA.csv --out VERDICTS.json [--repeat N]
           [--aggfunc sum|mean|count]
Needs `acro` importable (pip install acro), e.g. from the benchmark venv
~/.cache/unseen-bench-venv made by `bench_python` in benches/src/query_suite.rs.
"""

import argparse
import json
import logging
import math
import sys
import time
import warnings

# ACRO's check names (acro/checks.json) and the verdict each feeds.
THRESHOLD = "MinimumThresholdCheck"
P_RATIO = "PPercentCheck"
NK_RULE = "NKCheck"
ZEROS = "PresenceOfZeroCheck"
VERDICTS = {THRESHOLD: "threshold", P_RATIO: "p_ratio", NK_RULE: "nk_rule", ZEROS: "zeros"}


def fail(message: str) -> None:
    print(f"acro_cells: {message}", file=sys.stderr)
    sys.exit(1)


def read_microdata(path: str):
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        fail(f"{path}: not a readable CSV ({error})")
    expected = ["subject", "row", "col", "value"]
    if list(df.columns) != expected:
        fail(f"{path}: header must be {','.join(expected)}, found {','.join(map(str, df.columns))}")
    if len(df) == 0:
        fail(f"{path}: no data rows")
    for name in ["subject", "row", "col"]:
        empty = df[name].str.strip() == ""
        if empty.any():
            fail(f"{path}: empty {name} on data line {int(empty.to_numpy().argmax()) + 2}")
    values = pd.to_numeric(df["value"].str.strip().replace("", "nan"), errors="coerce")
    bad = values.isna() | ~values.map(math.isfinite)
    if bad.any():
        line = int(bad.to_numpy().argmax())
        fail(f"{path}: value {df['value'].iloc[line]!r} on data line {line + 2} is not a finite number")
    df["value"] = values.astype("float64")
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description="Write ACRO's per-cell disclosure verdicts as JSON.")
    parser.add_argument("--data", required=True, help="microdata CSV with header subject,row,col,value")
    parser.add_argument("--out", required=True, help="where to write the verdicts JSON")
    parser.add_argument("--repeat", type=int, default=3, help="crosstab runs to time; the best is kept")
    parser.add_argument("--aggfunc", choices=["sum", "mean", "count"], default="sum",
                        help="what the table shows (default sum; count runs ACRO's frequency checks)")
    args = parser.parse_args()
    if args.repeat < 1:
        fail("--repeat must be at least 1")

    df = read_microdata(args.data)

    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    import acro
    from acro.version import __version__ as acro_version

    # ACRO logs at INFO (loggers "acro", "acro:records", ...) to the root handler it installs on
    # import; keep only real errors.
    logging.disable(logging.WARNING)
    session = acro.ACRO(suppress=False)
    config = session.config
    defaults = {"safe_threshold": 10, "safe_pratio_p": 0.1, "safe_nk_n": 2, "safe_nk_k": 0.9,
                "zeros_are_disclosive": True, "check_missing_values": False}
    for key, value in defaults.items():
        if config.get(key) != value:
            fail(f"ACRO's default config has {key}={config.get(key)!r}, expected {value!r}")

    def run():
        if args.aggfunc == "count":
            return session.crosstab(df.row, df.col)
        return session.crosstab(df.row, df.col, values=df.value, aggfunc=args.aggfunc)

    best = math.inf
    records = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        table = run()
        best = min(best, time.perf_counter() - started)
        records.append(session.results.get_index(len(session.results.results) - 1))
    record = records[0]
    if any(other.sdc != record.sdc for other in records[1:]):
        fail("ACRO gave different verdicts on repeated runs of the same crosstab")

    checks = dict(record.fair.get("check_status", {}))
    cells_by_check = record.sdc.get("cells", {})
    rows, cols = list(table.index), list(table.columns)
    if table.index.nlevels != 1 or table.columns.nlevels != 1:
        fail(f"expected a flat row x col table from ACRO, got {table.index.nlevels} x {table.columns.nlevels} levels")
    # With a negative value anywhere, NKCheck/PPercentCheck return "review" and a mask of the cells
    # holding negatives instead of a dominance verdict (acro/sdcchecks.py).
    negative_mode = any(checks.get(name) == "review" for name in (NK_RULE, P_RATIO))

    verdicts = {(r, c): {"threshold": False, "p_ratio": False, "nk_rule": False, "zeros": False, "negative": False}
                for r in range(len(rows)) for c in range(len(cols))}
    for check, positions in cells_by_check.items():
        field = VERDICTS.get(check)
        if field is None:
            continue
        if negative_mode and check in (NK_RULE, P_RATIO):
            field = "negative"
        for r, c in positions:
            if (r, c) not in verdicts:
                fail(f"ACRO's {check} names cell ({r}, {c}) outside its {len(rows)} x {len(cols)} table")
            verdicts[(r, c)][field] = True

    # Cross-check the positions against ACRO's labelled outcome table ("ok" or "Check; Check; ").
    outcome = record.outcome
    for (r, c), verdict in verdicts.items():
        text = str(outcome.loc[rows[r], cols[c]])
        flagged = {name for name in text.replace(" ", "").split(";") if name} - {"ok"}
        expected = {name for name, field in VERDICTS.items() if verdict[field]}
        if negative_mode and verdict["negative"]:
            expected |= {name for name in (NK_RULE, P_RATIO) if name in cells_by_check}
        if flagged != expected:
            fail(f"ACRO's outcome for cell ({rows[r]}, {cols[c]}) says {text!r} but its masks say {sorted(expected)}")

    result = {
        "acro_version": acro_version,
        "seconds": best,
        "rows": int(len(df)),
        "aggfunc": args.aggfunc,
        "checks": checks,
        "dominance_undefined_negative": negative_mode,
        "cells": [{"row": str(rows[r]), "col": str(cols[c]), **verdicts[(r, c)]}
                  for r in range(len(rows)) for c in range(len(cols))],
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")


if __name__ == "__main__":
    main()
