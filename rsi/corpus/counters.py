"""The corpus writer's tallies: what each committed part adds, and the reports read back from them.

Tallies are one flat `Counter` whose keys are `kind|…` strings, so parts add up by `Counter.update` and survive
the JSON of commit records and manifests; this module alone builds and parses those keys.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rsi.tasks.family import DERIVED

Tallies = Counter  # key → count (floats for the chance sums)


def count_rows(tallies: Tallies, table: str, rows: list[dict[str, Any]]) -> None:
    """Add one part's rows of `table`: kept per part, so a resume restores the reports exactly."""
    for r in rows:
        tallies[f"rows|{table}|{r.get('family')}/{r.get('step')}|{r.get('level', 0)}"] += 1
        if table in ("performances", "judgments") and r.get("finish_reason") != DERIVED:  # model outputs only
            tallies[f"parsed|{r.get('step')}"] += r.get("parse_status") == "ok"
            tallies[f"outputs|{r.get('step')}"] += 1
            tallies["tokens"] += r.get("num_tokens") or 0
        if table == "judgments" and r.get("ranking") and r.get("presented_order"):
            key = f"{r.get('step')}/{r.get('level')}"
            tallies[f"first|{key}"] += r["ranking"][0] == r["presented_order"][0]
            tallies[f"valid|{key}"] += 1
            tallies[f"chance|{key}"] += 1.0 / len(r["ranking"])
        if table == "preferences":
            tallies[f"pairs|{r.get('step')}"] += 1
            if r.get("chosen_first_shown") is not None:
                tallies[f"balance|{r.get('step')}|{r['chosen_first_shown']}"] += 1
            tallies["len_chosen"] += sum(len(m.get("content") or "") for m in r.get("chosen") or [])
            tallies["len_rejected"] += sum(len(m.get("content") or "") for m in r.get("rejected") or [])


def dropped_for_balance(per_step: dict[str, int]) -> Tallies:
    """Tallies of the judgement pairs a chain's position balance left out, committed with its rows."""
    return Counter({f"balance_dropped|{step}": n for step, n in per_step.items()})


def dropped_for_overlap(n: int) -> Tallies:
    """Tallies of the preference rows left out for sharing text with a held-out evaluation item."""
    return Counter({"overlap_dropped": n} if n else {})


def overlap_dropped(tallies: dict[str, float]) -> int:
    return int(tallies.get("overlap_dropped", 0))


def tokens(tallies: dict[str, float]) -> int:
    """Tokens generated for the committed performances and judgments."""
    return int(tallies.get("tokens", 0))


def _by(tallies: dict[str, float], kind: str) -> dict[str, float]:
    prefix = f"{kind}|"
    return {k[len(prefix):]: v for k, v in tallies.items() if k.startswith(prefix)}


def rows_per_table(tallies: dict[str, float], tables: tuple[str, ...]) -> dict[str, int]:
    out = dict.fromkeys(tables, 0)
    for key, v in _by(tallies, "rows").items():
        out[key.split("|")[0]] += int(v)
    return out


def outputs_per_step(tallies: dict[str, float]) -> dict[str, int]:
    """Rows per step (performances and judgments), parsed or not."""
    return {k: int(v) for k, v in _by(tallies, "outputs").items()}


def parse_rate(tallies: dict[str, float]) -> dict[str, float]:
    parsed = _by(tallies, "parsed")
    return {step: parsed.get(step, 0) / n for step, n in _by(tallies, "outputs").items() if n}


def pairs_per_step(tallies: dict[str, float]) -> dict[str, int]:
    return {k: int(v) for k, v in _by(tallies, "pairs").items()}


def position_bias(tallies: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per step/level: share of valid judgments whose top pick was shown first, against chance."""
    first, chance = _by(tallies, "first"), _by(tallies, "chance")
    return {key: {"first_shown_wins": first.get(key, 0) / v, "chance": chance.get(key, 0) / v, "judgments": v}
            for key, v in _by(tallies, "valid").items() if v}


def balance_admitted(tallies: dict[str, float]) -> dict[str, dict[int, int]]:
    """Per step: the judgement pairs admitted so far, by the shown position of their chosen first pick."""
    out: dict[str, dict[int, int]] = {}
    for key, v in _by(tallies, "balance").items():
        step, pos = key.split("|")
        out.setdefault(step, {})[int(pos)] = int(v)
    return out


def balance_dropped(tallies: dict[str, float]) -> dict[str, int]:
    """Judgement pairs per step left out to keep the chosen rankings' first picks position-balanced."""
    return {k: int(v) for k, v in _by(tallies, "balance_dropped").items()}


def mean_lengths(tallies: dict[str, float]) -> dict[str, float]:
    """Mean characters of chosen and rejected texts over the committed pairs."""
    pairs = sum(pairs_per_step(tallies).values())
    return {"chosen": tallies.get("len_chosen", 0) / pairs if pairs else 0.0,
            "rejected": tallies.get("len_rejected", 0) / pairs if pairs else 0.0}
