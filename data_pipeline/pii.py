"""PII removal with typed placeholders: emails, IPs, HK and mainland phones, HKID, mainland ID, cards.

Identity and card numbers are replaced only when their check digit (HKID mod 11, GB 11643 mod 11, Luhn)
is valid, so ordinary long numbers survive.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable

# Digits not glued to other digits or letters on either side.
_L, _R = r"(?<![\w.+-])", r"(?![\w])"

# Local part from an ASCII letter or digit; Chinese text may touch it on either side (我bjgxtt@sohu.com我),
# a URL's user-info (http://host@other) may not.
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+/-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                   r"\.[A-Za-z]{2,}(?![A-Za-z0-9-])")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
IPV6 = re.compile(r"(?<![:\w])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![:\w])")
CN_ID = re.compile(r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\dA-Za-z])")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
HKID = re.compile(r"(?<![A-Za-z\d])([A-Z]{1,2})(\d{6})\s?(?:\(([\dA])\)|([\dA]))(?![\w])")
# +852 / (852) / 852- prefix with 8 digits, or a bare 8-digit number in HK's numbering plan written 4-4.
PHONE_HK = re.compile(
    r"(?:(?:\+|00)852|\(\+?852\)|(?<![\d+])852(?=[\s-]))[\s-]?[2-9]\d{3}[\s-]?\d{4}(?!\d)"
    r"|(?<![\d+\-–])(?<!\d[.,/:])(?P<a>[235679]\d{3})[\s-](?P<b>\d{4})(?!\d|[\-–.,/:]\d)"
)
# A bare 4-4 number that reads as a range or an amount, not a phone: two years (1997-2047), two round
# figures (5000-8000), two close numbers (fleet numbers 5001-5103, models 6681 6680), or one after a
# currency sign or before a unit (HK$2000 3000, 2800-3000米).
CLOSE_PAIR = 300
CURRENCY_BEFORE = re.compile(r"(?:[$¥£€＄]|HK\$|US\$|RMB|港幣|港元|人民幣)\s*$", re.IGNORECASE)
UNIT_AFTER = re.compile(r"^\s*(?:年|年代|年度|年間|年间|學年|学年|賽季|赛季|元|蚊|港元|美元|米|公尺|公里|呎|尺|人|個|个|頁|页|號|号|條|条|ms|km|m\b|kg|g\b|Hz|赫茲)")
PHONE_CN = re.compile(r"(?:(?:\+|00)86[\s-]?)?(?<!\d)1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)")

_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_valid(number: str) -> bool:
    """GB 11643-1999 check character of an 18-character mainland resident ID."""
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_WEIGHTS, strict=False))
    return "10X98765432"[total % 11] == number[17].upper()


def hkid_valid(letters: str, digits: str, check: str) -> bool:
    """HKID check digit: weighted sum of letters (A=10 .. Z=35, a leading space = 36) and digits, mod 11."""
    letters = letters.upper().rjust(2)
    values = [36 if c == " " else ord(c) - 55 for c in letters] + [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values, range(9, 1, -1), strict=False))
    expected = (11 - total % 11) % 11
    return check.upper() == ("A" if expected == 10 else str(expected))


def luhn_valid(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ip_valid(match: re.Match) -> bool:
    try:
        ipaddress.ip_address(match.group(0))
        return True
    except ValueError:
        return False


def _is_year(digits: str) -> bool:
    return 1000 <= int(digits) <= 2099


def phone_hk_valid(match: re.Match) -> bool:
    """A prefixed number always; a bare 4-4 one unless it reads as a year range or an amount."""
    a, b = match.group("a"), match.group("b")
    if a is None:
        return True
    if _is_year(a) and _is_year(b) and int(a) <= int(b):
        return False
    if (a.endswith("00") and b.endswith("00")) or abs(int(a) - int(b)) <= CLOSE_PAIR:
        return False
    before, after = match.string[max(0, match.start() - 6):match.start()], match.string[match.end():match.end() + 4]
    return not (CURRENCY_BEFORE.search(before) or UNIT_AFTER.match(after))


def _hkid_match(match: re.Match) -> bool:
    return hkid_valid(match.group(1), match.group(2), match.group(3) or match.group(4))


# type -> (pattern, validator, placeholder). Applied in this order: the long checked numbers first, so
# a card or ID number is not half-taken by the phone patterns.
RULES: dict[str, tuple[re.Pattern, Callable[[re.Match], bool] | None, str]] = {
    "email": (EMAIL, None, "<EMAIL>"),
    "cn_id": (CN_ID, lambda m: cn_id_valid(m.group(0)), "<CN_ID>"),
    "card": (CARD, lambda m: luhn_valid(m.group(0)), "<CARD>"),
    "hkid": (HKID, _hkid_match, "<HKID>"),
    "ip": (IPV4, _ip_valid, "<IP>"),
    "ipv6": (IPV6, _ip_valid, "<IP>"),
    "phone_hk": (PHONE_HK, phone_hk_valid, "<PHONE_HK>"),
    "phone_cn": (PHONE_CN, None, "<PHONE_CN>"),
}
_QUICK = re.compile(r"@|\d{4}|[A-Z]\d{6}|:[0-9A-Fa-f]{1,4}:")


def scrub_pii(text: str, types: list[str] | tuple[str, ...]) -> tuple[str, Counter]:
    """Text with each found item replaced by its placeholder, and counts by type."""
    counts: Counter = Counter()
    if not _QUICK.search(text):
        return text, counts
    for name, (pattern, valid, placeholder) in RULES.items():
        if (name if name != "ipv6" else "ip") not in types:
            continue

        def replace(match: re.Match, name: str = name, valid=valid, placeholder: str = placeholder) -> str:
            if valid is not None and not valid(match):
                return match.group(0)
            counts["ip" if name == "ipv6" else name] += 1
            return placeholder

        text = pattern.sub(replace, text)
    return text, counts
