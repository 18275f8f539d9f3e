#!/usr/bin/env python3
"""Right / empty / wrong of each reader's labels against the corpus author's
(and of the readers against each other), per picklist, as `fieldgate eval`
counts them: "empty" is a value the other set has and this one left out."""
import itertools
import pathlib
import tomllib

here = pathlib.Path(__file__).parent
FIELDS = ["Priority", "Type", "Reason"]


def load(path):
    return {c["id"]: c for c in tomllib.loads(path.read_text())["case"]}


sets = {"author": load(here.parent / "notes.toml")}
for p in sorted(here.glob("reader-*.toml")):
    sets[p.stem] = load(p)
for name, s in sets.items():
    assert s.keys() == sets["author"].keys(), f"{name}: not the same notes"


def score(ref, other):
    rows, total = {}, [0, 0, 0]
    for f in FIELDS:
        counts = [0, 0, 0]
        for i, case in ref.items():
            a, b = case.get(f, ""), other[i].get(f, "")
            counts[0 if a == b else 1 if b == "" else 2] += 1
        rows[f] = counts
        total = [t + c for t, c in zip(total, counts)]
    rows["combined"] = total
    return rows


for ref, other in itertools.permutations(sets, 2):
    if other == "author":
        continue
    rows = score(sets[ref], sets[other])
    print(f"{other} against {ref} (right / empty / wrong %)")
    for f, (r, e, w) in rows.items():
        n = r + e + w
        print(f"  {f:<9} {100 * r / n:5.1f} / {100 * e / n:5.1f} / {100 * w / n:5.1f}")
