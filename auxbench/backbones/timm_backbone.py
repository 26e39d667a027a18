"""``timm:<model>``: any timm model as a backbone, for vision problems beyond the built-ins."""
from __future__ import annotations

import difflib
import functools

from torch import Tensor, nn

from auxbench.backbones.base import Backbone, image_shape
from auxbench.errors import AuxbenchError


class TimmBackbone(Backbone):
    """A timm model created with ``num_classes=0`` (so it returns pooled features).

    ``blocks`` are the model's top-level children, in registration order. They partition the
    parameters held by children (parameters held directly by the model, e.g. a ViT's
    ``cls_token``/``pos_embed``, belong to no block), but running them in order is *not* the
    forward pass in general (it is for timm ResNets), so ``forward`` calls the model itself.
    ``blocks`` is a plain list, not registered a second time: a module registered under two
    names breaks ``torch.func.functional_call``, which then leaves look-ahead tensors in place of
    the parameters (MAXL's φ step followed by a θ step failed on a ViT).
    """

    def __init__(self, model: nn.Module, feature_dim: int) -> None:
        nn.Module.__init__(self)
        self.model = model
        self.feature_dim = int(feature_dim)

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.model.children())

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).flatten(1)


def check_timm_model(model_name: str) -> None:
    """Raise a clear error, with the closest names, if timm has no model ``model_name``."""
    import timm

    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr('timm:' + m) for m in close)}?" if close else ""
        raise AuxbenchError(f"unknown timm model {model_name!r}{hint} (see timm.list_models())")


def timm_backbone(model_name: str, input_shape: tuple[int, ...], pretrained: bool = False) -> TimmBackbone:
    """``timm.create_model(model_name, pretrained, num_classes=0, in_chans=C)``.

    ``feature_dim`` is the model's ``head_hidden_size`` where timm defines one (models with a
    pre-logits layer, e.g. MobileNetV3, output that size) and ``num_features`` otherwise.
    Inputs of another side than the model's default are passed as ``img_size`` to models that take
    one (ViTs: timm resamples the position embedding of pretrained weights); convolutional models
    take any size as they are. Pretrained weights that cannot be had raise :class:`PretrainedUnavailable`.
    """
    import timm

    c, h, _ = image_shape(f"timm:{model_name}", input_shape)
    check_timm_model(model_name)
    kwargs = {"num_classes": 0, "in_chans": c}
    default = timm.models.get_pretrained_cfg(model_name)
    try:
        if default is not None and default.input_size[1] != h:
            try:
                model = timm.create_model(model_name, pretrained=pretrained, img_size=h, **kwargs)
            except TypeError:  # the model takes no img_size: it takes any input size
                model = timm.create_model(model_name, pretrained=pretrained, **kwargs)
        else:
            model = timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:
        if not pretrained:
            raise
        raise PretrainedUnavailable(model_name, err) from None
    feature_dim = getattr(model, "head_hidden_size", None) or model.num_features
    return TimmBackbone(model, feature_dim)


class PretrainedUnavailable(AuxbenchError):
    """A timm model's pretrained weights are neither in the local Hugging Face cache nor downloadable."""

    def __init__(self, model_name: str, err: Exception, offline: str | None = None) -> None:
        cfg = __import__("timm").models.get_pretrained_cfg(model_name)
        source = getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None) or "the timm hub"
        why = f"not tried: {offline}" if offline else type(err).__name__
        super().__init__(
            f"pretrained weights of timm:{model_name} ({source}) are not in the local cache and could not be "
            f"downloaded ({why}); run once with internet access (timm caches them under "
            f"$HF_HOME, default ~/.cache/huggingface), or set pretrained: false"
        )


@functools.cache
def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached (``HF_HUB_OFFLINE`` set, or its host not
    answering within ``timeout_s``), asked once per process; ``None`` when it can."""
    import socket
    import threading
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    answer: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
            answer.append(None)
        except OSError as err:
            answer.append(f"{url.hostname} does not answer ({type(err).__name__})")

    thread = threading.Thread(target=probe, daemon=True)  # a name lookup ignores the socket's timeout
    thread.start()
    thread.join(timeout_s)
    return answer[0] if answer else f"{url.hostname} does not answer within {timeout_s:g} s"


@functools.cache
def fetch_pretrained(model_name: str) -> None:
    """Make sure ``timm:<model_name>``'s pretrained weights are cached here (downloaded if needed),
    so that no trial finds out mid-suite; raises :class:`PretrainedUnavailable` otherwise. Builds
    the model once on the CPU (timm loads weights only into a built model).

    Without a reachable hub the cache alone is read (Hugging Face's offline mode): its download
    retries would otherwise spend a minute per model before the same answer."""
    from huggingface_hub import constants

    offline = hub_unreachable()
    if offline is None:
        timm_backbone(model_name, (3, 224, 224), pretrained=True)
        return
    before, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        timm_backbone(model_name, (3, 224, 224), pretrained=True)
    except PretrainedUnavailable as err:
        raise PretrainedUnavailable(model_name, err, offline) from None
    finally:
        constants.HF_HUB_OFFLINE = before
