"""Rules benchmark: evaluation time per event with 20, 200 and 2,000 active rules.

The rule sets are generated from the 17 rules of the default pack by varying their thresholds,
facts and condition groups (variant 0 of each template is the default rule's own condition).
Each generated rule has two implementations:

- the product's: its `when` text, compiled by mecc.rules and matched by RuleSet (indexed by
  each rule's rarest required fact);
- the floor's: a Python closure written by hand for that template (no parser, no compiler),
  testing the same thing with plain dict lookups and comparisons.

Two floors are measured: a *flat* loop that calls every rule's closure, and an *indexed* one
that files each closure by hand under a fact the rule needs (the same trick RuleSet uses), so
that only the rules an event can match are called. The indexed floor is the stricter baseline
and the one the goal is judged against. Every event's matches are checked to be identical
across the three before anything is timed.

Also measured: full evaluate() (matching, then person-centred suppression) against the
indexed floor followed by the same apply_suppression call.

    .venv/bin/python -m bench.rules            # about a minute
    .venv/bin/python -m bench.rules --quick    # fewer repeats, for a smoke test
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import (
    People,
    command_line,
    event_body,
    machine,
    machine_markdown,
    median,
    write_section,
)
from bench.rule_templates import TEMPLATES, Check, Generated, generate
from mecc.clinical.catalogue import Catalogue, load_catalogue
from mecc.clinical.domain import (
    ContactEvent,
    EvalContext,
    PastPrompt,
    PersonHistory,
    Preferences,
    RuleDef,
)
from mecc.clinical.rulepack import load_rule_pack
from mecc.clinical.ruleset import RuleSet, build_context, evaluate
from mecc.clinical.suppression import apply_suppression
from mecc.rules import compile_expression
from tests.support import ROOT

SIZES = (20, 200, 2000)

# ---------------------------------------------------------------------------------------------
# The floors


def flat_floor(gen: Generated) -> Callable[[EvalContext], list[RuleDef]]:
    pairs = list(zip(gen.rules, gen.checks, strict=True))

    def match(ctx: EvalContext) -> list[RuleDef]:
        f, c, on = ctx.facts, ctx.conditions, ctx.on
        return [rule for rule, check in pairs if check(f, c, on)]  # type: ignore[arg-type]
    return match


def indexed_floor(gen: Generated) -> Callable[[EvalContext], list[RuleDef]]:
    always: list[tuple[int, Check]] = []
    by_fact: dict[str, list[tuple[int, Check]]] = {}
    for position, (check, keyed) in enumerate(zip(gen.checks, gen.keyed_on, strict=True)):
        if keyed is None:
            always.append((position, check))
        else:
            by_fact.setdefault(keyed, []).append((position, check))
    rules = gen.rules

    def match(ctx: EvalContext) -> list[RuleDef]:
        f, c, on = ctx.facts, ctx.conditions, ctx.on
        found = [p for p, check in always if check(f, c, on)]  # type: ignore[arg-type]
        for fact in f:
            bucket = by_fact.get(fact)
            if bucket is not None:
                for p, check in bucket:
                    if check(f, c, on):  # type: ignore[arg-type]
                        found.append(p)
        found.sort()
        return [rules[p] for p in found]
    return match


# ---------------------------------------------------------------------------------------------
# Events


def make_events(catalogue: Catalogue, count: int, seed: int,
                rule_keys: Sequence[RuleDef]) -> list[tuple[ContactEvent, PersonHistory]]:
    r = random.Random(seed)
    people = People(r, max(50, count // 3))
    now = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    out = []
    for i in range(count):
        body = event_body(r, people, f"ev-{i}", occurred_at=now - timedelta(minutes=r.randint(
            0, 600)))
        person = dict(body["person"])
        person.pop("nhs_number", None)
        when = datetime.fromisoformat(body["occurred_at"])
        ctx = build_context(occurred_at=when, person=person, facts=body["facts"],
                            conditions=body["conditions"], setting=body["setting"],
                            contact_type=body["contact_type"], staff_role=body["staff"]["role"],
                            catalogue=catalogue)
        event = ContactEvent(
            id=f"e-{i}", occurred_at=when, organisation=body["organisation"],
            setting=body["setting"], context=ctx,
            preferences=Preferences(declined_topics=frozenset(
                body["preferences"]["declined_topics"])),
            staff_role=body["staff"]["role"], person_id=person["id"])
        past: list[PastPrompt] = []
        if r.random() < 0.4:  # some people have had prompts before
            for _ in range(r.randint(1, 4)):
                rule = r.choice(rule_keys)
                past.append(PastPrompt(
                    rule_key=rule.key, topic=rule.topic,
                    contact_at=when - timedelta(days=r.randint(0, 400)),
                    status=r.choice(["new", "conversation_had", "referred", "declined",
                                     "not_now"]), event_id=f"old-{i}"))
        out.append((event, PersonHistory(tuple(past))))
    return out


# ---------------------------------------------------------------------------------------------
# Timing


def per_event_ns(runs: dict[str, Callable[[], None]], events: int, repeats: int,
                 min_seconds: float) -> dict[str, float]:
    """Median over `repeats` of the time per event of each run.

    The runs are interleaved within each repeat (A B C, A B C, ...), so that other load on the
    machine, which drifts, falls on all of them alike and the ratios stay fair.
    """
    loops: dict[str, int] = {}
    for name, run in runs.items():
        count = 1
        while True:
            start = time.perf_counter_ns()
            for _ in range(count):
                run()
            if time.perf_counter_ns() - start >= min_seconds * 1e9 or count >= 1_000_000:
                break
            count *= 2
        loops[name] = count
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            gc.collect()
            start = time.perf_counter_ns()
            for _ in range(loops[name]):
                run()
            samples[name].append((time.perf_counter_ns() - start) / (loops[name] * events))
    return {name: median(values) for name, values in samples.items()}


def bench_size(n: int, defaults: Sequence[RuleDef], catalogue: Catalogue, args: argparse.Namespace
               ) -> dict[str, Any]:
    gen = generate(n, defaults, catalogue, seed=args.seed + n)
    started = time.perf_counter()
    ruleset = RuleSet([(rule, compile_expression(rule.when, catalogue)) for rule in gen.rules])
    compile_ms = (time.perf_counter() - started) * 1000
    flat, indexed = flat_floor(gen), indexed_floor(gen)
    events = make_events(catalogue, args.events, args.seed, gen.rules)
    contexts = [event.context for event, _ in events]

    matched = 0
    candidates = 0
    for ctx in contexts:  # the three must agree on every event before any timing counts
        ours = [rule.key for rule, _ in ruleset.matching(ctx)]
        if ours != [rule.key for rule in flat(ctx)] or ours != [rule.key for rule in indexed(ctx)]:
            raise SystemExit(f"mismatch at {n} rules: ours {ours}, floor "
                             f"{[rule.key for rule in indexed(ctx)]}")
        matched += len(ours)
        candidates += len(ruleset.candidates(ctx))

    matching = ruleset.matching

    def run_ours() -> None:
        for ctx in contexts:
            matching(ctx)

    def run_flat() -> None:
        for ctx in contexts:
            flat(ctx)

    def run_indexed() -> None:
        for ctx in contexts:
            indexed(ctx)

    def run_evaluate() -> None:
        for event, history in events:
            evaluate(event, ruleset, history, max_prompts_per_contact=3)

    def run_floor_evaluate() -> None:
        for event, history in events:
            apply_suppression(event, indexed(event.context), history, max_prompts_per_contact=3)

    timed = per_event_ns({"ours": run_ours, "flat": run_flat, "indexed": run_indexed,
                          "evaluate": run_evaluate, "floor_evaluate": run_floor_evaluate},
                         len(contexts), args.repeats, args.min_seconds)
    return {"rules": n, "compile_ms": compile_ms, "matched": matched / len(contexts),
            "candidates": candidates / len(contexts), **timed}


def report(rows: list[dict[str, Any]], info: dict[str, str], args: argparse.Namespace) -> str:
    def us(ns: float) -> str:
        return f"{ns / 1000:.1f}"

    lines = [
        "## Rules: evaluation time per event",
        "",
        machine_markdown(info).rstrip(),
        f"- Command: `{command_line()}`",
        f"- {args.events} generated events, each with 4-6 facts (plus the 7 derived from the "
        "event) and 0-3 conditions; medians of "
        f"{args.repeats} interleaved repeats, time.perf_counter_ns. Rules generated from the "
        "17 default rules by varying thresholds, facts and condition groups "
        "(`bench/rules.py`).",
        "- Floor: a hand-written Python check per rule (templates in `bench/rules.py`, no "
        "parser or compiler). *Indexed floor* calls only the checks filed under a fact the "
        "event has (as RuleSet does); *flat floor* calls every check. Every event's matches "
        "were checked identical across all three before timing.",
        "",
        "### Matching only (RuleSet.matching vs the floors), µs per event",
        "",
        "| Active rules | RuleSet.matching | Indexed floor | Ratio to indexed floor | "
        "Flat floor | Ratio to flat floor | Rules evaluated / matched per event | "
        "Compile + index (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['rules']:,} | {us(row['ours'])} | {us(row['indexed'])} | "
            f"{row['ours'] / row['indexed']:.2f}× | {us(row['flat'])} | "
            f"{row['ours'] / row['flat']:.2f}× | {row['candidates']:.0f} / {row['matched']:.1f} | "
            f"{row['compile_ms']:.0f} |")
    lines += [
        "",
        "### Full evaluate() with suppression, µs per event",
        "",
        "Ours: `mecc.clinical.ruleset.evaluate` (matching, Match objects, person-centred "
        "suppression, Decision). Floor: the indexed floor, then the same `apply_suppression` "
        "call. About 40% of events carry 1-4 past prompts.",
        "",
        "| Active rules | evaluate() | Floor + apply_suppression | Ratio |",
        "|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['rules']:,} | {us(row['evaluate'])} | "
                     f"{us(row['floor_evaluate'])} | "
                     f"{row['evaluate'] / row['floor_evaluate']:.2f}× |")
    by = {row["rules"]: row for row in rows}
    goals = []
    if 200 in by:
        ratio = by[200]["ours"] / by[200]["indexed"]
        goals.append(f"≤ 3× the floor at 200 rules: {ratio:.2f}× the indexed floor "
                     f"({by[200]['ours'] / by[200]['flat']:.2f}× the flat floor) — "
                     f"{'met' if ratio <= 3 else 'NOT met'}.")
    if 2000 in by:
        matching_ms, evaluate_ms = by[2000]["ours"] / 1e6, by[2000]["evaluate"] / 1e6
        goals.append(f"≤ 1 ms per event at 2,000 rules (matching, the evaluation compared with "
                     f"the floor): {matching_ms:.2f} ms — "
                     f"{'met' if matching_ms <= 1 else 'NOT met'}. Full evaluate() with "
                     f"suppression: {evaluate_ms:.2f} ms — "
                     f"{'also within 1 ms' if evaluate_ms <= 1 else 'over 1 ms'} "
                     f"({by[2000]['matched']:.0f} of the 2,000 rules match a typical event, and "
                     "suppression writes a reason for each one it holds back).")
    lines += ["", "Goals:", *[f"- {g}" for g in goals]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma-separated rule counts")
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.3,
                        help="minimum length of one timed repeat")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--quick", action="store_true", help="3 repeats of 0.05 s: smoke test")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.min_seconds = 3, 0.05
    catalogue = load_catalogue(ROOT / "config")
    defaults = load_rule_pack(ROOT / "config" / "rules", catalogue)
    missing = {rule.key for rule in defaults} ^ set(TEMPLATES)
    if missing:
        raise SystemExit(f"templates and the default pack differ: {sorted(missing)}")
    info = machine()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        row = bench_size(n, defaults, catalogue, args)
        rows.append(row)
        print(f"{n:>5} rules: matching {row['ours'] / 1000:8.1f} µs  indexed floor "
              f"{row['indexed'] / 1000:8.1f} µs  flat floor {row['flat'] / 1000:8.1f} µs  "
              f"evaluate {row['evaluate'] / 1000:8.1f} µs  floor+suppression "
              f"{row['floor_evaluate'] / 1000:8.1f} µs  ({row['candidates']:.0f} evaluated, "
              f"{row['matched']:.1f} matched per event)", flush=True)
    text = report(rows, info, args)
    print(text)
    if not args.no_write:
        write_section("rules", text)


if __name__ == "__main__":
    main()
