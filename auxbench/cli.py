"""``auxbench`` command line: run suites, publish and reproduce leaderboards, check methods, list and validate.

User errors (:class:`AuxbenchError`) print one message and exit 2, without a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from auxbench.errors import AuxbenchError

DOWNLOAD_HELP = ("fetch missing data files (torchvision's downloads, checked by md5) into $AUXBENCH_DATA "
                 "before any trial starts; without it, missing data is an error that names this command")


def _cmd_run(args: argparse.Namespace) -> None:
    from auxbench.portable import pin_for_suite

    pin_for_suite(args.suite)  # before anything imports torch
    if args.dry_run:
        from auxbench.plan import format_plan, plan_suite

        print(format_plan(plan_suite(args.suite, executor=args.executor, address=args.address,
                                     fake_data=args.fake_data, smoke=args.smoke, runs_dir=args.runs_dir,
                                     download=args.download)))
        return
    from auxbench.executors import run_suite

    run_suite(args.suite, executor=args.executor, address=args.address, fake_data=args.fake_data,
              smoke=args.smoke, runs_dir=args.runs_dir, leaderboard_path=args.output, download=args.download,
              reuse_published=args.reuse_published)


def _cmd_leaderboard(args: argparse.Namespace) -> None:
    from auxbench.leaderboard import publish
    from auxbench.results import default_leaderboard, load_run_record

    run_dir = Path(args.runs)
    out = args.output
    if run_dir.is_file() and run_dir.suffix == ".json":  # a published reproduce.json: re-render its page
        out = out or run_dir.parent.with_suffix(".md")
    elif not run_dir.is_dir():
        raise AuxbenchError(f"no results folder {run_dir}")
    if out is None:  # a fake-data or smoke run publishes inside its own folder, never to leaderboards/
        record = load_run_record(run_dir) or {}
        rehearsal = record.get("fake_data") or record.get("smoke")
        out = run_dir / "leaderboard.md" if rehearsal else default_leaderboard(run_dir.resolve().name)
    publish(run_dir, out, metric=args.metric, selection=args.selection, baseline=args.baseline, alpha=args.alpha,
            higher_is_better={"higher": True, "lower": False, None: None}[args.direction])
    print(f"leaderboard: {out}")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from auxbench.reproduce import reproduce

    outcomes = reproduce(args.path, None if args.trials == 0 else args.trials)
    equal = sum(bool(o.get("equal")) for o in outcomes)
    print(f"{equal} of {len(outcomes)} re-run trials bitwise equal to the published ones")
    return 0 if equal == len(outcomes) else 1


def _cmd_check(args: argparse.Namespace) -> int:
    import tempfile

    from auxbench.conformance import ALL_CHECKS, DECLARATION_CHECKS
    from auxbench.method import resolve_method

    resolve_method(args.method, "auxbench check")  # a name or module:Class that does not resolve: exit 2
    names = [check.__name__.removeprefix("check_") for check in ALL_CHECKS]
    unknown = sorted(set(args.skip) - set(names))
    if unknown:
        raise AuxbenchError(f"auxbench check --skip: unknown check {', '.join(unknown)} (valid: {', '.join(names)})")
    checks = [check for check, name in zip(ALL_CHECKS, names, strict=True) if name not in args.skip]
    failed = 0
    for check in [*DECLARATION_CHECKS, *checks]:
        label = check.__name__.removeprefix("check_")
        with tempfile.TemporaryDirectory(prefix="auxbench-check-") as folder:
            try:
                if check in DECLARATION_CHECKS:
                    check(args.method)
                else:
                    check(args.method, Path(folder))
            except (AssertionError, AuxbenchError) as err:
                failed += 1
                print(f"FAIL {label}: {err}")
                continue
        print(f"ok   {label}")
    total = len(DECLARATION_CHECKS) + len(checks)
    print(f"{args.method}: {total - failed} of {total} checks passed")
    return 1 if failed else 0


def _cmd_list(args: argparse.Namespace) -> None:
    if args.what == "methods":
        from auxbench.method import discover_all, install_hint

        found, unavailable = discover_all()
        lines = {module: f"{module:12s} unavailable: {reason}; {install_hint(reason)}"
                 for module, reason in unavailable.items()}
        for name, cls in found.items():
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            venue = f"{cls.paper.venue} {cls.paper.year}" if cls.paper else "—"
            lines[name] = f"{name:12s} v{cls.version}  {venue:14s}  {doc}"
        for name in sorted(lines):
            print(lines[name])
    elif args.what == "problems":
        from auxbench.problems import PROBLEMS, build_problem, problem_version

        for name, factory in sorted(PROBLEMS.items()):
            module_doc = sys.modules[factory.__module__].__doc__ or factory.__doc__ or ""
            problem = build_problem(name, seed=0, fake=True)  # fake data: the tasks, without any file
            print(f"{name:16s} v{problem_version(name)}  {module_doc.strip().splitlines()[0] if module_doc else ''}")
            print(f"{'':16s} input {'x'.join(map(str, problem.input_shape))}; {_tasks_line(problem.tasks)}")
    elif args.what == "backbones":
        from auxbench.backbones import BACKBONES

        for name in sorted(BACKBONES):
            print(name)
        print("timm:<model>  (any timm model, e.g. timm:resnet18)")
    else:
        for path in sorted(Path(args.suites_dir).glob("*.y*ml")):
            print(path)


def _tasks_line(tasks: list, shown: int = 4) -> str:
    """The tasks of a problem on one line: the first ``shown`` in full, the rest counted (CUB has 313)."""
    def one(t) -> str:
        return f"{t.name} ({t.role}, {t.kind}, {t.num_outputs} output{'s' if t.num_outputs > 1 else ''}, {t.metric})"

    more = len(tasks) - shown
    rest = f"; ... and {more} more auxiliary tasks" if more > 0 else ""
    return f"{len(tasks)} task{'s' if len(tasks) > 1 else ''}: " + "; ".join(map(one, tasks[:shown])) + rest


def _cmd_validate(args: argparse.Namespace) -> None:
    from auxbench.memory import check_memory
    from auxbench.suite import check_machine, expand, load_suite, suite_warnings
    from auxbench.tuning import plan_tuning

    suite = load_suite(args.suite)
    trials, skipped = expand(suite, args.suite, fake_data=args.fake_data)
    cells = plan_tuning(suite, args.suite, trials)
    check_machine(suite, args.suite, data=not args.fake_data, download=args.download)
    check_memory(trials, args.suite)
    print(f"{args.suite}: valid; {len(trials)} trials, {len(skipped)} skipped pairs")
    for warning in suite_warnings(suite, trials, skipped):
        print(f"  warning: {warning}")
    for cell in cells:
        tuned = ", ".join(cell.space) or "nothing to tune: defaults"
        print(f"  tuning {cell.method} on {cell.column}: budget {cell.budget} ({tuned})")
    for s in skipped:
        print(f"  skipped {s['method']} on {s['column']}: {s['reason']}")


def build_parser() -> argparse.ArgumentParser:
    from auxbench.smoke import SMOKE_BATCH, SMOKE_EPOCHS, SMOKE_TRAIN_BATCHES

    parser = argparse.ArgumentParser(prog="auxbench", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a suite's unfinished trials and publish its leaderboard")
    run.add_argument("suite", help="suite YAML file")
    run.add_argument("--executor", default="local",
                     help="local: trials one after another in this process; ray: Ray Tune, on this machine "
                          "or the cluster at --address")
    run.add_argument("--address", default=None, help="address of an existing Ray cluster")
    run.add_argument("--fake-data", action="store_true", help="random data of the right shapes (offline check)")
    run.add_argument("--smoke", action="store_true",
                     help=f"the first seed of each (column, method) for at most {SMOKE_EPOCHS} epochs of "
                          f"{SMOKE_TRAIN_BATCHES} batches of at most {SMOKE_BATCH} rows on small splits: does the "
                          "suite run? (never published)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the trial plan (trials, finished ones, skipped pairs, resources, time estimates); "
                          "train and write nothing")
    run.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    run.add_argument("--reuse-published", action="store_true",
                     help="take the finished trials of the published board's reproduce.json whose ids the suite "
                          "still has, instead of training them again (only trials whose ids changed are run)")
    run.add_argument("--runs-dir", default="runs", help="results store (default: runs/)")
    run.add_argument("-o", "--output", default=None, help="leaderboard path (default: leaderboards/<suite>.md)")
    run.set_defaults(func=_cmd_run)

    board = sub.add_parser("leaderboard", help="render a leaderboard from stored results")
    board.add_argument("runs", help="results folder, e.g. runs/quickstart, or a published record, "
                                    "leaderboards/<suite>/reproduce.json (re-renders leaderboards/<suite>.md)")
    board.add_argument("-o", "--output", default=None, help="markdown path; figures go to a folder beside it")
    board.add_argument("--metric", default=None, help="'primary' or a key such as test/fine/accuracy")
    board.add_argument("--direction", choices=["higher", "lower"], default=None,
                       help="which --metric values are better (needed when the metric declares no direction)")
    board.add_argument("--selection", choices=["final", "best_val"], default=None)
    board.add_argument("--baseline", default=None, help="method the others are tested against (default: suite's, stl)")
    board.add_argument("--alpha", type=float, default=None, help="significance level (default: suite's, 0.05)")
    board.set_defaults(func=_cmd_leaderboard)

    again = sub.add_parser("reproduce", help="re-run published trials and compare them bit for bit (exit 1 if any differs)")
    again.add_argument("path", help="a leaderboard (leaderboards/<suite>.md) or a results folder (runs/<suite>)")
    again.add_argument("--trials", type=int, default=3, help="how many trials, one per cell in turn (0: all; default 3)")
    again.set_defaults(func=_cmd_reproduce)

    check = sub.add_parser("check", help="run the method conformance checks on a method, in this repository "
                                         "or anywhere on the path (exit 1 if any fails)")
    check.add_argument("method", help="a method name, or package.module:Class for a method outside methods/")
    check.add_argument("--skip", nargs="*", default=[], metavar="CHECK",
                       help="checks to leave out, e.g. trains_a_vit (slow on a CPU)")
    check.set_defaults(func=_cmd_check)

    listing = sub.add_parser("list", help="list methods, problems, backbones or suites")
    listing.add_argument("what", choices=["methods", "problems", "backbones", "suites"])
    listing.add_argument("--suites-dir", default="suites")
    listing.set_defaults(func=_cmd_list)

    validate = sub.add_parser("validate", help="check a suite, its data files and devices, without training")
    validate.add_argument("suite")
    validate.add_argument("--fake-data", action="store_true", help="check as for run --fake-data (no data files needed)")
    validate.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    validate.set_defaults(func=_cmd_validate)
    return parser


class _Version(argparse.Action):
    """``--version``: the package version and, in a git checkout, the commit (looked up only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print auxbench's version (and commit) and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from auxbench.provenance import code_version

        version = code_version()
        line = f"auxbench {version['auxbench'] or '(not installed)'}"
        if version["git_commit"]:
            line += f" (commit {version['git_commit'][:12]}{', modified' if version['git_dirty'] else ''})"
        print(line)
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except AuxbenchError as err:
        print(f"auxbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
