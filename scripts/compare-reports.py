#!/usr/bin/env python3
"""Compares two folders of report CSVs (scripts/same-answers.sh writes them) row by row.

    scripts/compare-reports.py /tmp/before /tmp/after

Rows are matched by trace, policy, budget and cache scope; for each file it prints rows only one side has, and per
strategy the columns whose values differ. Exit 0 when every matched row is byte-identical.
"""
import csv
import os
import sys

KEY = ("trace", "policy", "budget_bytes")


def rows(path):
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    return {tuple(r[k] for k in KEY): r for r in table}


def main(before, after):
    identical = True
    for name in sorted(set(os.listdir(before)) | set(os.listdir(after))):
        if not name.endswith(".csv"):
            continue
        if name not in os.listdir(after) or name not in os.listdir(before):
            print(f"{name}: only in {'before' if name in os.listdir(before) else 'after'}")
            identical = False
            continue
        old, new = rows(os.path.join(before, name)), rows(os.path.join(after, name))
        added = sorted({k[1] for k in new.keys() - old.keys()})
        removed = sorted({k[1] for k in old.keys() - new.keys()})
        changed = {}
        for key in old.keys() & new.keys():
            for column, value in old[key].items():
                if new[key].get(column) != value:
                    changed.setdefault(key[1], set()).add(column)
        if added or removed or changed:
            print(f"{name}:")
            if added:
                print(f"  new rows: {', '.join(added)}")
            if removed:
                print(f"  rows gone: {', '.join(removed)}")
            for policy, columns in sorted(changed.items()):
                print(f"  {policy}: {', '.join(sorted(columns))}")
        identical = identical and not (removed or changed)
    print("every matched row is identical" if identical else "rows differ")
    return 0 if identical else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
