"""Prompt-guard benchmark: detection, false positives and latency.

    python bench/guard.py [--threshold T] [--misses N] [--rounds N]   # tuning: dev only
    python bench/guard.py --final [--threshold T]                     # held-out, recorded

Reads bench/guard_data/{attacks,benign,near_miss}.jsonl (see its README) and
reports, for the rules alone and for rules plus the learned scorer, the
detection rate on attacks and the false-positive rate on benign and
near-miss texts, each for two placements of the text:

* ``inbound``: the user message of a chat-completions body, scanned whole as
  the inbound door does (``guard.scan_json(body)``);
* ``outbound``: the result of a tool call in a chat-completions body
  (system, user, assistant with ``tool_calls``, ``role: tool``), as the text
  itself for even-numbered samples and as ``{"status": "ok", "result": text}``
  JSON for odd ones; what is scanned is what the gateway's OpenAI dialect
  screens (``dialect_for("openai").screened_parts(body, frozenset())``).

By default only the dev split is evaluated (tuning mode); held-out figures
are never printed. ``--final`` evaluates the frozen held-out split instead
and appends a record (hashes of the rules and model, threshold, figures,
latency) to bench/guard_data/evaluations.jsonl, then says how many records
of the same guard exist: run it once, after tuning has stopped. Both modes
also print the per-call latency (microseconds per 1 KB, benign and attack
texts) and the worst-case speed on adversarial inputs (bench/guard_speed.py),
and write everything as JSON to bench/results/guard.json.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import statistics
import sys
import time
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

from agent_operator.gateway.dialects import dialect_for
from agent_operator.guard import DEFAULT_THRESHOLD, PromptGuard, Verdict

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "guard_data"
RESULTS = ROOT / "results" / "guard.json"
EVALUATIONS = DATA / "evaluations.jsonl"
# Data files and what a flag means on each: detection on attacks, false
# positives on the others.
SETS = {"attacks": "detection", "benign": "false_positive", "near-miss": "false_positive"}
FILES = {"attacks": "attacks.jsonl", "benign": "benign.jsonl", "near-miss": "near_miss.jsonl"}
PLACEMENTS = ("inbound", "outbound")
GUARDS = ("rules", "rules+model")
# Benign texts written to calibrate the learned scorer (bench/guard_data/
# own_benign.py); "original" false-positive rates leave them out, so the
# figures stay comparable with those measured before they existed.
CALIBRATION = "own:calibration"
# The targets the held-out figures are reported against.
TARGET_DETECTION = 0.95
TARGET_FALSE_POSITIVE = 0.01

MODEL = "gpt-4o-mini"
OPENAI = dialect_for("openai")


def load(name: str) -> list[dict[str, Any]]:
    """Rows of one data file; ``index`` is the row's line number in the file."""
    with (DATA / FILES[name]).open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{**row, "index": n} for n, row in enumerate(rows)]


def inbound_body(text: str) -> dict[str, Any]:
    """``text`` as the user message of a chat-completions request."""
    return {"model": MODEL, "messages": [{"role": "user", "content": text}]}


def outbound_body(text: str, index: int) -> dict[str, Any]:
    """``text`` as the result of a tool call the agent sends back to the provider.

    Odd indices wrap it in a JSON document, as many tools return, so the
    guard also sees it escaped (quotes as ``\\"``, line breaks as ``\\n``).
    """
    output = text if index % 2 == 0 else json.dumps({"status": "ok", "result": text})
    call = {"name": "fetch", "arguments": json.dumps({"query": "the user's request"})}
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Use the tools."},
            {"role": "user", "content": "Look this up for me, please."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": call}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": output},
        ],
    }


def screen(guard: PromptGuard, row: dict[str, Any], placement: str) -> Verdict:
    """The verdict of the door at ``placement`` on ``row``'s text."""
    if placement == "inbound":
        return guard.scan_json(inbound_body(row["text"]))
    body = outbound_body(row["text"], row["index"])
    return guard.scan_json(OPENAI.screened_parts(body, frozenset()))


def _rate(flagged: int, total: int, errors: int = 0) -> dict[str, Any]:
    rate = flagged / total if total else 0.0
    return {"flagged": flagged, "total": total, "rate": rate, "errors": errors}


def rates(
    guard: PromptGuard, rows: list[dict[str, Any]], placement: str, kind: str
) -> dict[str, Any]:
    """Share flagged overall and per family, with the flagged/total counts."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        # A scan that raises is counted apart (not as flagged): the door
        # would fail the request rather than block it.
        try:
            hit, error = int(screen(guard, row, placement).flagged), 0
        except Exception:  # any crash of the guard is a finding, counted apart
            hit, error = 0, 1
        keys = ["overall", row["family"]]
        if kind == "benign" and row["source"] != CALIBRATION:
            keys.append("original")
        for key in keys:
            counts[key][0] += hit
            counts[key][1] += 1
            counts[key][2] += error
    overall = counts.pop("overall", [0, 0, 0])
    return {
        **_rate(*overall),
        "families": {k: _rate(*c) for k, c in sorted(counts.items())},
    }


def evaluate(
    guards: dict[str, PromptGuard], data: dict[str, list[dict[str, Any]]], split: str
) -> dict[str, Any]:
    """figures[guard][placement][set] for the rows of ``split``."""
    figures: dict[str, Any] = {}
    for name, guard in guards.items():
        figures[name] = {
            placement: {
                kind: {
                    "measure": SETS[kind],
                    **rates(guard, [r for r in rows if r["split"] == split], placement, kind),
                }
                for kind, rows in data.items()
            }
            for placement in PLACEMENTS
        }
    return figures


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


def worst_case_speed(guard: PromptGuard) -> dict[str, Any] | None:
    """Throughput on adversarial inputs, from bench/guard_speed.py when present."""
    # ---------------------------------------------------------------------
    # Worst-case speed section: bench/guard_speed.py's measure(guard) ->
    # {"inputs": {...}, "worst": {"name", "mb_per_s"}}. Absent module: skipped.
    # ---------------------------------------------------------------------
    sys.path.insert(0, str(ROOT))
    try:
        from guard_speed import measure  # type: ignore[import-not-found]
    except ImportError:
        return None
    finally:
        sys.path.remove(str(ROOT))
    result: dict[str, Any] = measure(guard)
    return result


def cell(entry: dict[str, Any]) -> str:
    errors = f" {entry['errors']} err" if entry.get("errors") else ""
    return f"{entry['rate'] * 100:8.1f}% ({entry['flagged']:>3}/{entry['total']:>3}){errors}"


def show(figures: dict[str, Any], placement: str, families: bool) -> None:
    print(f"  {placement:<22}" + "".join(f"{name:>22}" for name in GUARDS))
    for kind, measure in SETS.items():
        label = "detection" if measure == "detection" else "false positives"
        entries = [figures[g][placement][kind] for g in GUARDS]
        print(f"    {kind + ' ' + label:<20}" + "".join(cell(e) for e in entries))
        if families:
            for family in entries[0]["families"]:
                cells = "".join(cell(e["families"][family]) for e in entries)
                print(f"      {family:<18}{cells}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def guard_identity() -> dict[str, str]:
    """Hashes of the shipped rules and model: what a recorded evaluation evaluated."""
    package = resources.files("agent_operator.guard")
    rules = package.joinpath("rules.yaml").read_bytes()
    model = package.joinpath("model.json").read_bytes()
    # The scanner's code is recorded too: the same rules and model behave
    # differently under another scanner.
    code = b"".join(
        f.read_bytes()
        for f in sorted(package.iterdir(), key=lambda f: f.name)
        if f.name.endswith(".py")
    )
    return {
        "rules_sha256": sha256(rules),
        "model_sha256": sha256(model),
        "guard_hash": sha256(rules + model)[:12],
        "code_sha256": sha256(code),
    }


def record_evaluation(record: dict[str, Any]) -> None:
    """Append ``record`` to evaluations.jsonl and say how many runs of this guard exist."""
    earlier = []
    if EVALUATIONS.exists():
        with EVALUATIONS.open(encoding="utf-8") as f:
            earlier = [json.loads(line) for line in f if line.strip()]
    with EVALUATIONS.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    same = [r for r in earlier if r.get("guard_hash") == record["guard_hash"]]
    print(
        f"recorded in {EVALUATIONS.relative_to(ROOT.parent)}: evaluation {len(same) + 1} "
        f"of guard {record['guard_hash']} ({len(earlier) + 1} records in all)"
    )
    if same:
        first = same[0]
        print(f"  first evaluation of this guard: {first['date']}, threshold {first['threshold']}")
        for placement in PLACEMENTS:
            row = first["figures"]["rules+model"][placement]
            print(
                f"    {placement:<9}"
                + "  ".join(f"{kind} {row[kind]['rate'] * 100:.1f}%" for kind in SETS)
            )
        print("  this one is not a first evaluation: report the first one beside it")


def targets(figures: dict[str, Any]) -> dict[str, bool]:
    """Whether rules plus model meet the targets, per placement."""
    out = {}
    for placement in PLACEMENTS:
        row = figures["rules+model"][placement]
        out[placement] = (
            row["attacks"]["rate"] >= TARGET_DETECTION
            and row["benign"]["rate"] <= TARGET_FALSE_POSITIVE
            and row["near-miss"]["rate"] <= TARGET_FALSE_POSITIVE
        )
    return out


def print_misses(guard: PromptGuard, data: dict[str, list[dict[str, Any]]], n: int) -> None:
    """Dev misses and dev false positives, for tuning (never held-out)."""
    for kind, rows in data.items():
        for placement in PLACEMENTS:
            shown = 0
            for row in rows:
                if row["split"] != "dev" or shown >= n:
                    continue
                try:
                    v = screen(guard, row, placement)
                except Exception as exc:  # shown, as rates() counts it
                    shown += 1
                    where = f"{placement} {kind}/{row['family']}"
                    print(f"ERROR {where} {exc!r:.60}: {row['text'][:80]!r}")
                    continue
                if v.flagged == (SETS[kind] == "detection"):
                    continue
                shown += 1
                tag = "MISS" if SETS[kind] == "detection" else "FP"
                print(
                    f"{tag} {placement} {kind}/{row['family']} {v.rule} {v.score:.2f}: "
                    f"{row['text'][:200]!r}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument(
        "--final",
        action="store_true",
        help="evaluate the held-out split and record it (once, after tuning)",
    )
    parser.add_argument(
        "--misses",
        type=int,
        default=0,
        help="print up to N dev misses and dev false positives per set and placement",
    )
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds over benign texts")
    args = parser.parse_args()
    if args.final and args.misses:
        parser.error("--misses prints dev texts only; it cannot go with --final")

    guards = {
        "rules": PromptGuard(threshold=args.threshold, learned=False),
        "rules+model": PromptGuard(threshold=args.threshold),
    }
    data = {kind: load(kind) for kind in SETS}
    split = "heldout" if args.final else "dev"
    figures = evaluate(guards, data, split)
    counts = ", ".join(
        f"{sum(r['split'] == split for r in rows)} {kind}" for kind, rows in data.items()
    )
    print(f"{split}: {counts} (threshold {args.threshold})")
    for placement in PLACEMENTS:
        show(figures, placement, families=placement == "inbound")
    met = targets(figures)
    print(
        f"targets (>= {TARGET_DETECTION:.0%} detection, <= {TARGET_FALSE_POSITIVE:.0%} false "
        "positives on benign and near-miss), rules+model: "
        + ", ".join(f"{p} {'met' if ok else 'NOT met'}" for p, ok in met.items())
    )
    if args.misses:
        print_misses(guards["rules+model"], data, args.misses)

    result: dict[str, Any] = {"split": split, "threshold": args.threshold, "figures": figures}
    result["latency"] = {}
    benign_texts = [r["text"] for r in data["benign"]]
    attack_texts = [r["text"] for r in data["attacks"]]
    for name, g in guards.items():
        lat = {
            "benign": latency(g, benign_texts, args.rounds),
            "attack": latency(g, attack_texts, 1),
        }
        result["latency"][name] = lat
        for kind, fig in lat.items():
            print(
                f"latency {name:<12} {kind:<7} "
                f"median {fig['median_us_per_kb']:6.1f} us/KB, "
                f"p99 {fig['p99_us_per_kb']:7.1f} us/KB ({fig['calls']} calls)"
            )

    speed = worst_case_speed(guards["rules+model"])
    result["worst_case_speed"] = speed
    if speed is None:
        print("worst-case speed: bench/guard_speed.py not found, skipped")
    else:
        worst = speed["worst"]
        print(f"worst-case speed: {worst['name']} at {worst['mb_per_s']:.1f} MB/s (rules+model)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT.parent)}")
    if args.final:
        record = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **guard_identity(),
            "threshold": args.threshold,
            "split": split,
            "data_sha256": {k: sha256((DATA / f).read_bytes()) for k, f in FILES.items()},
            "targets_met": met,
            "figures": figures,
            "latency": result["latency"],
            "worst_case_speed": None if speed is None else speed["worst"],
        }
        record_evaluation(record)


if __name__ == "__main__":
    main()
