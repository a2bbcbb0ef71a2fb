"""Unicode normalisation: mojibake repair, NFC, full-width ASCII folded, CJK punctuation kept.

Whitespace is unified (odd spaces to ' ', trailing spaces dropped, runs of blank lines collapsed) and
control and zero-width characters are removed, except newline and tab.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

# Full-width ASCII letters and digits (U+FF10-FF19, FF21-FF3A, FF41-FF5A) fold to ASCII; full-width
# punctuation such as ，。！？：；（） stays, since it is how Chinese is written.
_FULLWIDTH_ALNUM = {cp: cp - 0xFEE0 for cp in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]}
# Spaces other than U+0020 and U+3000 (the ideographic space is part of CJK typesetting and kept).
_ODD_SPACES = {cp: 0x20 for cp in [0x00A0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F]}
_TABLE = {**_FULLWIDTH_ALNUM, **_ODD_SPACES, 0x0D: None, 0x2028: 0x0A, 0x2029: 0x0A}
# C0/C1 controls except \t \n, zero-width characters, BOM, soft hyphen.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\u00ad]")
_SPACE_RUN = re.compile(r"[ \t]+")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANK_RUN = re.compile(r"\n{3,}")


def normalize_text(text: str, fix_mojibake: bool = True) -> str:
    """The text every later step sees: repaired, NFC, cleaned whitespace and controls."""
    if fix_mojibake and not text.isascii():
        text = ftfy.fix_text(text, normalization="NFC", uncurl_quotes=False, fix_character_width=False,
                             fix_latin_ligatures=False, unescape_html=False)
    else:
        text = unicodedata.normalize("NFC", text)
    text = text.translate(_TABLE)
    text = _CONTROL.sub("", text)
    text = _SPACE_RUN.sub(" ", text)
    text = _TRAILING.sub("\n", text)
    text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()
