"""Prompt-guard benchmark: detection, false positives and latency.

    python bench/guard.py [--threshold T] [--split dev|heldout|all] [--misses N]

Reads bench/guard_data/{attacks,benign}.jsonl (see its README) and prints,
side by side for the rules alone and for rules plus the learned scorer, the
detection rate per attack family and the false-positive rate per benign
family for the dev and held-out splits ("original" counts only the benign
samples that predate the learned scorer's calibration texts), then the
per-call latency in microseconds per 1 KB of text (median and p99 over
benign and over attack texts resized to 1 KB), and writes everything as JSON
to bench/results/guard.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from agent_operator.guard import DEFAULT_THRESHOLD, PromptGuard

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "guard_data"
RESULTS = ROOT / "results" / "guard.json"
SPLITS = ("dev", "heldout")


def load(name: str) -> list[dict[str, str]]:
    with (DATA / f"{name}.jsonl").open(encoding="utf-8") as f:
        return [{**json.loads(line), "kind": name} for line in f if line.strip()]


GUARDS = ("rules", "rules+model")
# Benign texts written to calibrate the learned scorer (bench/guard_data/
# own_benign.py); "original" false-positive rates leave them out, so the
# figures stay comparable with those measured before they existed.
CALIBRATION = "own:calibration"


def rates(guard: PromptGuard, rows: list[dict[str, str]]) -> dict[str, Any]:
    """Share flagged per family and overall, with the flagged/total counts."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        hit = guard.scan(row["text"]).flagged
        keys = [row["family"], "overall"]
        if row["source"] != CALIBRATION and "benign" in row.get("kind", ""):
            keys.append("original")
        for key in keys:
            counts[key][0] += hit
            counts[key][1] += 1
    return {k: {"flagged": f, "total": t, "rate": f / t} for k, (f, t) in sorted(counts.items())}


def latency(guard: PromptGuard, texts: list[str], rounds: int) -> dict[str, float]:
    """Microseconds per call on texts of exactly 1024 characters."""
    kb = []
    for text in texts:
        while len(text) < 1024:
            text = text + "\n" + text
        kb.append(text[:1024])
    samples = []
    for _ in range(rounds):
        for text in kb:
            start = time.perf_counter_ns()
            guard.scan(text)
            samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return {
        "median_us_per_kb": statistics.median(samples),
        "p99_us_per_kb": samples[int(len(samples) * 0.99)],
        "calls": len(samples),
    }


def show(title: str, tables: dict[str, dict[str, Any]]) -> None:
    print(f"  {title:<22}" + "".join(f"{name:>22}" for name in tables))
    first = next(iter(tables.values()))
    for family in first:
        cells = "".join(
            f"{t[family]['rate'] * 100:8.1f}% ({t[family]['flagged']:>3}/{t[family]['total']:>3})"
            for t in tables.values()
        )
        print(f"    {family:<20}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="all")
    parser.add_argument(
        "--misses",
        type=int,
        default=0,
        help="print up to N dev misses and dev false positives (tuning aid)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    guards = {
        "rules": PromptGuard(threshold=args.threshold, learned=False),
        "rules+model": PromptGuard(threshold=args.threshold),
    }
    guard = guards["rules+model"]
    attacks, benign = load("attacks"), load("benign")
    result: dict[str, Any] = {"threshold": args.threshold, "splits": {}}
    for split in SPLITS if args.split == "all" else (args.split,):
        a = [r for r in attacks if r["split"] == split]
        b = [r for r in benign if r["split"] == split]
        per: dict[str, Any] = {
            name: {"detection": rates(g, a), "false_positive": rates(g, b)}
            for name, g in guards.items()
        }
        result["splits"][split] = per
        print(f"{split}: {len(a)} attacks, {len(b)} benign (threshold {args.threshold})")
        show("detection rate", {n: per[n]["detection"] for n in GUARDS})
        show("false-positive rate", {n: per[n]["false_positive"] for n in GUARDS})

    if args.misses:
        dev_a = [r for r in attacks if r["split"] == "dev"]
        dev_b = [r for r in benign if r["split"] == "dev"]
        missed = [r for r in dev_a if not guard.scan(r["text"]).flagged]
        false = [r for r in dev_b if guard.scan(r["text"]).flagged]
        for r in missed[: args.misses]:
            print(
                f"MISS {r['family']} {r['source']} {guard.scan(r['text']).score:.2f}: "
                f"{r['text'][:200]!r}"
            )
        for r in false[: args.misses]:
            v = guard.scan(r["text"])
            print(f"FP {r['family']} {v.rule} {v.score:.2f}: {r['text'][:200]!r}")

    for name, g in guards.items():
        lat = {
            "benign": latency(g, [r["text"] for r in benign], args.rounds),
            "attack": latency(g, [r["text"] for r in attacks], 1),
        }
        result[f"latency_{name}"] = lat
        for kind, figures in lat.items():
            print(
                f"latency {name:<12} {kind:<7} "
                f"median {figures['median_us_per_kb']:6.1f} us/KB, "
                f"p99 {figures['p99_us_per_kb']:7.1f} us/KB ({figures['calls']} calls)"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    main()
