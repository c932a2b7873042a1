"""The uncompressed baselines a scenario runs, and the default that PyTorch would use.

A compressed codec is credited only for what it gains over the best uncompressed exchange
(``Row.speedup_vs_best_baseline``, :func:`gradwire.results.add_speedups`). The uncompressed
exchanges are the codecs that declare themselves baselines (``Exchange.baseline``): ``fp32``,
and ``bf16`` / ``fp16`` with the reduction accumulated in the wire dtype or in float32
(:mod:`gradwire.codecs.fp`). A scenario's ``baselines`` lists those every point runs besides
its ``codecs``; left unset, a decoder (an LLM, :mod:`gradwire.models.zoo.llama`) runs what
current PyTorch does for it, :data:`LLM_DEFAULT`, and any other model adds nothing (its
listed codecs, usually with ``fp32``, DDP's default, are compared as they are).
"""

from __future__ import annotations

from typing import Any

LLM_DEFAULT = "bf16"
LLM_DEFAULT_SOURCE = (
    "PyTorch FSDP2 fully_shard with MixedPrecisionPolicy(param_dtype=torch.bfloat16): "
    "reduce_dtype left None reduces gradients in the compute dtype, bf16, which NCCL adds in "
    "bf16 (torch.distributed.fsdp.MixedPrecisionPolicy)"
)


def default_baselines(sc: Any) -> list[str]:
    """The baselines of ``sc``: its ``baselines`` when set, else PyTorch's for a decoder."""
    if sc.baselines is not None:
        return list(sc.baselines)
    from gradwire.models.llm_workload import is_decoder

    return [LLM_DEFAULT] if is_decoder(sc.model) else []


def with_baselines(sc: Any) -> Any:
    """``sc`` with its baselines ahead of its codecs (each exchange once: ``bf16`` and
    ``bf16(accumulate='wire')`` are one)."""
    have = {_canonical(c) for c in sc.codecs}
    extra = [b for b in default_baselines(sc) if _canonical(b) not in have]
    return sc.model_copy(update={"codecs": [*extra, *sc.codecs]}) if extra else sc


def _canonical(spec: str) -> str:
    from gradwire.codecs import make_codec
    from gradwire.errors import GradWireError

    try:
        return make_codec(spec).spec()
    except GradWireError:
        return spec  # reported by the scenario's codec checks


def baseline_problems(sc: Any) -> list[tuple[str, str]]:
    """``(path, message)`` for a ``baselines`` entry that is not an uncompressed exchange."""
    from gradwire.codecs import make_codec
    from gradwire.errors import GradWireError

    out = []
    for i, spec in enumerate(sc.baselines or []):
        try:
            ex = make_codec(spec).exchange
        except GradWireError as exc:
            out.append((f"baselines[{i}]", str(exc)))
            continue
        if not ex.baseline:
            out.append((f"baselines[{i}]", f"{spec!r} compresses; a baseline is an uncompressed "
                                           "exchange: fp32, bf16, fp16 (accumulate='wire' or 'fp32')"))  # fmt: skip
    return out


__all__ = ["LLM_DEFAULT", "LLM_DEFAULT_SOURCE", "baseline_problems", "default_baselines", "with_baselines"]
