# ruff: noqa: RUF001  (this file is a table of look-alike letters)
"""Look-alike letters folded to Latin (applied after NFKC and casefold).

A small hand-picked subset of Unicode's confusables.txt: the Cyrillic, Greek,
Armenian and IPA letters that render like lower-case Latin letters in common
fonts. NFKC already folds full-width, mathematical and circled letters.
"""

from __future__ import annotations

_PAIRS: dict[str, str] = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "с": "c",
    "ԁ": "d",
    "е": "e",
    "ё": "e",
    "һ": "h",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "к": "k",
    "ӏ": "l",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "ԛ": "q",
    "г": "r",
    "ѕ": "s",
    "т": "t",
    "ц": "u",
    "ѵ": "v",
    "ԝ": "w",
    "х": "x",
    "у": "y",
    "ү": "y",
    "з": "3",
    "ь": "b",
    "п": "n",
    "ո": "n",
    # Greek
    "α": "a",
    "β": "b",
    "ε": "e",
    "η": "n",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "γ": "y",
    "ω": "w",
    "ϲ": "c",
    "ϳ": "j",
    # Armenian
    "օ": "o",
    "ս": "u",
    "հ": "h",
    "ց": "g",
    "զ": "q",
    # Latin extensions and IPA that pass through NFKC unchanged
    "ı": "i",
    "ɡ": "g",
    "ɑ": "a",
    "ɩ": "i",
    "ʀ": "r",
    "ɪ": "i",
    "ᴏ": "o",
    "ᴜ": "u",
    "ꞵ": "b",
    "ʏ": "y",
    "ɴ": "n",
    "ᴍ": "m",
    "ᴛ": "t",
    "ᴇ": "e",
    "ꜱ": "s",
    "ᴀ": "a",
    "ᴄ": "c",
    "ᴅ": "d",
    "ᴋ": "k",
    "ᴘ": "p",
    "ᴠ": "v",
    "ᴡ": "w",
    "ᴢ": "z",
    "ʜ": "h",
    "ʟ": "l",
    "ǀ": "l",
}

# Upper-case forms too: the folding runs before casefolding, so that the
# case-sensitive "raw" view sees Latin letters as well.
_UPPER = {k.upper(): v.upper() for k, v in _PAIRS.items() if len(k.upper()) == 1 and k.upper() != k}

CONFUSABLES: dict[int, str] = str.maketrans({**_UPPER, **_PAIRS})
