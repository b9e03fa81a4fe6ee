"""The text checks curation runs on each record: markup, junk, language, and personal data (emails, phone and card
numbers, street addresses, names), each a small function the pipeline's steps call."""

from __future__ import annotations

import html
import re
from collections import Counter

TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")


ENTITY = re.compile(r"&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")


def strip_markup(text: str) -> tuple[str, bool]:
    """Remove HTML tags and decode entities; returns ``(clean_text, changed)``."""
    if not TAG.search(text) and not ENTITY.search(text):
        return text, False
    cleaned = html.unescape(TAG.sub(" ", text)).replace("\xa0", " ")
    return " ".join(cleaned.split()), True


JUNK = {
    "asdf",
    "test",
    "testing",
    "test test",
    "testing 123",
    "test 123",
    "lorem ipsum",
    "xxx",
    "n/a",
    "na",
    "none",
    "null",
    "qwerty",
    "hello",
    "hi",
    "...",
    "?",
    "-",
    "foo",
    "bar",
    "sdfsdf",
    "aaa",
    "asdfgh",
    "blah",
}


def is_junk(text: str, min_words: int = 3) -> str | None:
    """Why a text is not a real message (empty, placeholder, keyboard mash, under ``min_words``), or None."""
    stripped = text.strip()
    if not stripped:
        return "empty or whitespace-only text"
    words = re.findall(r"[a-zA-Z']+", stripped.lower())
    if " ".join(words) in JUNK or stripped.lower() in JUNK:
        return f"placeholder text {stripped[:20]!r}"
    if len(words) < min_words:
        return f"too short to be a message ({len(words)} word(s))"
    return None


ENGLISH = set(
    "the a an and or but is are was were i you it my me to of in on for with this that have has not no "
    "can do does please help why what when how your at from be been still since".split()
)


OTHER = set(
    "el la los las de que y en un una por para con mi es se lo le al del muy está desde ayer hola favor "
    "quiero hay cuando pero como también gracias "
    "le les des et est je mon ma ne pas une pour avec qui sur dans par tout fois jour mais sont bonjour "
    "merci depuis très vous nous "
    "der die das und ist ich mein meine nicht ein eine mit für auf zu den von bitte seit hallo danke "
    "wir sie kaputt einen dem".split()
)


def non_english(text: str) -> bool:
    """True when a text reads as another language: its function words and accented letters.

    Short support messages defeat statistical detectors; these two signals are robust for them.
    """
    words = re.findall(r"[^\W\d_]+", text.lower())
    english = sum(w in ENGLISH for w in words)
    other = sum(w in OTHER for w in words) + sum(any(c in "áéíóúñàèêçâîôûüöäß" for c in w) for w in words)
    return other >= 3 and other > 1.5 * english


def luhn_valid(digits: str) -> bool:
    total, double = 0, False
    for char in reversed(digits):
        value = int(char) * (2 if double else 1)
        total += value - 9 if value > 9 else value
        double = not double
    return total % 10 == 0


EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")


CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


# Groups of 3+ digits: dates and times ("2026-11-05 13:45") have 2-digit groups and never match.
# Not inside a longer run of digit groups (e.g. a card number that failed the Luhn check).
PHONE = re.compile(
    r"(?<![\w$.:-])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{3,4}\)[ .-]?)?\d{3,5}(?:[ .-]?\d{3,6}){1,2}"
    r"(?![ .:-]?\d)(?!\w)"
)


STREET = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Close|Terrace|"
    r"Crescent|Gardens|Square|Parkway"
)


ADDRESS = re.compile(
    # Not the cents of an amount: "$94.00 By the way" is no street.
    rf"(?<![.$£€\d])\b\d{{1,5}}[A-Za-z]?,?\s+(?:[A-Z][a-z]+\s+){{1,3}}(?:{STREET})\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Flat|Unit)\.?\s*\w+)?",
    re.IGNORECASE,
)


NAME_WORD = r"(?:[A-Z][a-z]+|[A-Z]'[A-Z][a-z]+)(?:-[A-Z][a-z]+)?"


NAME = re.compile(
    rf"(?:(?<=\bmy name is )|(?<=\bMy name is )|(?<=\bthis is )|(?<=\bThis is )|(?<=\bname: )|(?<=\bName: )"
    rf"|(?<=\bholder: )|(?<=\bHolder: )|(?<=Regards, )|(?<=regards, )|(?<=Thanks, )|(?<=thanks, )|(?<=Cheers, )"
    rf"|(?<=\n- )|(?<= - )|(?<=Sincerely, )){NAME_WORD}(?:\s+{NAME_WORD}){{1,2}}"
)


# Every name follows one of these (the lookbehinds of NAME).
NAME_CUES = (
    "my name is ",
    "My name is ",
    "this is ",
    "This is ",
    "name: ",
    "Name: ",
    "holder: ",
    "Holder: ",
    "Regards, ",
    "regards, ",
    "Thanks, ",
    "thanks, ",
    "Cheers, ",
    "\n- ",
    " - ",
    "Sincerely, ",
)


_DIGITS = re.compile(r"\d+")


def scrub_pii(text: str) -> tuple[str, Counter]:
    """Replace emails, card numbers (Luhn-checked), phones, street addresses and names by typed placeholders.

    Returns:
        ``(scrubbed_text, counts_by_type)``.
    """
    counts: Counter = Counter()

    def sub(pattern: re.Pattern, label: str, check=None):
        def replace(match: re.Match) -> str:
            if check and not check(match.group(0)):
                return match.group(0)
            counts[label] += 1
            return f"<{label}>"

        return lambda s: pattern.sub(replace, s)

    def is_card(candidate: str) -> bool:
        digits = re.sub(r"\D", "", candidate)
        return 13 <= len(digits) <= 19 and luhn_valid(digits)

    def is_phone(candidate: str) -> bool:
        return 10 <= len(re.sub(r"\D", "", candidate)) <= 13

    def digits(at_least: int):
        return lambda s: len(s) - len(_DIGITS.sub("", s)) >= at_least

    # Each pattern runs only on a text that could hold a match: the checks are cheap necessary conditions
    # (an @, enough digits for the check to pass, a cue the name must follow), and the slow patterns skip the rest.
    for could_match, step in (
        (lambda s: "@" in s, sub(EMAIL, "EMAIL")),
        (digits(13), sub(CARD, "CARD", is_card)),
        (digits(10), sub(PHONE, "PHONE", is_phone)),
        (digits(1), sub(ADDRESS, "ADDRESS")),
        (lambda s: any(cue in s for cue in NAME_CUES), sub(NAME, "NAME")),
    ):
        if could_match(text):
            text = step(text)
    return text, counts
