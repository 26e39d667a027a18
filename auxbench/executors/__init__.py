"""Running a suite: expand it, execute its unfinished trials, publish the leaderboard.

Executors only execute: the run spec (``run.json``), completion markers and results live in
auxbench's store, so a re-run skips finished trials, resumes unfinished ones from their
checkpoint, and no executor state can lose a result.
"""
from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path

from auxbench.engine import run_trial
from auxbench.errors import AuxbenchError
from auxbench.registry import Registry
from auxbench.results import (
    ERROR_FILE,
    FINISHED_STATUSES,
    default_leaderboard,
    epochs_done,
    inside,
    trial_lock,
    trial_status,
    write_run_record,
)
from auxbench.suite import Resources, check_machine, expand, load_suite, suite_warnings


def _local(todo: list[dict], run_dir: Path, resources: Resources, address: str | None) -> list[str]:
    from auxbench.executors.local import run_local

    return run_local(todo, run_dir)


def _ray(todo: list[dict], run_dir: Path, resources: Resources, address: str | None) -> list[str]:
    from auxbench.executors.ray import run_ray  # Ray is imported only by a run that asks for it

    return run_ray(todo, run_dir, resources, address)


#: name -> ``(trials, run_dir, resources, address) -> ids of the trials that raised``.
EXECUTORS: Registry[Callable[[list[dict], Path, Resources, str | None], list[str]]] = Registry("executor")
EXECUTORS.register("local", _local)
EXECUTORS.register("ray", _ray)
def execute_trial(trial: dict, run_dir: Path, report=None, wait: bool = True) -> dict | None:
    """Run one trial under its lock; on an unexpected exception leave its traceback in
    ``error.txt`` and re-raise.

    The lock (:func:`auxbench.results.trial_lock`) is held by the process that runs the trial (the
    driver for the local executor, a worker for Ray), so a second driver on the same ``runs/``
    never runs it too: it waits, and then reads the result the first one stored (the engine never
    recomputes a finished trial). With ``wait=False`` a trial another process holds is not waited
    for: ``None`` is returned.
    """
    trial_dir = Path(run_dir) / trial["id"]
    with trial_lock(trial_dir, wait) as held:
        if not held:
            return None
        (trial_dir / ERROR_FILE).unlink(missing_ok=True)
        try:
            return run_trial(trial["config"], trial_dir, report)
        except AuxbenchError:
            raise
        except Exception:
            (trial_dir / ERROR_FILE).write_text(traceback.format_exc())
            raise


def announce_resumes(todo: list[dict], run_dir: Path) -> None:
    """Print ``resuming 2 trials from epoch 7 (7 of 15 epochs done)`` for each group of checkpointed trials."""
    groups: dict[tuple[int, int], int] = {}
    for trial in todo:
        done = epochs_done(run_dir / trial["id"])
        if done:
            key = (done, trial["config"]["training"]["epochs"])
            groups[key] = groups.get(key, 0) + 1
    for (done, epochs), n in sorted(groups.items()):
        print(f"resuming {n} trial{'s' if n > 1 else ''} from epoch {done} ({done} of {epochs} epochs done)")


def main_table(markdown: str, after: str | None = None) -> str:
    """The first table of a published leaderboard (its main one), or the first after the line
    ``after`` (a section heading; empty if there is none), to print in the terminal."""
    lines = markdown.splitlines()
    begin = 0 if after is None else next((i for i, line in enumerate(lines) if line == after), len(lines))
    start = next((i for i in range(begin, len(lines)) if lines[i].startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def publish_unless_unchanged(run_dir: Path, committed: Path) -> Path:
    """Publish ``run_dir`` to ``committed`` (an existing page, e.g. a clone's
    ``leaderboards/quickstart.md``) only if its results differ from the page's: same trials with
    the same per-epoch metrics leave the page, its figures and ``reproduce.json`` untouched (a
    page also holds the commit, machine and wall-clock costs, which differ on every run), and this
    run's own page goes to ``runs/<suite>/leaderboard.md``. Prints which happened and, when the
    results differ, the machine that produced the committed ones. Returns the page written."""
    from auxbench.leaderboard import publish
    from auxbench.reproduce import RECORD_FILE

    own = publish(run_dir, run_dir / "leaderboard.md")

    def results(path: Path) -> dict:
        trials = json.loads(path.read_text())["trials"] if path.is_file() else []
        return {t["id"]: (t.get("status"), t.get("metrics")) for t in trials}

    def claims(path: Path) -> tuple:  # a suite's claims are judged on its page, not stored in its trials
        spec = (json.loads(path.read_text()).get("leaderboard") or {}).get("spec") or {} if path.is_file() else {}
        return spec.get("claims"), spec.get("claims_budget_cpu_hours")

    ours, theirs = results(own.with_suffix("") / RECORD_FILE), results(committed.with_suffix("") / RECORD_FILE)
    if ours == theirs and claims(own.with_suffix("") / RECORD_FILE) != claims(committed.with_suffix("") / RECORD_FILE):
        publish(run_dir, committed)
        print(f"the results equal those of {committed} bit for bit, but the suite's claims changed: it is re-rendered")
        return committed
    if ours == theirs:
        print(f"the results equal those of {committed} bit for bit: it is left as it is "
              f"(this run's page, with its own timings and machine: {own})")
        return own
    differ = sum(ours.get(i) != theirs.get(i) for i in ours.keys() | theirs.keys())
    before = header_line(committed.read_text(), "- Machine:") or "Machine: not recorded"
    publish(run_dir, committed)
    print(f"{differ} of {len(ours.keys() | theirs.keys())} trials differ from those of the committed {committed}, "
          f"which is rewritten. The committed numbers came from {before.removeprefix('Machine: ')}; this "
          f"machine: {header_line(committed.read_text(), '- Machine:').removeprefix('Machine: ')} (bits depend on "
          "the CPU's instruction set, the torch build and the thread count)")
    return committed


def header_line(markdown: str, prefix: str) -> str:
    """The leaderboard header's line starting with ``prefix`` (the metric and its direction), without the bullet."""
    return next((line.removeprefix("- ") for line in markdown.splitlines() if line.startswith(prefix)), "")


def skip_reasons(skipped: list[dict]) -> str:
    """The reasons behind the table's "skipped" cells, one line each (empty when none)."""
    return "".join(f"skipped {s['method']} on {s['column']}: {s['reason']}\n" for s in skipped)


def execute_trials(todo: list[dict], run_dir: Path, executor: str, resources: Resources,
                   address: str | None) -> list[str]:
    """Run ``todo`` with ``executor``; return the ids of the trials that raised."""
    return EXECUTORS.resolve(executor, "--executor")(todo, run_dir, resources, address)


def reuse_published_trials(suite_name: str, trials: list[dict], run_dir: Path) -> None:
    """Restore into ``run_dir`` the trials of ``leaderboards/<suite>/reproduce.json`` still in ``trials``."""
    from auxbench.leaderboard.record import restore_store
    from auxbench.reproduce import RECORD_FILE

    published = default_leaderboard(suite_name).with_suffix("") / RECORD_FILE
    if not published.is_file():
        raise AuxbenchError(f"--reuse-published: {suite_name} has no published record ({published})")
    restored = restore_store(published, run_dir, {t["id"] for t in trials})
    print(f"reused {len(restored)} finished trials of {published}")


def run_folder(suite_name: str, runs_dir: str | Path, fake_data: bool, smoke: bool) -> Path:
    """``runs/<suite>[-fake][-smoke]``, checked to stay inside ``runs_dir``."""
    run_dir = Path(runs_dir) / (suite_name + ("-fake" if fake_data else "") + ("-smoke" if smoke else ""))
    inside(run_dir, runs_dir, "the results folder")
    return run_dir


def run_suite(
    suite_path: str | Path,
    executor: str = "local",
    address: str | None = None,
    fake_data: bool = False,
    smoke: bool = False,
    runs_dir: str | Path = "runs",
    leaderboard_path: str | Path | None = None,
    download: bool = False,
    reuse_published: bool = False,
) -> Path:
    """Run every unfinished trial of a suite and publish its leaderboard; return the run folder.

    Fake-data runs go to ``runs/<suite>-fake`` and smoke runs (:mod:`auxbench.smoke`) to
    ``runs/<suite>[-fake]-smoke``; both publish only inside that folder, so they can never be
    mistaken for (or overwrite) a real leaderboard. Before anything is written, the suite is
    checked whole, including this machine's data files and, unless the trials run on a Ray
    cluster at ``address``, its devices; ``download`` (or the suite's ``download: true``) fetches
    missing data files then, before any trial. ``leaderboard_path`` (the command line's ``-o``) is the
    user's choice and goes where it says; the default is checked to stay in ``leaderboards/``.
    ``reuse_published``: the finished trials of the published board's ``reproduce.json`` whose ids
    the suite still expands to are written into the store first (:func:`~auxbench.leaderboard.record.restore_store`),
    so that only trials whose ids changed (a method's new version, a new seed) are trained.
    """
    from auxbench.leaderboard import publish
    from auxbench.tuning import plan_tuning, tune

    suite = load_suite(suite_path)
    trials, skipped = expand(suite, suite_path, fake_data=fake_data, smoke=smoke)
    cells = plan_tuning(suite, suite_path, trials)
    check_machine(suite, suite_path, data=not fake_data, devices=address is None, download=download)
    EXECUTORS.resolve(executor, "--executor")  # an unknown name fails before anything is written
    run_dir = run_folder(suite.name, runs_dir, fake_data, smoke)
    committed = None  # the default page of a real run: kept when this run's results equal it
    if leaderboard_path is None:
        leaderboard_path = run_dir / "leaderboard.md" if fake_data or smoke else default_leaderboard(suite.name)
        committed = None if fake_data or smoke else leaderboard_path
    record = {"suite": suite.name, "suite_file": str(suite_path), "fake_data": fake_data, "smoke": smoke,
              "spec": suite.model_dump(mode="json"), "trials": trials, "skipped": skipped}
    if cells:  # tuned cells' evaluation trials are known once their studies have chosen
        tuned, record["tuning"] = tune(cells, suite.tuning, suite.leaderboard.selection, run_dir.resolve(),
                                       lambda todo: execute_trials(todo, run_dir, executor, suite.resources, address))
        trials = record["trials"] = [tuned.get(t["id"], t) for t in trials]
    write_run_record(run_dir, record)
    if reuse_published:
        reuse_published_trials(suite.name, trials, run_dir)
    todo = [t for t in trials if trial_status(run_dir / t["id"]) not in FINISHED_STATUSES]
    print(f"{suite.name}: {len(trials)} trials ({len(trials) - len(todo)} already finished), "
          f"{len(skipped)} skipped pairs; running {len(todo)} with the {executor} executor")
    for warning in suite_warnings(suite, trials, skipped):
        print(f"warning: {warning}")
    announce_resumes(todo, run_dir)
    failed = execute_trials(todo, run_dir, executor, suite.resources, address)
    try:
        if committed is not None and Path(committed).is_file():
            leaderboard_path = publish_unless_unchanged(run_dir, Path(committed))
        else:
            publish(run_dir, leaderboard_path)
        markdown = Path(leaderboard_path).read_text()
        papers = main_table(markdown, after="## Paper numbers")
        print(f"\n{header_line(markdown, '- Metric:')}\n{main_table(markdown)}\n{skip_reasons(skipped)}"
              + (f"\nPaper numbers beside ours:\n{papers}\n" if papers else "") + f"\nleaderboard: {leaderboard_path}")
    except AuxbenchError as err:
        if not failed:
            raise
        print(f"auxbench: the leaderboard could not be published: {err}")
    if failed:
        by_id = {t["id"]: t for t in trials}
        listing = "\n".join(
            f"  {by_id[i]['column']} {by_id[i]['method']} seed {by_id[i]['config']['seed']} "
            f"(trial {i}): see {run_dir / i / ERROR_FILE}"
            for i in failed
        )
        raise AuxbenchError(
            f"{len(failed)} trial(s) failed; finished results are kept and a re-run retries the failed ones:\n{listing}"
        )
    return run_dir
