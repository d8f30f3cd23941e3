"""`incdsl sample SPACE -n N -o DIR`: concrete specs drawn from a spec with choices.

Also `check_space`, which `incdsl check` calls first: for a spec with choices it reports the
size of the space and checks its points (see `incdsl.search.sampling.check_plan`).

Output directory: ``sample_0001.inc`` ... (each a complete spec with included files inlined),
``index.json`` and ``index.csv`` (one row per sample: file, params, MACs, the option of each
choice); index.json gives the space's size as ``size`` and ``size_log10`` (see
`size_fields`). Everything is computed and every spec re-checked from its text before anything is
written, and flushed to disk in a private folder before anything in DIR changes. A new DIR is
that folder renamed. In an existing DIR, only files that an earlier `incdsl sample` wrote (the
samples its ``index.json`` lists, and the index) are replaced or removed; a file of the same
name as one of ours that no earlier run wrote is an error, and every other file is left alone.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile

EXIT_BUDGET = 3
_CHOICE = re.compile(r"\bchoice\s*\(")
_INCLUDE = re.compile(r'^include\s+"([^"\n]*)"', re.MULTILINE)


def register(sub) -> None:
    from ..cli import add_spec_arguments
    p = sub.add_parser(
        "sample", help="draw concrete specs from a spec with choices (a search space)",
        description="Draw N distinct points of a search space (a spec with `choice(...)`), each within the "
                    "given budgets, and write each as a concrete spec that passes `incdsl check`, with an "
                    "index (index.csv, index.json) of every sample's choices, parameters and MACs. index.json's "
                    "`size` (the space's) is exact up to 2**53, above that a string such as \"3.18e+4423\"; "
                    "`size_log10` is always a number. The same seed draws the same samples. Exit 0 on success, "
                    "1 on a spec error, 2 on bad usage, 3 when the budgets admit fewer than N points.")
    add_spec_arguments(p)
    p.add_argument("-n", type=int, metavar="N", help="number of samples (required for random; grid: all by default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--strategy", choices=("random", "grid"), default="random",
                   help="random: uniform without repeats; grid: every point in order (small spaces)")
    p.add_argument("--max-params", metavar="N", help="keep only points with at most N parameters, e.g. 25M")
    p.add_argument("--max-macs", metavar="N", help="keep only points with at most N multiply-adds, e.g. 6G")
    p.add_argument("--max-tries", type=int, metavar="T",
                   help="random: give up after costing T distinct points (default 20 N + 1000)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="the folder for the specs and their index (created; of its files, only those an "
                        "earlier `sample` listed are replaced or removed)")
    p.set_defaults(func=run)


# --- shared with `incdsl check`

def mentions_choice(source, include_path=()) -> bool:
    """Whether a spec (`SpecText`) or a file it includes spells `choice(` (a cheap test before
    parsing). Includes are found and read as `load` does (`incdsl.io.Includes`); one that cannot
    be is skipped here: the load that follows reports it."""
    from ..io import IncludeError, Includes
    from ..lang.parse import normalize
    includes = Includes.for_spec(source.file, include_path)
    todo, seen = [(source.file, normalize(source.text))], set()
    while todo:
        file, text = todo.pop()
        if _CHOICE.search(text):
            return True
        for written in _INCLUDE.findall(text):
            try:
                name, real = includes.resolve(file, written)
                if real not in seen:
                    seen.add(real)
                    todo.append((name, includes.read(name, real)))
            except IncludeError:
                continue
    return False


def _load(args):
    from ..cli import overrides, spec_text
    from ..search import load_space
    return load_space(spec_text(args), params=overrides(args), input=args.input, include_path=args.include_path,
                      max_layers=args.max_layers)


def size_text(n: int) -> str:
    from ..search.space import approximate
    if n >= 10**30:  # exact digits would fill lines (and Python prints no more than 4300)
        return f"about {approximate(n)} points"
    return f"{n:,} points ({approximate(n)})" if n >= 10**4 else f"{n:,} point{'s' if n != 1 else ''}"


EXACT_LIMIT = 2**53  # the largest integer every JSON reader (a double) holds exactly


def size_fields(n: int) -> dict:
    """index.json's `size` and `size_log10` for a space of `n` points.

    `size` is the exact integer up to 2**53, beyond which JSON readers that store numbers as
    doubles (JavaScript, jq) would round it and Python refuses to write more than 4,300 digits;
    a larger size is the string of `approximate` (`"3.18e+4423"`, three significant digits).
    `size_log10` (four decimals) is always a number, to compare or sort spaces by. The exact
    size of any space is `incdsl.space(path).size`.
    """
    log10 = round(math.log10(n), 4) if n > 0 else None
    if n <= EXACT_LIMIT:
        return {"size": n, "size_log10": log10}
    from ..search.space import approximate
    return {"size": approximate(n), "size_log10": log10}


def check_space(args) -> int | None:
    """`incdsl check` on a spec with choices; None when the spec has none (a plain check follows)."""
    from ..cli import spec_text
    if not mentions_choice(spec_text(args), args.include_path):
        return None
    from ..search.sampling import check_space as check_points
    space = _load(args)
    if not space.choices:
        return None
    result = check_points(space)
    plan, costs = result.plan, result.costs
    n = len(space.choices)
    lines = [f"{space.name}: a search space of {size_text(space.size)}, {n} choice{'' if n == 1 else 's'}"]
    table = [(c.name, _options(c.options), c.id) for c in space.choices]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    lines += [f"    {name:<{widths[0]}}  {options:<{widths[1]}}  {where}" for name, options, where in table]
    verdict = "all valid" if not result.invalid else f"{result.invalid:,} invalid"
    lines.append(f"  checked     {_checked_text(result)}: {verdict}")
    if result.same_failure:
        lines.append(f"  stopped     the first {result.checked} points fail at the same place, whatever the choices")
    elif result.checked < len(plan.points) or not plan.covered:
        lines.append(f"  stopped     at the work limit of `incdsl check` ({result.lowered:,} layers made); "
                     f"`incdsl sample` checks the points it draws")
    if costs:
        scope = _range_scope(result)
        lines.append(f"  parameters  {min(c.params for c in costs):,} to {max(c.params for c in costs):,}{scope}")
        lines.append(f"  MACs        {min(c.macs for c in costs):,} to {max(c.macs for c in costs):,}{scope}")
    print("\n".join(lines))
    if result.first_invalid is not None:
        print(result.first_invalid.render("incdsl"), file=sys.stderr)
        return 1
    return 0


def _range_scope(result) -> str:
    """What the printed cost ranges cover: nothing to add when every point of the space was
    costed (they are the space's); else the points checked. Costs do not add up choice by
    choice (a width sets the next layer's input too), so the space's true extremes need not be
    among them: mini_space's largest point is outside the 76 its check costs."""
    plan = result.plan
    if plan.exhaustive and result.checked == len(plan.points):
        return ""
    valid = "valid " if result.invalid else ""
    return f" (of the {len(result.costs):,} {valid}points checked, not the whole space)"


def _checked_text(result) -> str:
    plan = result.plan
    if plan.exhaustive:
        return f"all {len(plan.points):,} points"
    sweep = min(plan.sweep, result.checked)
    extra = result.checked - sweep
    if plan.kind == "sweep":
        what = f"each option of every choice with the others at their first option ({sweep:,})"
    else:
        what = (f"option i of every choice at once for i = 0 to {sweep - 1:,} "
                f"({'every option of every choice' if plan.covered and sweep == plan.sweep else 'not every option'})")
    return f"{result.checked:,} points: {what}, and {extra:,} random points (seed {plan.seed})"


def _options(options) -> str:
    if len(options) <= 8:
        return " | ".join(options)
    return " | ".join(options[:3]) + f" | ... {len(options)} options ... | " + " | ".join(options[-2:])


# --- incdsl sample

def run(args) -> int:
    from ..cli import UsageError
    from ..report.tables import counted, parse_amount
    from ..search.sampling import Budget, draw_grid, draw_random

    budget = {}
    for key in ("max_params", "max_macs"):
        value = getattr(args, key)
        if value is not None:
            try:
                budget[key] = parse_amount(value)
            except ValueError as exc:
                raise UsageError(f"--{key.replace('_', '-')}: {exc}") from None
    budget = Budget(**budget)
    if args.n is not None and args.n < 1:
        raise UsageError("-n must be at least 1")
    if args.n is not None and args.n > MAX_SAMPLES:
        raise UsageError(f"-n {args.n:,} is more than one run writes (at most {MAX_SAMPLES:,}); "
                         "draw more with other --seed values into other folders")
    if args.max_tries is not None and args.max_tries > MAX_TRIES:
        raise UsageError(f"--max-tries {args.max_tries:,} is more than one run costs (at most {MAX_TRIES:,})")
    if args.strategy == "random" and args.n is None:
        raise UsageError("-n is required with --strategy random")
    if args.max_tries is not None and args.max_tries < 1:
        raise UsageError("--max-tries must be at least 1")
    out = args.output
    _check_output_dir(out)

    space = _load(args)
    if not space.choices:
        print(f"incdsl: note: {args.spec} has no choices; its one point is written", file=sys.stderr)
    if args.n is not None and args.n > space.size:  # either strategy: no budget helps
        what = " (the spec has no `choice(...)`: it is one network)" if not space.choices else ""
        raise UsageError(f"the space has {size_text(space.size)}{what}; cannot draw {args.n:,} distinct samples; "
                         f"ask for at most -n {space.size}")
    if args.strategy == "grid":
        try:
            draw = draw_grid(space, args.n, budget)
        except ValueError as exc:
            raise UsageError(f"{exc}; use --strategy random") from None
    else:
        draw = draw_random(space, args.n, random.Random(args.seed), budget, args.max_tries)
    _report_invalid(draw)
    wanted = args.n if args.n is not None else 1
    if len(draw.samples) < wanted or not draw.samples:
        return _too_few(space, draw, wanted, budget)

    files = _render(space, draw, args)
    _write_dir(out, files, inputs=list(space.program.sources))
    costs = [c.cost for c in draw.samples]
    print(f"wrote {counted(len(draw.samples), 'sample')} of {space.name} to {out} (index.csv, index.json): "
          f"tried {counted(draw.tried, 'point')}, {draw.over_budget:,} over budget, {draw.invalid:,} invalid; "
          f"parameters {_span([c.params for c in costs])}, MACs {_span([c.macs for c in costs])}")
    return 0


def _span(values: list[int]) -> str:
    """'31,778 to 86,322', or one number when all are equal."""
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def _check_output_dir(out: str) -> None:
    """Fail early on an output that cannot be a directory (the full check comes before writing)."""
    from ..io import OutputError
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"cannot write {out}: it exists and is not a directory")
    if os.path.isdir(out) and earlier_run(out) is None:
        taken = [name for name in _INDEX_FILES if os.path.lexists(os.path.join(out, name))]
        if taken:
            raise OutputError(f"cannot write {out}: it holds {' and '.join(taken)}, which no earlier "
                              "`incdsl sample` wrote; choose a new or empty directory")


# Bounds on one run's time and memory: every sample's text is held until the folder is written,
# and every point tried is remembered (the draw is without repeats).
MAX_SAMPLES = 10_000
MAX_TRIES = 1_000_000

_SAMPLE_FILE = re.compile(r"sample_[0-9]+\.inc")
_INDEX_FILES = ("index.json", "index.csv")


def earlier_run(out: str) -> set[str] | None:
    """The files an earlier `incdsl sample` wrote in `out` (from its index.json), or None when
    `out` holds no index of ours. Only names `sample` writes count: an index.json cannot make
    us delete anything else."""
    try:
        with open(os.path.join(out, "index.json"), encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return None
    if not (isinstance(index, dict) and isinstance(index.get("samples"), list) and "network" in index):
        return None
    files = {row.get("file") for row in index["samples"] if isinstance(row, dict)}
    return {f for f in files if isinstance(f, str) and _SAMPLE_FILE.fullmatch(f)} | set(_INDEX_FILES)


def _plan_update(out: str, files: dict[str, str], inputs) -> set[str]:
    """Check that writing `files` into the existing directory `out` clobbers nothing but an
    earlier run's files and no input; return the earlier run's files to remove."""
    from ..io import OutputError, same_file
    ours = earlier_run(out) or set()
    present = set(os.listdir(out))
    foreign = sorted(name for name in (set(files) & present)
                     if name not in ours or not os.path.isfile(os.path.join(out, name)))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(f"cannot write {out}: it holds {shown}, which no earlier `incdsl sample` wrote; "
                          "choose a new or empty directory")
    stale = {name for name in (ours & present) - set(files)
             if os.path.islink(os.path.join(out, name)) or not os.path.isdir(os.path.join(out, name))}
    for name in sorted((set(files) & present) | stale):
        for source in inputs:
            if same_file(os.path.join(out, name), source):
                raise OutputError(f"cannot write {out}: it would replace {name}, an input of this command; "
                                  "choose another directory")
    return stale


def _write_dir(out: str, files: dict[str, str], inputs=()) -> None:
    """Write `files` into `out`: whole, or nothing changed (see the module docstring).

    A new directory is filled beside `out` and renamed into place. In an existing one, every
    file is first written to a private folder inside it; then the samples are moved in, the
    earlier run's other samples removed and the index moved in last. Files that no earlier
    run wrote are never touched.
    """
    from ..io import OutputError, reason
    try:
        if os.path.isdir(out):
            stale = _plan_update(out, files, inputs)
            _update_dir(out, files, stale)
        else:
            _new_dir(out, files)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write {out}: {reason(exc)}") from None


def _stage(parent: str, files: dict[str, str]) -> str:
    """A private directory in `parent` holding `files`, each flushed to disk."""
    from ..io import current_umask
    stage = tempfile.mkdtemp(prefix=".incdsl-sample-", dir=parent)
    try:
        mode = 0o666 & ~current_umask()
        for name, text in files.items():
            path = os.path.join(stage, name)
            with open(path, "xb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(path, mode)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def _new_dir(out: str, files: dict[str, str]) -> None:
    parent = os.path.dirname(os.path.abspath(out))
    from ..io import current_umask
    os.makedirs(parent, exist_ok=True)
    stage = _stage(parent, files)
    try:
        os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes it private; the output is an ordinary directory
        os.rename(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _update_dir(out: str, files: dict[str, str], stale: set[str]) -> None:
    stage = _stage(out, files)  # a full disk stops us here, before anything in `out` changed
    try:
        for name in [n for n in files if n not in _INDEX_FILES]:
            os.replace(os.path.join(stage, name), os.path.join(out, name))
        for name in sorted(stale - set(_INDEX_FILES)):
            try:
                os.unlink(os.path.join(out, name))
            except FileNotFoundError:
                pass
        for name in ("index.csv", "index.json"):  # the index last: it lists what is there
            os.replace(os.path.join(stage, name), os.path.join(out, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _report_invalid(draw) -> None:
    """Warn of the points skipped as invalid, the first one's diagnostic with it; not when no
    point was valid: the error says so, with that diagnostic, once."""
    if draw.invalid and draw.fewest_params is not None:
        print(f"incdsl: warning: {draw.invalid:,} of {draw.tried:,} points tried are invalid and were skipped; "
              f"the first:\n{draw.first_invalid.render('incdsl')}", file=sys.stderr)


def _too_few(space, draw, wanted: int, budget) -> int:
    if draw.fewest_params is None:
        stopped = " (they fail at the same place, whatever the choices)" if draw.same_failure else ""
        print(f"incdsl: error: no valid point among the {draw.tried:,} tried{stopped}", file=sys.stderr)
        if draw.first_invalid is not None:
            print(draw.first_invalid.render("incdsl"), file=sys.stderr)
        return 1
    limits = ", ".join(f"{label} {value:,}" for label, value in
                       (("parameters", budget.max_params), ("MACs", budget.max_macs)) if value is not None)
    from ..search.sampling import descend
    # How small can a point get? Local search from the cheapest points drawn.
    p = descend(space, draw.fewest_params, key=lambda cost: cost.params).cost
    m = descend(space, draw.fewest_macs, key=lambda cost: cost.macs).cost
    # every point tried (a grid, or a small space drawn out): more tries find nothing new
    fixes = (["raise the budget"] if budget else []) + ["ask for fewer samples"]
    if draw.tried < space.size:
        fixes.append("try more points with --max-tries")
    # below the cheapest point the local search finds, neither fewer samples nor more tries help
    if (budget.max_params is not None and p.params > budget.max_params) or \
            (budget.max_macs is not None and m.macs > budget.max_macs):
        fixes = ["raise the budget to at least the fewest found"]
    hint = (", ".join(fixes[:-1]) + (", or " if len(fixes) > 2 else " or ") + fixes[-1]) if len(fixes) > 1 else fixes[0]
    found = f"only {len(draw.samples):,} of the {wanted:,} samples asked for"
    # without a budget the shortfall is the invalid points: do not blame a budget
    head = f"the budget ({limits}) admits {found}" if budget else f"the space has valid points for {found}"
    invalid = f", {draw.invalid:,} of them invalid" if draw.invalid else ""
    print(f"incdsl: error: {head}, after trying {draw.tried:,} points{invalid}\n"
          f"  = note: the fewest parameters found: {p.params:,} (with {p.macs:,} MACs)\n"
          f"  = note: the fewest MACs found: {m.macs:,} (with {m.params:,} parameters)\n"
          f"  = hint: {hint}", file=sys.stderr)
    return EXIT_BUDGET


def _render(space, draw, args) -> dict[str, str]:
    """Every output file's text, each spec re-checked from its text."""
    from ..ir.network import load
    from ..passes.cost import count_costs
    digits = max(4, len(str(len(draw.samples))))
    rows, files = [], {}
    for k, cand in enumerate(draw.samples, 1):
        name = f"sample_{k:0{digits}d}.inc"
        text = space.to_spec(cand.indices)
        total = count_costs(load(text, file=name, max_layers=args.max_layers)).total
        if (total.params, total.macs) != (cand.cost.params, cand.cost.macs):
            raise AssertionError(f"{name}: the written spec costs {total.params:,} / {total.macs:,}, "
                                 f"the space said {cand.cost.params:,} / {cand.cost.macs:,}")
        files[name] = text
        rows.append({"file": name, "params": cand.cost.params, "macs": cand.cost.macs,
                     "point": space.as_point(cand.indices), "choices": space.values(cand.indices)})
    index = {
        "space": os.path.basename(args.spec), "network": space.name, **size_fields(space.size),
        "strategy": args.strategy, "seed": args.seed if args.strategy == "random" else None,
        "budget": {"max_params": _limit(args, "max_params"), "max_macs": _limit(args, "max_macs")},
        "tried": draw.tried, "over_budget": draw.over_budget, "invalid": draw.invalid,
        "choices": [{"id": c.id, "name": c.name, "kind": c.kind, "options": list(c.options)} for c in space.choices],
        "samples": rows,
    }
    files["index.json"] = json.dumps(index, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "params", "macs", *(c.name for c in space.choices)])
    for row in rows:
        writer.writerow([row["file"], row["params"], row["macs"], *row["choices"].values()])
    files["index.csv"] = buf.getvalue()
    return files


def _limit(args, key):
    from ..report.tables import parse_amount
    value = getattr(args, key)
    return parse_amount(value) if value is not None else None
