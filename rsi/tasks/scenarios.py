"""Negotiation scenarios made by code from a seed: a few issues, each with a small set of options, and for each of
the two sides private points per option and private limits (a budget over what it takes, options it must have).

Every scenario is an additive deal over its issues, so three kinds of template share one model:

- `split`: goods in units; an option is how many units of an item the first side (A) gets, B gets the rest.
- `schedule`: slots (shifts, days, chores); an option is who takes the slot.
- `price`: a sale; the price and each extra (delivery, warranty) is one option both sides name alike.

Offers are written from the speaker's side ("hat=2": I get two hats; "mon_am=me": I take it) and stored from A's
side as one option index per issue, so the two sides' offers compare directly. Each side's sheet (`brief`) names its
own points and limits only. The same seed always gives the same scenario, whatever the process.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

SPLIT, SCHEDULE, PRICE = "split", "schedule", "price"
SIDES = ("A", "B")
# Held-out scenarios (rsi.evals.negotiation) are drawn from seeds with this prefix; a family config refuses it, so
# the corpus never holds a held-out scenario.
HELD_OUT_PREFIX = "heldout-"


@dataclass(frozen=True)
class Issue:
    name: str
    kind: str  # split | schedule | price
    options: tuple[str, ...]  # labels from A's side: units A gets (split), "A"/"B" (schedule), shared (price)


@dataclass(frozen=True)
class Side:
    role: str
    points: tuple[tuple[int, ...], ...]  # per issue, per option (A's side): what the deal is worth to this side
    spend: tuple[tuple[int, ...], ...] | None = None  # per issue, per option: what counts against the budget
    budget: int | None = None
    budget_text: str = ""  # what the budget is, in the scenario's words ("you can carry 5 kg")
    must: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (issue, the options it accepts on that issue)


@dataclass(frozen=True)
class Scenario:
    seed: str
    template: str  # e.g. "split/inheritance"
    title: str
    issues: tuple[Issue, ...]
    sides: tuple[Side, Side]

    @property
    def kind(self) -> str:
        return self.template.split("/")[0]

    def deals(self) -> int:
        n = 1
        for issue in self.issues:
            n *= len(issue.options)
        return n


Deal = tuple[int, ...]  # one option index per issue, from A's side


def utility(scn: Scenario, side: int, deal: Deal) -> int:
    return sum(scn.sides[side].points[i][o] for i, o in enumerate(deal))


def violations(scn: Scenario, side: int, deal: Deal) -> list[str]:
    """The side's limits the deal breaks, in words (empty: valid for that side)."""
    s, out = scn.sides[side], []
    if s.spend is not None and s.budget is not None:
        spent = sum(s.spend[i][o] for i, o in enumerate(deal))
        if spent > s.budget:
            out.append(f"over budget: {spent} > {s.budget}")
    for issue, allowed in s.must:
        if deal[issue] not in allowed:
            out.append(f"{scn.issues[issue].name}: {option_text(scn, side, issue, deal[issue])} breaks a must-have")
    return out


def valid(scn: Scenario, deal: Deal) -> bool:
    return not violations(scn, 0, deal) and not violations(scn, 1, deal)


def option_text(scn: Scenario, side: int, issue: int, option: int) -> str:
    """An option as `side` writes it in an offer."""
    iss = scn.issues[issue]
    if iss.kind == SPLIT:
        units = option if side == 0 else len(iss.options) - 1 - option
        return str(units)
    if iss.kind == SCHEDULE:
        return "me" if (option == 0) == (side == 0) else "you"
    return iss.options[option]


def offer_text(scn: Scenario, side: int, deal: Deal) -> str:
    return ", ".join(f"{iss.name}={option_text(scn, side, i, o)}" for i, (iss, o) in enumerate(zip(scn.issues, deal)))


def claim_value(scn: Scenario, side: int, issue: int) -> int | None:
    """What the side's sheet says one unit (split), taking the slot (schedule) or the extra's best option (price)
    is worth to it: the number a stated valuation is checked against. None for an issue with no such number."""
    iss, pts = scn.issues[issue], scn.sides[side].points[issue]
    if iss.kind == SPLIT:
        per_unit = pts[1] - pts[0] if side == 0 else pts[-2] - pts[-1]
        return abs(per_unit)
    if iss.kind == SCHEDULE:
        return pts[0] if side == 0 else pts[1]
    if iss.name == "price":
        return None
    return max(pts)


def brief(scn: Scenario, side: int) -> str:
    """The side's private sheet: the issues, its own points and limits, and how to write an offer."""
    s = scn.sides[side]
    lines = [f"Scenario: {scn.title}. You are {s.role}.", "Your private points (the other side cannot see them):"]
    for i, iss in enumerate(scn.issues):
        if iss.kind == SPLIT:
            lines.append(f"- {iss.name}: {len(iss.options) - 1} in total, {claim_value(scn, side, i)} points each "
                         "for every one you get")
        elif iss.kind == SCHEDULE:
            lines.append(f"- {iss.name}: {claim_value(scn, side, i)} point(s) if you take it")
        else:
            pts = s.points[i]
            lines.append(f"- {iss.name}: " + ", ".join(f"{label} = {p} points" for label, p in zip(iss.options, pts)))
    if s.budget is not None and s.spend is not None:
        lines.append(f"Your limit: {s.budget_text}.")
    for issue, allowed in s.must:
        opts = " or ".join(dict.fromkeys(option_text(scn, side, issue, o) for o in sorted(allowed)))
        lines.append(f"You must have {scn.issues[issue].name}={opts}.")
    return "\n".join(lines)


def offer_help(scn: Scenario) -> str:
    """How an offer names every issue, from the writer's side."""
    parts = []
    for iss in scn.issues:
        if iss.kind == SPLIT:
            parts.append(f"{iss.name}=<how many you get, 0-{len(iss.options) - 1}>")
        elif iss.kind == SCHEDULE:
            parts.append(f"{iss.name}=<me or you: who takes it>")
        else:
            parts.append(f"{iss.name}=<{'|'.join(iss.options)}>")
    return ", ".join(parts)


# --- templates --------------------------------------------------------------------------------------------------
# (setting, role of A, role of B, item names). Each setting is one template; the numbers come from the seed.
SPLIT_SETTINGS = (
    ("dividing an inheritance", "a sibling", "another sibling", "painting watch vase rug clock"),
    ("splitting a shared flat's furniture", "a flatmate leaving", "a flatmate staying", "sofa desk lamp shelf chair"),
    ("sharing a box of books", "a reader", "a friend", "novel atlas cookbook comic poem_book"),
    ("dividing a garage sale's leftovers", "a neighbour", "another neighbour", "bike toaster tent kettle drill"),
    ("splitting a fruit basket", "a guest", "another guest", "apple mango pear plum banana"),
    ("sharing office supplies", "a team lead", "another team lead", "monitor keyboard headset webcam dock"),
    ("dividing camping gear", "a hiker", "another hiker", "stove lantern tarp rope cooler"),
    ("splitting a record collection", "a collector", "a former bandmate", "jazz_lp rock_lp soul_lp folk_lp single"),
    ("dividing board games", "a club member", "another club member", "chess go scrabble risk cards"),
    ("sharing kitchen tools", "a cook", "a roommate", "wok blender knife pot pan"),
    ("dividing garden plants", "a gardener", "a neighbour", "rose fern tomato basil cactus"),
    ("splitting art supplies", "a painter", "a student", "easel canvas brush palette paint_set"),
)
SCHEDULE_SETTINGS = (
    ("sharing cafe shifts", "a barista", "another barista", "mon_am mon_pm tue_am tue_pm wed_am wed_pm"),
    ("dividing house chores", "a housemate", "another housemate", "dishes laundry trash hoovering shopping bathroom"),
    ("sharing a car for the week", "a partner", "the other partner", "mon tue wed thu fri sat"),
    ("booking conference talk slots", "a speaker", "another speaker", "slot_9 slot_10 slot_11 slot_14 slot_15 slot_16"),
    ("splitting lab instrument hours", "a researcher", "another researcher", "h08 h10 h12 h14 h16 h18"),
    ("taking holiday days", "a colleague", "another colleague", "dec_24 dec_27 dec_31 jan_2 jan_3 jan_6"),
    ("covering on-call weeks", "an engineer", "another engineer", "week_1 week_2 week_3 week_4 week_5 week_6"),
    ("booking a meeting room", "a team", "another team", "mon_10 tue_10 wed_10 thu_10 fri_10 fri_15"),
    ("sharing a rehearsal room", "a band", "another band", "mon_eve tue_eve wed_eve thu_eve sat_am sun_am"),
    ("splitting tutoring sessions", "a tutor", "another tutor", "maths physics french history chemistry art"),
)
# (setting, seller, buyer, base price, extras): price options are steps around the base
PRICE_SETTINGS = (
    ("selling a used bike", "the seller", "a buyer", 200, ("delivery", "helmet")),
    ("selling a used car", "the seller", "a buyer", 5000, ("warranty", "new_tyres")),
    ("pricing a freelance website", "a freelancer", "a client", 1500, ("hosting", "revisions")),
    ("subletting a room", "the tenant", "a subletter", 600, ("furnished", "bills_included")),
    ("booking a wedding photographer", "a photographer", "a couple", 1200, ("album", "second_shooter")),
    ("licensing software", "a vendor", "a company", 3000, ("support", "training")),
    ("hiring a caterer", "a caterer", "a host", 800, ("dessert", "staff")),
    ("selling a laptop", "the seller", "a student", 700, ("charger", "bag")),
    ("renting a holiday cottage", "the owner", "a family", 900, ("cleaning", "late_checkout")),
    ("commissioning a portrait", "an artist", "a patron", 400, ("frame", "delivery")),
)
TEMPLATES = tuple([f"{SPLIT}/{s[0]}" for s in SPLIT_SETTINGS] + [f"{SCHEDULE}/{s[0]}" for s in SCHEDULE_SETTINGS]
                  + [f"{PRICE}/{s[0]}" for s in PRICE_SETTINGS])


def _rng(seed: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"negotiation:{seed}".encode()).digest()[:8], "big"))


def make_scenario(seed: str) -> Scenario:
    """The scenario of `seed`: its template and every number drawn from the seed alone. Redrawn (from the same
    generator) until some deal satisfies both sides, so a deal is always possible."""
    rng = _rng(seed)
    template = TEMPLATES[rng.randrange(len(TEMPLATES))]
    kind, setting = template.split("/", 1)
    build = {SPLIT: _split, SCHEDULE: _schedule, PRICE: _price}[kind]
    while True:
        scn = build(rng, seed, template, setting)
        if any_valid(scn):
            return scn


def any_valid(scn: Scenario) -> bool:
    """Whether some deal satisfies both sides: by brute force, which is small and stops at the first (the frontier's
    search, rsi.tasks.pareto, builds on this module)."""
    import itertools

    return any(valid(scn, deal) for deal in itertools.product(*(range(len(i.options)) for i in scn.issues)))


def _split(rng: random.Random, seed: str, template: str, setting: str) -> Scenario:
    _, role_a, role_b, listed = next(s for s in SPLIT_SETTINGS if s[0] == setting)
    names = listed.split()
    chosen = rng.sample(names, 3)
    counts = [rng.randint(1, 3) for _ in chosen]
    issues = tuple(Issue(n, SPLIT, tuple(str(k) for k in range(c + 1))) for n, c in zip(chosen, counts))
    sides = []
    for side, role in enumerate((role_a, role_b)):
        per_unit = [rng.randint(0, 6) for _ in chosen]
        if not any(per_unit):
            per_unit[rng.randrange(3)] = rng.randint(1, 6)
        # A's option k is k units for A: A scores k·v, B scores (count − k)·v
        points = tuple(tuple((k if side == 0 else c - k) * v for k in range(c + 1)) for c, v in zip(counts, per_unit))
        spend = budget = None
        text, must = "", ()
        if rng.random() < 0.5:  # a carrying limit: each unit weighs something
            weights = [rng.randint(1, 3) for _ in chosen]
            spend = tuple(tuple((k if side == 0 else c - k) * w for k in range(c + 1)) for c, w in zip(counts, weights))
            total = sum(c * w for c, w in zip(counts, weights))
            budget = rng.randint(max(1, total // 3), max(1, 2 * total // 3))
            text = (f"you can carry at most {budget} kg; each weighs "
                    + ", ".join(f"{n} {w} kg" for n, w in zip(chosen, weights)))
        if rng.random() < 0.4:  # a must-have: at least one unit of an item
            i = rng.randrange(3)
            must = ((i, tuple(k for k in range(counts[i] + 1) if (k if side == 0 else counts[i] - k) >= 1)),)
        sides.append(Side(role, points, spend, budget, text, must))
    return Scenario(seed, template, setting, issues, (sides[0], sides[1]))


def _schedule(rng: random.Random, seed: str, template: str, setting: str) -> Scenario:
    _, role_a, role_b, listed = next(s for s in SCHEDULE_SETTINGS if s[0] == setting)
    names = listed.split()
    chosen = sorted(rng.sample(names, rng.randint(4, 5)), key=names.index)
    issues = tuple(Issue(n, SCHEDULE, ("A", "B")) for n in chosen)
    sides = []
    for side, role in enumerate((role_a, role_b)):
        pts = [rng.randint(0, 6) for _ in chosen]
        # option 0 gives the slot to A, option 1 to B
        points = tuple((p, 0) if side == 0 else (0, p) for p in pts)
        spend = budget = None
        text, must = "", ()
        if rng.random() < 0.6:  # at most so many slots
            spend = tuple((1, 0) if side == 0 else (0, 1) for _ in chosen)
            budget = rng.randint(1, len(chosen) - 1)
            text = f"you can take at most {budget} of them"
        if rng.random() < 0.5:  # one slot this side must take
            i = rng.randrange(len(chosen))
            must = ((i, (0,) if side == 0 else (1,)),)
        sides.append(Side(role, points, spend, budget, text, must))
    return Scenario(seed, template, setting, issues, (sides[0], sides[1]))


def _price(rng: random.Random, seed: str, template: str, setting: str) -> Scenario:
    _, seller, buyer, base, extras = next(s for s in PRICE_SETTINGS if s[0] == setting)
    steps = rng.randint(5, 7)
    step = max(1, base // 10)
    low = base - step * (steps // 2)
    prices = [low + k * step for k in range(steps)]
    issues = [Issue("price", PRICE, tuple(str(p) for p in prices))]
    for name in rng.sample(extras, rng.randint(1, 2)):
        issues.append(Issue(name, PRICE, ("no", "yes")))
    # A sells, B buys. Points per price step: the seller gains what the buyer pays.
    w_sell, w_buy = rng.randint(1, 3), rng.randint(1, 3)
    floor = rng.randint(0, steps // 2)  # the seller's lowest acceptable step
    seller_pts = [tuple((k - floor) * w_sell for k in range(steps))]
    buyer_pts = [tuple((steps - 1 - k) * w_buy for k in range(steps))]
    spend_rows = [tuple(prices)]
    extra_prices = []
    for _ in issues[1:]:
        cost, worth = rng.randint(0, 4), rng.randint(0, 6)
        seller_pts.append((0, -cost))
        buyer_pts.append((0, worth))
        extra_prices.append(step * rng.randint(0, 1))
        spend_rows.append((0, extra_prices[-1]))
    budget = prices[rng.randint(steps // 2, steps - 1)] + (sum(extra_prices) if rng.random() < 0.5 else 0)
    charged = [f"{iss.name} adds {c}" for iss, c in zip(issues[1:], extra_prices) if c]
    text = f"you can pay at most {budget} in all" + (f" ({'; '.join(charged)})" if charged else "")
    sides = (Side(seller, tuple(seller_pts), must=((0, tuple(range(floor, steps))),)),
             Side(buyer, tuple(buyer_pts), tuple(spend_rows), budget, text))
    return Scenario(seed, template, setting, tuple(issues), sides)
