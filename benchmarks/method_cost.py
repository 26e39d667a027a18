"""Cost of every method per training step as a ratio to STL, beside its pass-count floor; writes docs/performance.md.

    python benchmarks/method_cost.py --backbones lenet5 convnet4 --fake-data            # every method, CPU
    python benchmarks/method_cost.py --backbones vgg16 resnet18 --batch-size 128 --device cuda --fake-data
    python benchmarks/method_cost.py --methods stl maxl wamal --backbones lenet5 --steps 10 --output -

Every method trains the same problem (default ``cifar100_20``; ``--option random_aux 9`` sets
T = 11 tasks), backbone, seed, batch and data in a fresh process of its own, so that its peak
memory is its own: CUDA's peak allocation on a GPU, the process's peak resident set on a CPU
(which includes the Python and torch runtime and the data, so CPU memory ratios understate
differences). One warm-up epoch, then ``--epochs`` timed epochs of about ``--steps`` batches each
(``--fake-data`` sizes the fake training split for that). A method's time per step is its epoch
time over the batches of its first pass: for MAXL and WAMAL a step is a θ step and a φ step.

The floor (``benchmarks/floors.py``) is the number of forward (F) and backward (B) passes of the
primary network the method's algorithm needs per step. It becomes a ratio to STL with STL's own
forward and backward times, measured on a batch in STL's process: floor = (F·t_F + B·t_B + t_o)
/ t_STL, where t_o = t_STL − t_F − t_B is what a step costs besides its passes (batch, optimizer
step), paid once by every method. measured / floor says how far a method is above the work its
algorithm needs. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import multiprocessing
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from floors import FLOORS, floor_passes  # noqa: E402

from auxbench.determinism import deterministic_kernels  # noqa: E402
from auxbench.engine import Trial  # noqa: E402
from auxbench.method import discover_all, resolve_method  # noqa: E402
from auxbench.problems.sampling import stream_seed  # noqa: E402
from auxbench.suite import TrainingConfig  # noqa: E402

TARGETS = {  # issue 13: (method, backbone or None for all) -> the bound on measured × STL
    ("maxl", "vgg16"): 5.5, ("wamal", "vgg16"): 5.5, ("slgrad", None): 3.0, ("maoal", None): 2.0,
}
FLOOR_TARGET = 1.25  # every method: measured ≤ 1.25 × its floor


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pass_split_batches(trial: Trial, batch_size: int) -> int:
    phase = trial.method.epoch_passes[0]
    return -(-len(trial._pass_split(phase)) // batch_size)


def forward_backward_times(trial: Trial, repeats: int) -> tuple[float, float]:
    """Median seconds of one forward (with the primary loss) and one backward of the model on a training batch."""
    ctx, device = trial.ctx, trial.device
    split = trial._pass_split(trial.method.epoch_passes[0])
    batch = next(iter(split.batches(trial.training["batch_size"], stream_seed(0, 0), shuffle=True, augment=True)))
    batch = batch.to(device)
    primary = ctx.problem.primary.name
    forward, backward = [], []
    for _ in range(repeats + 1):  # the first is a warm-up
        _sync(device)
        tick = time.perf_counter()
        with trial.precision():
            loss = ctx.task_losses(trial.model(batch.x), batch)[primary].mean()
        _sync(device)
        tock = time.perf_counter()
        loss.backward()
        _sync(device)
        forward.append(tock - tick)
        backward.append(time.perf_counter() - tock)
        trial.model.zero_grad(set_to_none=True)
    return statistics.median(forward[1:]), statistics.median(backward[1:])


def measure(method: str, backbone: str, args: argparse.Namespace, workdir: str) -> dict:
    """One method's step time, peak memory and tasks; for STL also its forward and backward times."""
    torch.set_num_threads(args.threads) if args.threads else None
    if args.fake_data:
        from auxbench.problems import cifar

        cifar.FAKE_SIZES["train"] = args.steps * args.batch_size
    cls = resolve_method(method)
    config = {
        "problem": args.problem, "problem_options": dict(args.option), "backbone": backbone,
        "method": method, "method_version": cls.version, "hparams": cls.resolve_hparams({}),
        "seed": 0, "fake_data": args.fake_data,
        "training": TrainingConfig.model_validate(
            {"epochs": args.epochs + 2, "batch_size": args.batch_size, "device": args.device,
             "deterministic": args.deterministic}
        ).model_dump(),
    }
    kernels = deterministic_kernels(args.deterministic)  # as the engine's Trial.run enters it
    kernels.__enter__()  # for the rest of this (fresh, one-method) process
    trial = Trial(config, Path(workdir) / f"{backbone}-{method}")
    if trial.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trial.device)
    steps = _pass_split_batches(trial, args.batch_size)
    seconds, profile = [], None
    profiled = method in args.profile  # one more epoch, under the profiler, after the timed ones
    for epoch in range(args.epochs + 1 + profiled):
        profiling = epoch == args.epochs + 1
        with torch.profiler.profile() if profiling else contextlib.nullcontext() as profiler:
            _sync(trial.device)
            tick = time.perf_counter()
            trial._train_epoch(epoch)
            _sync(trial.device)
        if not profiling:
            seconds.append((time.perf_counter() - tick) / steps)
        else:
            sort = "self_cuda_time_total" if trial.device.type == "cuda" else "self_cpu_time_total"
            profile = profiler.key_averages().table(sort_by=sort, row_limit=args.profile_rows)
    if trial.device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(trial.device) / 2**20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"step_s": statistics.median(seconds[1:]), "memory_mib": memory, "steps": steps,
           "tasks": len(trial.problem.tasks), "hparams": config["hparams"], "profile": profile}
    if method == "stl":
        out["forward_s"], out["backward_s"] = forward_backward_times(trial, repeats=5)
    return out


def measure_fresh(method: str, backbone: str, args: argparse.Namespace, workdir: str) -> dict:
    """:func:`measure` in a fresh process (peak memory cannot be reset within one)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (method, backbone, args, workdir))


def passes_ratio(forwards: float, backwards: float, stl: dict) -> float:
    """Seconds of ``forwards`` F and ``backwards`` B passes plus STL's other per-step costs, over STL's step."""
    t = stl["step_s"]
    # the passes measured alone can exceed a whole step on a noisy machine: then they are the step
    scale = min(1.0, t / (stl["forward_s"] + stl["backward_s"]))
    f, b = scale * stl["forward_s"], scale * stl["backward_s"]
    return (forwards * f + backwards * b + t - f - b) / t


def _mean_stl(runs: list[dict]) -> dict:
    """STL's step, forward and backward times averaged over ``runs``, the other fields of the first."""
    keys = ("step_s", "forward_s", "backward_s")
    return {**runs[0], **{k: statistics.fmean(r[k] for r in runs) for k in keys}}


def run_backbone(backbone: str, methods: list[str], args: argparse.Namespace, workdir: str) -> list[dict]:
    """A row per method (STL first): ratios to STL and to the floor; failures recorded, not raised.

    STL runs before every method and once more at the end, and each method's ratios use the mean
    of the two STL runs beside it: on a machine whose load drifts, a method and its reference see
    nearly the same load (a single STL run at the start once put every later method below its
    floor). The STL row gives the spread of its runs, a measure of how much the load moved.
    """
    others = [m for m in methods if m != "stl"]
    stl_runs: list[dict] = []
    results: dict[str, tuple[dict, int]] = {}  # method -> (result, index of the STL run before it)

    def run_stl() -> None:
        try:
            stl_runs.append(measure_fresh("stl", backbone, args, workdir))
        except Exception as err:
            raise SystemExit(f"STL failed on {backbone}: nothing to compare with") from err
        print(f"  {'stl':16s} {1000 * stl_runs[-1]['step_s']:9.1f} ms per step", flush=True)

    run_stl()
    for method in others:
        if args.deadline and time.monotonic() > args.deadline:
            results[method] = ({"error": "not measured: the time budget (--deadline) was spent"}, -1)
            print(f"  {method:16s} {results[method][0]['error']}", flush=True)
            continue
        try:
            result = measure_fresh(method, backbone, args, workdir)
        except Exception as err:  # reported in the table; the next method runs
            results[method] = ({"error": f"{type(err).__name__}: {err}"[:200]}, -1)
            print(f"  {method:16s} failed: {results[method][0]['error']}", flush=True)
            continue
        if result["profile"]:
            print(f"torch.profiler, {method} on {backbone}, one epoch after the timed ones:\n"
                  f"{result['profile']}", flush=True)
        print(f"  {method:16s} {1000 * result['step_s']:9.1f} ms per step", flush=True)
        results[method] = (result, len(stl_runs) - 1)
        run_stl()
    stl = {**_mean_stl(stl_runs), "stl_runs_ms": [1000 * r["step_s"] for r in stl_runs]}
    rows = [{"method": "stl", "step_ms": 1000 * stl["step_s"], "ratio": 1.0, "memory_mib": stl["memory_mib"],
             "memory_ratio": 1.0, "floor": 1.0, "passes": (1, 1), "over_floor": 1.0, "tasks": stl["tasks"],
             "steps": stl["steps"], "forward_ms": 1000 * stl["forward_s"], "backward_ms": 1000 * stl["backward_s"],
             "stl_runs_ms": stl["stl_runs_ms"]}] if "stl" in methods else []
    for method in others:
        result, before = results[method]
        if "error" in result:
            rows.append({"method": method, "error": result["error"]})
            continue
        beside = _mean_stl(stl_runs[before:before + 2])
        passes = floor_passes(method, result["tasks"], result["hparams"])
        floor = passes_ratio(*passes, beside)
        ratio = result["step_s"] / beside["step_s"]
        rows.append({"method": method, "step_ms": 1000 * result["step_s"], "ratio": ratio,
                     "memory_mib": result["memory_mib"], "memory_ratio": result["memory_mib"] / stl["memory_mib"],
                     "floor": floor, "passes": passes, "over_floor": ratio / floor, "tasks": result["tasks"],
                     "steps": result["steps"]})
    for row in rows:
        if "error" not in row:
            print(f"  {row['method']:16s} {row['ratio']:6.2f}× STL  floor {row['floor']:5.2f}  "
                  f"{row['over_floor']:5.2f}× floor  memory {row['memory_ratio']:5.2f}× STL", flush=True)
    return rows


def target_verdicts(backbone: str, rows: list[dict]) -> list[str]:
    """One line per issue-13 target that this backbone's table decides."""
    lines = []
    measured = [r for r in rows if "ratio" in r]
    over = [f"{r['method']} ({r['over_floor']:.2f})" for r in measured if r["over_floor"] > FLOOR_TARGET]
    lines.append(f"every method ≤ {FLOOR_TARGET}× its floor: "
                 + ("met" if not over else "missed by " + ", ".join(over)))
    for (method, on), bound in TARGETS.items():
        row = next((r for r in measured if r["method"] == method), None)
        if row is None or (on is not None and on != backbone):
            continue
        verdict = "met" if row["ratio"] <= bound else "missed"
        lines.append(f"{method} ≤ {bound}× STL: {verdict} ({row['ratio']:.2f}×)")
    return lines


def markdown_table(rows: list[dict], memory_kind: str) -> str:
    head = ("| method | T | ms / step | × STL | floor passes | floor × STL | measured / floor | peak memory × STL |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['tasks']} | {r['step_ms']:.1f} | {r['ratio']:.2f} | "
                     f"{r['passes'][0]:.3g}F + {r['passes'][1]:.3g}B | {r['floor']:.2f} | "
                     f"{r['over_floor']:.2f} | {r['memory_ratio']:.2f} |")
    stl = next(r for r in rows if r["method"] == "stl")
    runs = stl["stl_runs_ms"]
    lines.append(f"\nSTL: {stl['step_ms']:.1f} ms per step (mean of its {len(runs)} runs, one before each method "
                 f"and one at the end: {min(runs):.1f}–{max(runs):.1f} ms; each ratio uses the two beside the "
                 f"method) = forward {stl['forward_ms']:.1f} ms + backward "
                 f"{stl['backward_ms']:.1f} ms + the rest; {stl['steps']} steps per epoch; memory: {memory_kind}, "
                 f"STL {stl['memory_mib']:.0f} MiB.")
    return "\n".join(lines)


def machine(device: str, threads: int) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA), host {platform.node()}"
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"CPU: {cpu}, {threads or torch.get_num_threads()} torch thread(s) of {multiprocessing.cpu_count()} cores"


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="cifar100_20")
    parser.add_argument("--backbones", nargs="+", default=["lenet5", "convnet4", "vgg16"])
    parser.add_argument("--methods", nargs="+", help="default: every method of methods/ that imports")
    parser.add_argument("--option", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        type=lambda v: int(v) if v.isdigit() else v, help="problem option, e.g. --option random_aux 9")
    parser.add_argument("--steps", type=int, default=20, help="training batches per epoch (fake data; default 20)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up (default 2)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per method process (0: torch's)")
    parser.add_argument("--fake-data", action="store_true")
    parser.add_argument("--profile", nargs="+", default=[], metavar="METHOD",
                        help="print torch.profiler's operator table of one more epoch of these methods (not timed)")
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument("--deterministic", action="store_true",
                        help="training.deterministic: deterministic cuDNN/cuBLAS kernels (its cost on a GPU)")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="time.monotonic() after which no further method starts (benchmarks/gpu_evidence.py)")
    parser.add_argument("--output", default=str(REPO / "docs" / "performance.md"),
                        help="the table's markdown file ('-': print only)")
    parser.add_argument("--section", default="tables",
                        help="name of the generated block of the markdown file this run replaces (default tables)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.epochs < 1 or args.batch_size < 1:
        parser.error("--steps, --epochs and --batch-size must be positive")
    available, unavailable = discover_all()
    methods = args.methods or sorted(available)
    unknown = [m for m in methods if m not in available]
    if unknown:
        parser.error(f"unknown or unavailable method(s) {unknown}; available: {sorted(available)}"
                     + (f"; not importable here: {sorted(unavailable)}" if unavailable else ""))
    missing = [m for m in methods if m not in FLOORS]
    if missing:
        parser.error(f"no floor in benchmarks/floors.py for {missing}")
    methods = ["stl", *[m for m in methods if m != "stl"]]
    tables = {}
    with tempfile.TemporaryDirectory(prefix="auxbench-cost-") as workdir:
        for backbone in args.backbones:
            print(f"{backbone}:", flush=True)
            tables[backbone] = run_backbone(backbone, methods, args, workdir)
    if args.output != "-":
        write_report(Path(args.output), tables, args, argv if argv is not None else sys.argv[1:], unavailable)
        print(f"wrote {args.output}")
    return tables


def write_report(path: Path, tables: dict[str, list[dict]], args: argparse.Namespace, argv: list[str],
                 unavailable: dict[str, str]) -> None:
    """Write the run's tables into ``path`` between the markers of ``--section``, keeping the rest of the file."""
    memory_kind = "CUDA peak allocated" if args.device.startswith("cuda") else "process peak RSS"
    parts = [f"Machine: {machine(args.device, args.threads)}. Date: {datetime.date.today().isoformat()}.",
             f"Command: `python benchmarks/method_cost.py {' '.join(argv)}`",
             f"Problem `{args.problem}` (options {dict(args.option) or 'none'}, "
             f"{'fake data' if args.fake_data else 'real data'}), batch {args.batch_size}, "
             f"{'deterministic kernels, ' if args.deterministic else ''}"
             f"median of {args.epochs} epochs of {args.steps} steps after a warm-up epoch."]
    if unavailable:
        parts.append("Not measured (optional dependency missing): " + ", ".join(sorted(unavailable)) + ".")
    for backbone, rows in tables.items():
        parts.append(f"**{backbone}**\n\n{markdown_table(rows, memory_kind)}\n\nIssue 13 targets on {backbone}:\n\n"
                     + "\n".join(f"- {line}" for line in target_verdicts(backbone, rows)))
    generated = "\n\n".join(parts)
    begin, end = f"<!-- method_cost {args.section}: begin -->", f"<!-- method_cost {args.section}: end -->"
    text = path.read_text() if path.exists() else f"# Performance\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = f"{text.rstrip()}\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{begin}\n{generated}\n{end}{tail}")


if __name__ == "__main__":
    main()
