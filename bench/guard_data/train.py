"""Train the guard's learned scorer (``model.json``) on the dev split only.

    pip install -e '.[train]'          # scikit-learn, for training only
    python bench/guard_data/train.py   # writes operator/agent_operator/guard/model.json
    python bench/guard_data/train.py --check   # compare with the shipped file

Training data: the dev rows of ``attacks.jsonl`` (label 1), ``benign.jsonl``
and ``near_miss.jsonl`` (label 0). Features are the distinct word unigrams
and bigrams of the guard's normalised ``words`` view
(``agent_operator.guard.model.feature_names``), kept when they occur in at
least ``MIN_GROUPS`` template groups of dev (a word seen in one
template only says nothing about unseen templates). The model is an
L2-regularised logistic regression (liblinear, fixed seed: deterministic);
weights below ``PRUNE`` in magnitude are dropped, which keeps the file small.
(L1 gave sparser weights but about 15 points less cross-validated detection.)

Hyper-parameters are chosen by cross-validation grouped by template inside
dev (``GroupKFold``): a template and its translations are never split
between training and validation folds, as with dev and held-out. For each
``C`` the out-of-fold scores give the detection at the lowest threshold whose
out-of-fold false-positive rate is at most ``MAX_CV_FP``; the best ``C`` is
refitted on all of dev and its bias shifted so that the chosen threshold
maps to the guard's ``DEFAULT_THRESHOLD``. Held-out is never read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from agent_operator.guard import DEFAULT_THRESHOLD, PromptGuard
from agent_operator.guard.model import FORMAT, MODEL_FILE, feature_names
from agent_operator.guard.normalise import normalise

DATA = Path(__file__).resolve().parent
OUT = DATA.parent.parent / "operator" / "agent_operator" / "guard" / MODEL_FILE
# Derived encodings (base64, hex, URL) are the same attacks as their sources:
# the guard decodes them before the model sees them, so their raw tokens
# would only teach the model what base64 looks like.
SKIP_SOURCES = frozenset({"derived:base64", "derived:hex", "derived:url"})
MIN_GROUPS = 2
C_GRID = (0.25, 0.5, 1.0, 2.0)
PRUNE = 0.02
FOLDS = 5
# The model's share of false positives: 0.3 % out of fold, so that rules plus
# model stay under the 1 % target (0.5 % while the target was 2 %).
MAX_CV_FP = 0.003
# Benign samples weigh more: a false positive blocks a real user.
BENIGN_WEIGHT = 2.0
DIGITS = 4
# Rule scores at or above this are never overruled (scanner._STRONG).
STRONG = 0.9
VETO_MARGIN = 0.5


def load_dev() -> list[dict[str, Any]]:
    """Dev rows of the three files, label 1 for attacks, in file order.

    The near-miss set's dev texts (``near_miss.jsonl``) are benign training
    data like the others; its held-out texts, as every held-out text, are
    never read.
    """
    rows = []
    for name, label in (("attacks", 1), ("benign", 0), ("near_miss", 0)):
        with (DATA / f"{name}.jsonl").open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if row["split"] == "dev" and row["source"] not in SKIP_SOURCES:
                    rows.append({**row, "label": label})
    return rows


def featurise(rows: list[dict[str, Any]]) -> list[set[str]]:
    return [feature_names(normalise(row["text"]).tokens) for row in rows]


def vocabulary(features: list[set[str]], groups: list[str]) -> list[str]:
    seen: dict[str, set[str]] = {}
    for names, group in zip(features, groups, strict=True):
        for name in names:
            seen.setdefault(name, set()).add(group)
    return sorted(name for name, gs in seen.items() if len(gs) >= MIN_GROUPS)


def matrix(features: list[set[str]], vocab: list[str]) -> csr_matrix:
    index = {name: n for n, name in enumerate(vocab)}
    indptr, indices = [0], []
    for names in features:
        indices.extend(sorted(index[n] for n in names if n in index))
        indptr.append(len(indices))
    data = np.ones(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(features), len(vocab)))


def fit(x: csr_matrix, y: np.ndarray, c: float) -> LogisticRegression:
    weights = np.where(y == 0, BENIGN_WEIGHT, 1.0)
    model = LogisticRegression(
        l1_ratio=0.0, solver="liblinear", C=c, random_state=0, max_iter=1000, tol=1e-6
    )
    model.fit(x, y, sample_weight=weights)
    # Pruning keeps the shipped file small; done inside cross-validation
    # too, so the chosen operating point accounts for it.
    model.coef_[np.abs(model.coef_) < PRUNE] = 0.0
    return model


def operating_point(scores: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Lowest threshold with false-positive rate <= MAX_CV_FP: (t, det, fp)."""
    benign = np.sort(scores[y == 0])[::-1]
    allowed = math.floor(MAX_CV_FP * len(benign))
    # Just above the (allowed+1)-th highest benign score.
    threshold = float(np.nextafter(benign[allowed], np.inf)) if allowed < len(benign) else 0.0
    threshold = max(threshold, 0.1)
    detection = float(np.mean(scores[y == 1] >= threshold))
    fp = float(np.mean(scores[y == 0] >= threshold))
    return threshold, detection, fp


def cross_validate(
    features: list[set[str]], y: np.ndarray, groups: list[str], c: float
) -> np.ndarray:
    """Out-of-fold probabilities, vocabulary rebuilt inside each fold."""
    out = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=FOLDS).split(features, y, groups):
        tr_feats = [features[i] for i in train]
        vocab = vocabulary(tr_feats, [groups[i] for i in train])
        model = fit(matrix(tr_feats, vocab), y[train], c)
        out[test] = model.predict_proba(matrix([features[i] for i in test], vocab))[:, 1]
    return out


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped file")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    rows = load_dev()
    features = featurise(rows)
    y = np.array([row["label"] for row in rows])
    groups = [row["group"] for row in rows]
    guard = PromptGuard(learned=False)
    rule_scores = np.array([guard.scan(row["text"]).score for row in rows])
    rule_hits = rule_scores >= DEFAULT_THRESHOLD

    print(f"dev: {int(y.sum())} attacks, {int((y == 0).sum())} benign, {len(set(groups))} groups")
    best: tuple[float, float, float, float, np.ndarray] | None = None
    for c in C_GRID:
        oof = cross_validate(features, y, groups, c)
        t, det, fp = operating_point(oof, y)
        hit = rule_hits | (oof >= t)
        print(
            f"C={c:<5} model-only: threshold {t:.3f} detection {det:.1%} fp {fp:.1%}; "
            f"with rules: detection {hit[y == 1].mean():.1%} fp {hit[y == 0].mean():.1%}"
        )
        if best is None or det > best[1]:
            best = (c, det, fp, t, oof)
    assert best is not None
    c, det, fp, t, oof = best
    vocab = vocabulary(features, groups)
    model = fit(matrix(features, vocab), y, c)
    # Shift the bias so that the chosen operating point is the guard's threshold.
    shift = logit(DEFAULT_THRESHOLD) - logit(t)
    bias = float(model.intercept_[0]) + shift
    # The veto: half the lowest out-of-fold probability of a dev attack that
    # only weak rules catch, so that on dev it overrules no attack.
    weak = (rule_scores >= DEFAULT_THRESHOLD) & (rule_scores < STRONG) & (y == 1)
    veto = sigmoid(logit(VETO_MARGIN * float(oof[weak].min())) + shift)
    weights = {
        name: round(float(w), DIGITS)
        for name, w in zip(vocab, model.coef_[0], strict=True)
        if round(float(w), DIGITS) != 0.0
    }
    document = {
        "format": FORMAT,
        "about": "bench/guard_data/train.py: L2 logistic regression, pruned, dev split only",
        "c": c,
        "cv": {
            "folds": FOLDS,
            "threshold": round(t, DIGITS),
            "detection": round(det, DIGITS),
            "false_positive": round(fp, DIGITS),
        },
        "bias": round(bias, DIGITS),
        "veto": round(veto, DIGITS),
        "weights": dict(sorted(weights.items())),
    }
    text = json.dumps(document, indent=0, ensure_ascii=False, sort_keys=False) + "\n"
    signs = Counter("+" if w > 0 else "-" for w in weights.values())
    print(f"chose C={c}: {len(weights)} weights ({signs['+']} positive), {len(text)} bytes")
    if args.check:
        same = args.out.read_text(encoding="utf-8") == text
        print("shipped model is up to date" if same else "shipped model differs")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
