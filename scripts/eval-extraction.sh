#!/usr/bin/env bash
# Extraction quality of the scraper on tests/fixtures/extraction: runs `scraper extract` on
# every fixture page and prints token-level precision, recall and F1 of the extracted text
# against the expected text (bags of lower-case words, the same measure the unit test
# test_extraction asserts), per page and over the set, plus metadata accuracy.
#   scripts/eval-extraction.sh [path/to/scraper]     (default: build/bin/scraper)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/build/bin/scraper}"
[[ -x "$BIN" ]] || { echo "no scraper binary at $BIN (make all)" >&2; exit 1; }
DIR="$ROOT/tests/fixtures/extraction"
python3 - "$BIN" "$DIR" <<'PY'
import collections, json, os, re, subprocess, sys
bin_, d = sys.argv[1], sys.argv[2]
expected = json.load(open(os.path.join(d, "expected.json")))
def toks(s):
    return collections.Counter(w.lower() for w in re.findall(r"[A-Za-z0-9\x80-\uffff]+", s or ""))
tp = gp = wp = 0
meta_ok = collections.Counter(); meta_n = collections.Counter()
rows = []
for name in sorted(expected):
    out = subprocess.run([bin_, "extract", os.path.join(d, name + ".html")], capture_output=True, text=True, check=True)
    item = json.loads(out.stdout)
    want = open(os.path.join(d, name + ".txt"), encoding="utf-8").read()
    g, w = toks(item["text"]), toks(want)
    common = sum((g & w).values())
    p = common / max(1, sum(g.values())); r = common / max(1, sum(w.values()))
    f = 2 * p * r / (p + r) if p + r else 0
    tp += common; gp += sum(g.values()); wp += sum(w.values())
    rows.append((name, p, r, f))
    e = expected[name]
    for k, got in (("title", item["title"]), ("author", item["author"]), ("lang", item["lang"]),
                   ("canonical_url", item["canonical_url"]),
                   ("published_date", (item["published"] or "")[:10] or None)):
        if e.get(k) is None: continue
        meta_n[k] += 1
        ok = got == e[k] if k != "lang" else (got or "").lower().startswith(e[k])
        meta_ok[k] += ok
        if not ok: print(f"  meta {name} {k}: got {got!r} want {e[k]!r}")
for name, p, r, f in rows:
    flag = "  <--" if f < 0.9 else ""
    print(f"{name:48s} P={p:.3f} R={r:.3f} F1={f:.3f}{flag}")
P = tp / gp; R = tp / wp; F = 2 * P * R / (P + R)
mean_f = sum(x[3] for x in rows) / len(rows)
print(f"\n{len(rows)} pages: micro P={P:.3f} R={R:.3f} F1={F:.3f}; macro F1={mean_f:.3f}; min F1={min(x[3] for x in rows):.3f}")
print("metadata: " + ", ".join(f"{k} {meta_ok[k]}/{meta_n[k]}" for k in sorted(meta_n)))
PY
