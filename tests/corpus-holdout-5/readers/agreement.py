#!/usr/bin/env python3
"""Right / empty / wrong of each reader's labels against the corpus author's
(and of the readers against each other), per picklist, as `fieldgate eval`
counts them: "empty" is a value the other set has and this one left out.

`agreement.py --corpora DIR` also writes DIR/reader-x/notes.toml: the notes
with that reader's labels in place of the author's, for
`fieldgate eval --corpus DIR/reader-x` (the structurer against a reader)."""
import itertools
import json
import pathlib
import sys
import tomllib

args = sys.argv[1:]
if not (args == [] or (len(args) == 2 and args[0] == "--corpora")):
    sys.exit("usage: agreement.py [--corpora DIR]")
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


if args:
    out = pathlib.Path(args[1])
    for name, labels in sets.items():
        if name == "author":
            continue
        (out / name).mkdir(parents=True, exist_ok=True)
        with open(out / name / "notes.toml", "w") as f:
            for i, case in sets["author"].items():
                case = {**case, **{k: labels[i].get(k, "") for k in FIELDS}}
                f.write("[[case]]\n")
                for k, v in case.items():
                    f.write(f"{k} = {json.dumps(v, ensure_ascii=False)}\n")
                f.write("\n")
        print(f"wrote {out / name / 'notes.toml'}")
