"""The negotiation turn format and its parser.

A turn is a free-text message that may end with one structured line:

    OFFER: hat=2, book=0, ball=1      every issue once, from the writer's side (rsi.tasks.scenarios.offer_help)
    ACCEPT                            takes the offer the other side put on the table
    ACCEPT: hat=1, book=3, ball=0     the same, restated from the writer's side: it must match the table

and may state its own valuations (`VALUE: hat=4`, or "the hat is worth 4 points to me", "I value the hat at 4"),
which are checked against the writer's private sheet: a stated number the sheet contradicts is a provable lie.

`parse_turn` never raises. A structured line it cannot read, an acceptance with no offer on the table or one that
differs from the table, is a parse failure (its status, with the reason); an offer that breaks the writer's own
limits parses but is recorded as a validity failure (`violations`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rsi.corpus.text import clean_text
from rsi.tasks.scenarios import PRICE, SCHEDULE, SPLIT, Deal, Scenario, claim_value, offer_text, violations

OK = "ok"
FAILURES = ("empty", "bad_format", "bad_offer", "bad_accept", "accept_without_offer", "accept_mismatch")
_LEAD = r"^[\s*#>_`-]*"
_OFFER_LINE = re.compile(_LEAD + r"OFFER\b[\s*_`]*[:=-]?[\s*_`]*(.*)$")
_ACCEPT_LINE = re.compile(_LEAD + r"ACCEPT(?:ED)?\b[\s*_`]*[:=-]?[\s*_`]*(.*)$")
_VALUE_LINE = re.compile(_LEAD + r"VALUE\b[\s*_`]*[:=-]?[\s*_`]*(.*)$")
_WORTH = re.compile(r"\b(?:the\s+|my\s+|a\s+|each\s+)?([a-z][a-z_]*)\s+(?:is|are)\s+worth\s+(\d{1,6})\s*"
                    r"(?:points?|pts)?(?:\s+each)?\s+to\s+me\b", re.I)
_I_VALUE = re.compile(r"\bI\s+value\s+(?:the\s+|my\s+|a\s+|each\s+)?([a-z][a-z_]*)\s+at\s+(\d{1,6})\b", re.I)
MAX_MESSAGE = 2000  # characters of a message kept for the other side's prompt


@dataclass
class Turn:
    status: str  # ok, or one of FAILURES
    message: str = ""  # the text without its structured lines
    offer: Deal | None = None  # from A's side; on an acceptance, the deal accepted
    accept: bool = False
    claims: list[tuple[str, int]] = field(default_factory=list)  # (issue, the number stated)
    lies: list[dict[str, Any]] = field(default_factory=list)  # claims the writer's sheet contradicts
    violations: list[str] = field(default_factory=list)  # the writer's own limits its offer breaks
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "offer": list(self.offer) if self.offer else None,
                "accept": self.accept, "claims": [list(c) for c in self.claims], "lies": self.lies,
                "violations": self.violations, "error": self.error}


def _norm(s: str) -> str:
    return re.sub(r"[\s_-]+", "_", s.strip().strip("*`'\".").lower())


def _issue_index(scn: Scenario, name: str) -> int | None:
    key = _norm(name)
    for i, iss in enumerate(scn.issues):
        if key in (iss.name, iss.name + "s", iss.name + "es") or (key.endswith("s") and key[:-1] == iss.name):
            return i
    return None


def _option(scn: Scenario, side: int, issue: int, value: str) -> int | None:
    """The option (A's side) that `value`, written by `side`, names; None when it names none."""
    iss = scn.issues[issue]
    v = _norm(value).lstrip("$€£")
    if iss.kind == SPLIT:
        if not v.isdigit() or len(v) > 3:
            return None
        units = int(v)
        top = len(iss.options) - 1
        if units > top:
            return None
        return units if side == 0 else top - units
    if iss.kind == SCHEDULE:
        mine = {"me": True, "i": True, "mine": True, "you": False, "yours": False, "them": False}.get(v)
        return None if mine is None else (0 if mine == (side == 0) else 1)
    if iss.kind == PRICE:
        v = v.removesuffix(".00").replace(",", "")
        return iss.options.index(v) if v in iss.options else None
    return None


def parse_offer(body: str, scn: Scenario, side: int) -> tuple[Deal | None, str]:
    """(deal from A's side, "") or (None, why): every issue named once, each with one of its options."""
    chosen: dict[int, int] = {}
    for part in (p for p in re.split(r"[,;]", body) if p.strip()):
        name, sep, value = re.split(r"(=|:)", part, maxsplit=1) if re.search(r"[=:]", part) else (part, "", "")
        if not sep:
            return None, f"{part.strip()[:40]!r} is not name=value"
        issue = _issue_index(scn, name)
        if issue is None:
            return None, f"unknown issue {name.strip()[:40]!r}"
        if issue in chosen:
            return None, f"{scn.issues[issue].name} named twice"
        option = _option(scn, side, issue, value)
        if option is None:
            return None, f"{scn.issues[issue].name}: {value.strip()[:40]!r} is not one of its options"
        chosen[issue] = option
    missing = [iss.name for i, iss in enumerate(scn.issues) if i not in chosen]
    if missing:
        return None, f"missing {', '.join(missing)}"
    return tuple(chosen[i] for i in range(len(scn.issues))), ""


def _claims(text: str, value_lines: list[str], scn: Scenario) -> list[tuple[str, int]]:
    found: list[tuple[str, str]] = []
    for line in value_lines:
        for part in re.split(r"[,;]", line):
            name, _, num = part.partition("=") if "=" in part else part.partition(":")
            found.append((name, num))
    found += [(m.group(1), m.group(2)) for m in _WORTH.finditer(text)]
    found += [(m.group(1), m.group(2)) for m in _I_VALUE.finditer(text)]
    out = []
    for name, num in found:
        issue, digits = _issue_index(scn, name), num.strip().strip("*`")
        if issue is not None and digits.isdigit() and len(digits) <= 6:
            out.append((scn.issues[issue].name, int(digits)))
    return list(dict.fromkeys(out))


def lies(scn: Scenario, side: int, claims: list[tuple[str, int]]) -> list[dict[str, Any]]:
    names = [iss.name for iss in scn.issues]
    out = []
    for name, stated in claims:
        truth = claim_value(scn, side, names.index(name))
        if truth is not None and stated != truth:
            out.append({"issue": name, "stated": stated, "sheet": truth})
    return out


def parse_turn(text: str | None, scn: Scenario, side: int, table: Deal | None) -> Turn:
    """One turn of `side`; `table` is the other side's offer standing (None when there is none)."""
    text = clean_text(text or "")
    if not text.strip():
        return Turn("empty", error="no text")
    lines = text.splitlines()
    offers = [(k, m.group(1)) for k, line in enumerate(lines) if (m := _OFFER_LINE.match(line))]
    accepts = [(k, m.group(1)) for k, line in enumerate(lines) if (m := _ACCEPT_LINE.match(line))]
    values = [(k, m.group(1)) for k, line in enumerate(lines) if (m := _VALUE_LINE.match(line))]
    structured = {k for k, _ in offers + accepts + values}
    message = "\n".join(line for k, line in enumerate(lines) if k not in structured).strip()[:MAX_MESSAGE]
    claims = _claims(message, [v for _, v in values], scn)
    turn = Turn(OK, message, claims=claims, lies=lies(scn, side, claims))
    if offers and accepts:
        return _failed(turn, "bad_format", "both an OFFER and an ACCEPT line")
    if len(offers) > 1 or len(accepts) > 1:
        return _failed(turn, "bad_format", f"{len(offers) + len(accepts)} OFFER/ACCEPT lines")
    if offers:
        deal, why = parse_offer(offers[0][1], scn, side)
        if deal is None:
            return _failed(turn, "bad_offer", why)
        turn.offer = deal
    elif accepts:
        body = accepts[0][1].strip().strip("*`.! ")
        if table is None:
            return _failed(turn, "accept_without_offer", "ACCEPT with no offer of the other side on the table")
        if "=" in body:
            deal, why = parse_offer(body, scn, side)
            if deal is None:
                return _failed(turn, "bad_accept", why)
            if deal != tuple(table):
                return _failed(turn, "accept_mismatch", f"accepted {offer_text(scn, side, deal)} but the table "
                               f"holds {offer_text(scn, side, tuple(table))}")
        turn.offer, turn.accept = tuple(table), True
    if turn.offer is not None:
        turn.violations = violations(scn, side, turn.offer)
    return turn


def _failed(turn: Turn, status: str, why: str) -> Turn:
    turn.status, turn.error, turn.offer, turn.accept = status, why[:300], None, False
    return turn
