"""What a suite needs of this machine: every real data file (fetched first with ``--download``),
pretrained weights, and every device, checked before any trial starts."""
from __future__ import annotations

from pathlib import Path

from auxbench.backbones.registry import TIMM_PREFIX
from auxbench.backbones.timm_backbone import fetch_pretrained
from auxbench.errors import AuxbenchError
from auxbench.problems import check_problem_data
from auxbench.problems.files import DOWNLOAD_HINT
from auxbench.suite.expansion import resolved_training
from auxbench.suite.schema import Suite


def device_unavailable(device: str) -> str | None:
    """Why ``device`` (a valid name) cannot be used on this machine, or ``None``."""
    import torch

    if device in ("auto", "cpu"):
        return None
    if device == "mps":
        return None if torch.backends.mps.is_available() else "this machine has no MPS device"
    if not torch.cuda.is_available():
        return "this machine has no CUDA device (torch.cuda.is_available() is False); use device: cpu or auto"
    count = torch.cuda.device_count()
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    return None


def check_machine(
    suite: Suite, path: str | Path, data: bool = True, devices: bool = True, download: bool = False
) -> None:
    """Raise before any training if this machine lacks what ``suite``'s trials need: a real data
    file or pretrained weights (``data``; off for fake data, whose trials start from random
    weights), or a device (``devices``; off when trials run elsewhere, on a Ray cluster). Call
    after :func:`expand`, which has checked everything else.

    With ``download`` (the command line's ``--download``) or the suite's ``download: true``,
    missing data files are fetched here, before any trial starts; trials never download. A
    missing file otherwise names the command that fetches it, with this suite's path."""
    path = Path(path)
    download = download or suite.download
    defaults = resolved_training(suite.defaults, {}, path, "defaults")
    missing: dict[str, str] = {}  # what is missing (a data set, a model's weights) -> where and why
    for i, exp in enumerate(suite.experiments):
        where = f"{path}: experiments[{i}]"
        if data:
            needs = [(exp.problem, lambda exp=exp: check_problem_data(exp.problem, exp.problem_options,
                                                                      download=download))]
            if exp.pretrained:
                needs.append((exp.backbone, lambda exp=exp: fetch_pretrained(exp.backbone[len(TIMM_PREFIX):])))
            for what, check in needs:
                if what in missing:  # each data set and each model's weights tried once
                    continue
                try:
                    check()
                except AuxbenchError as err:
                    message = str(err).replace(DOWNLOAD_HINT, f"auxbench run {path} --download")
                    missing[what] = f"{where} ({exp.problem}): {message}"
        if devices:
            device = resolved_training(defaults, exp.training, path, f"experiments[{i}].training")["device"]
            reason = device_unavailable(device)
            if reason is not None:
                key = f"{where}.training.device" if "device" in exp.training else f"{path}: defaults.device"
                raise AuxbenchError(f"{key}: {device!r}: {reason}")
    if len(missing) == 1:
        raise AuxbenchError(next(iter(missing.values())))
    if missing:
        raise AuxbenchError(f"{path}: this machine lacks {len(missing)} things the suite needs:\n  "
                            + "\n  ".join(missing.values()))
