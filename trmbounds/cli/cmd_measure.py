"""``trmbounds measure``: divergences from a model run or an engine's rollouts, written as a
statistics file."""

from __future__ import annotations

import json as _json
import re
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import TrmboundsError
from ._common import (
    ADV_RANGE_OPT,
    CONSTANTS_OPT,
    FORCE_OPT,
    JSON_OPT,
    REWARD_RANGE_OPT,
    Constants,
    atomic_output,
    check_outputs,
    console,
    dumps,
    fmt,
    print_json,
    write_atomic,
)

EPILOG = """
Examples:

  # bf16 rollouts vs fp32 training, same weights (the backend-mismatch source)

  trmbounds measure --roll ./my-model --roll-dtype bfloat16 \\
      --train-dtype float32 -o measured.json

  # two checkpoints, your prompts, top-p sampling (missing mass is measured)

  trmbounds measure --roll ./ckpt-100 --train ./ckpt-101 \\
      --prompts prompts.jsonl --top-p 0.95

  # read the file back; keep the per-token records for trmbounds check

  trmbounds eval --stats measured.json

  trmbounds measure --roll ./my-model --roll-dtype bfloat16 \\
      --tokens tokens.jsonl -o m.json

  # offline in seconds: a tiny random-weight model (numbers illustrative)

  trmbounds measure --demo -o measured.json --tokens tokens.jsonl

  # the engine that really sampled (vLLM responses): certified KL/TV per token

  trmbounds measure --rollouts vllm.jsonl --rollout-format vllm \\
      --train ./my-model -o m.json
"""


class Dtype(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float64 = "float64"


class Attn(str, Enum):
    eager = "eager"
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"


class RolloutFormat(str, Enum):
    native = "native"
    vllm = "vllm"
    sglang = "sglang"


class LogprobsMode(str, Enum):
    raw = "raw"
    temperature = "temperature"
    processed = "processed"


app = typer.Typer(add_completion=False)


@app.command(
    "measure",
    epilog=EPILOG,
    short_help="Measure the divergences: two models, or an engine's log-probs.",
)
def measure_cmd(
    roll: Annotated[
        str | None,
        typer.Option(
            "--roll",
            help="Rollout policy: local model directory or hub id (transformers).",
            show_default=False,
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Offline demo: a tiny random-weight model built on the fly, bfloat16 rollouts "
            "vs float32 training (its numbers illustrate the tool, not any real model).",
        ),
    ] = False,
    train: Annotated[
        str | None,
        typer.Option(
            "--train",
            help="Training policy (model directory or hub id) [default: the --roll model].",
            show_default=False,
        ),
    ] = None,
    roll_dtype: Annotated[
        Dtype | None,
        typer.Option(
            "--roll-dtype",
            help="Weights dtype of the rollout policy [default: float32; bfloat16 with --demo].",
            show_default=False,
        ),
    ] = None,
    train_dtype: Annotated[
        Dtype | None,
        typer.Option(
            "--train-dtype",
            help="Weights dtype of the training policy [default: float32].",
            show_default=False,
        ),
    ] = None,
    roll_attn: Annotated[
        Attn | None,
        typer.Option(
            "--roll-attn",
            help="Attention implementation of the rollout policy [default: transformers' choice].",
            show_default=False,
        ),
    ] = None,
    train_attn: Annotated[
        Attn | None,
        typer.Option(
            "--train-attn",
            help="Attention implementation of the training policy.",
            show_default=False,
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer", help="Tokenizer [default: the --roll model's].", show_default=False
        ),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="Prompt file: text (one prompt per line) or JSONL ({'prompt': ...} or "
            "{'messages': [...]}) [default: a small built-in set].",
            show_default=False,
        ),
    ] = None,
    num_samples: Annotated[
        int | None,
        typer.Option(
            "--num-samples",
            "-n",
            min=1,
            help="Responses sampled per prompt [default: 4; not with --rollouts].",
            show_default=False,
        ),
    ] = None,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-new-tokens",
            min=1,
            help="Longest response (tokens) [default: 128]. With --rollouts: the engine's "
            "generation cap (its max_tokens), recorded as the horizon.",
            show_default=False,
        ),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature",
            help="Sampling temperature (> 0). With --rollouts: the default for records "
            "that do not give their own.",
        ),
    ] = 1.0,
    top_p: Annotated[
        float,
        typer.Option(
            "--top-p",
            help="Nucleus sampling (< 1 breaks full support: m measured). With "
            "--rollouts: the default for records that do not give their own.",
        ),
    ] = 1.0,
    top_k: Annotated[
        int,
        typer.Option(
            "--top-k",
            min=-1,
            help="Top-k sampling (0 or -1 = off; breaks full support). With --rollouts: "
            "the default for records that do not give their own.",
        ),
    ] = 0,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Seed of the sampler [default: 0; not with --rollouts].",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N, or auto (cuda when present).")
    ] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Sequences per batch.")
    ] = 8,
    max_memory: Annotated[
        str,
        typer.Option(
            "--max-memory",
            help="Budget for the vocabulary-sized buffers (logits, divergence kernel), "
            "e.g. 512MB, 2GB; model weights and activations are not counted.",
        ),
    ] = "1GB",
    trm_max: Annotated[
        float, typer.Option("--trm-max", help="TRM-Max threshold δ for the acceptance rate.")
    ] = 0.05,
    trm_avg: Annotated[
        float, typer.Option("--trm-avg", help="TRM-Avg threshold δ_avg for the acceptance rate.")
    ] = 0.001,
    ser: Annotated[
        float, typer.Option("--ser", help="SER threshold δ_SER for the acceptance rate.")
    ] = 0.05,
    ln_trm: Annotated[
        float | None,
        typer.Option(
            "--ln-trm",
            help="LN-TRM threshold δ_W (weights from the measured ε̂, δ̂) [default: off].",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Statistics file to write (docs/stats-file.md)."),
    ] = Path("measured.json"),
    tokens: Annotated[
        Path | None,
        typer.Option(
            "--tokens",
            help="Also write the per-token records (JSONL, one line per response: log-probs "
            "and the exact KL/TV per token; with --rollouts, their certified intervals "
            "instead) — a per-token dump `trmbounds check` reads.",
            show_default=False,
        ),
    ] = None,
    rollouts: Annotated[
        Path | None,
        typer.Option(
            "--rollouts",
            help="An engine's rollouts (JSONL: token ids, sampled log-probs, top-k "
            "log-probs; docs/rollouts.md) scored by --train: certified per-token KL/TV "
            "intervals instead of sampling with --roll.",
            show_default=False,
        ),
    ] = None,
    rollout_format: Annotated[
        RolloutFormat,
        typer.Option(
            "--rollout-format",
            help="Layout of --rollouts: native records, vLLM /v1/completions responses, "
            "or SGLang /generate responses.",
        ),
    ] = RolloutFormat.native,
    logprobs_mode: Annotated[
        LogprobsMode | None,
        typer.Option(
            "--logprobs-mode",
            help="What the engine's log-probs describe, for records without their own: raw "
            "(before temperature and top-k/top-p), temperature, or processed (the "
            "distribution sampled from). Needed with temperature != 1 or truncation.",
            show_default=False,
        ),
    ] = None,
    device_map: Annotated[
        str | None,
        typer.Option(
            "--device-map",
            help="Shard the training model across every visible GPU, then CPU RAM, then "
            "disk (transformers' device_map through accelerate): auto, balanced, "
            "balanced_low_0 or sequential [default: one device, --device].",
            show_default=False,
        ),
    ] = None,
    offload_folder: Annotated[
        Path | None,
        typer.Option(
            "--offload-folder",
            help="With --device-map: where layers that fit on no device are offloaded.",
            show_default=False,
        ),
    ] = None,
    force: FORCE_OPT = False,
    adv_range: ADV_RANGE_OPT = None,
    reward_range: REWARD_RANGE_OPT = None,
    constants: CONSTANTS_OPT = Constants.paper,
    json: JSON_OPT = False,
) -> None:
    """Measure per-token KL and TV between a rollout and a training policy.

    Two models (--roll, --demo): samples responses from the rollout policy and
    scores them under both with full logits: exact full-vocabulary KL and TV per
    token.

    An engine's rollouts (--rollouts FILE --train MODEL): nothing is sampled;
    --train scores the engine's own responses against its top-k log-probs:
    certified per-token KL/TV intervals; δ̂, ε̂, D_KL^seq and D̄_t use their upper
    ends (docs/rollouts.md).

    Writes the divergence statistics (δ̂, ε̂ as maxima over the measured contexts;
    D_KL^seq, D_TV^seq, D̄_t as estimates with 95% CIs; TRM acceptance rates) to a
    statistics file, and prints the bounds table.
    """
    if adv_range is not None and reward_range is not None:
        raise TrmboundsError("give --adv-range or --reward-range, not both")
    if rollouts is not None:
        if demo or roll is not None:
            raise TrmboundsError(
                "give one of --roll (sample with a model), --demo or --rollouts (an engine's file)"
            )
        if train is None:
            raise TrmboundsError(
                "--rollouts needs --train MODEL (the training policy that scores them)"
            )
        given = {
            "--prompts": prompts,
            "-n/--num-samples": num_samples,
            "--seed": seed,
            "--tokenizer": tokenizer,
            "--roll-dtype": roll_dtype,
            "--roll-attn": roll_attn,
        }
        bad = [k for k, v in given.items() if v is not None]
        if bad:
            raise TrmboundsError(
                f"{', '.join(bad)}: only with --roll / --demo (they sample); --rollouts "
                "reads an engine's responses, prompts included"
            )
    elif demo and any(x is not None for x in (roll, train, tokenizer, roll_attn, train_attn)):
        raise TrmboundsError(
            "--demo builds its own model: drop --roll, --train, --tokenizer and --*-attn"
        )
    elif not demo and roll is None:
        raise TrmboundsError(
            "give --roll MODEL (a model directory or hub id), --rollouts FILE with --train "
            "MODEL, or --demo"
        )
    from ..hub import hf_cache_dir

    out_path, *rest = check_outputs(
        [("-o/--output", output), ("--tokens", tokens)],
        inputs=[prompts, rollouts],
        force=force,
        # model directories (weights, config), and the Hugging Face cache a hub id
        # resolves to
        input_dirs=[roll, train, tokenizer, hf_cache_dir()],
    )
    tokens_path = rest[0] if rest else None
    from ..measure import load_prompts, measure, parse_memory, write_token_dump

    if demo:
        from ..demo import run_demo
    from ..stats import evaluate

    parse_memory(max_memory)
    prompt_list = load_prompts(prompts) if rollouts is None else []
    err = console(stderr=True)
    if device_map is None and device not in (None, "auto", "cpu"):
        # a device this machine lacks (e.g. cuda without CUDA) fails before any model loads
        from ..measure.models import resolve_device

        resolve_device(device)

    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # no bar (and no stray newline) in logs or pipes
    ) as bar:
        # until the first batch, torch and the models are loading: no "0/?" count
        task = bar.add_task("loading torch and the model…", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total,
                       description=f"measuring  {done:,}/{total:,} batches")  # fmt: skip

        # what every way of measuring shares: sampling settings, devices, memory, masks
        common = dict(
            temperature=temperature,
            top_k=max(top_k, 0),  # -1: off, as in vLLM and SGLang
            top_p=top_p,
            device=device,
            device_map=device_map,
            offload_folder=offload_folder,
            batch_size=batch_size,
            max_memory=max_memory,
            trm_max=trm_max,
            trm_avg=trm_avg,
            ser=ser,
            ln_trm=ln_trm,
            adv_range=adv_range,
            reward_range=reward_range,
            progress=progress,
        )
        if rollouts is not None:
            from ..measure import measure_rollouts

            m = _bounded(measure_rollouts)(  # type: ignore[operator]
                rollouts,
                train,
                max_new_tokens=max_new_tokens,
                rollout_format=rollout_format.value,
                train_dtype=train_dtype.value if train_dtype else "float32",
                train_attn=train_attn.value if train_attn else None,
                logprobs_mode=logprobs_mode.value if logprobs_mode else None,
                **common,
            )
        else:
            models = {
                "roll": roll,
                "train": train,
                "roll_attn": roll_attn.value if roll_attn else None,
                "train_attn": train_attn.value if train_attn else None,
                "tokenizer": tokenizer,
            }
            m = _bounded(run_demo if demo else measure)(  # type: ignore[operator]
                **({} if demo else models),
                roll_dtype=roll_dtype.value if roll_dtype else ("bfloat16" if demo else "float32"),
                train_dtype=train_dtype.value if train_dtype else "float32",
                prompts=prompt_list,
                num_samples=4 if num_samples is None else num_samples,
                max_new_tokens=128 if max_new_tokens is None else max_new_tokens,
                seed=0 if seed is None else seed,
                **common,
            )
    stats = m.stats
    text = dumps(stats.to_dict())
    write_atomic(out_path, _json.dumps(_json.loads(text), indent=1) + "\n")
    if tokens_path is not None:
        with atomic_output(tokens_path) as tmp:
            write_token_dump(m.records, tmp)
    result = evaluate(stats, constants=constants.value)
    for w in m.warnings:
        err.print(f"[yellow]warning[/yellow] {w}")
    if json:
        d = result.to_dict()
        d["stats_file"] = str(out_path)
        if demo:
            d["demo"] = stats.meta["demo"]
        print_json(d)
        return
    con = console()
    note = f"[bold yellow]{stats.meta['demo']}[/bold yellow]" if demo else None
    if note:
        con.print(note)
    _render_measurement(stats, out_path, con)
    from ._render import render_result

    render_result(result, con)
    if note:
        con.print(note)


_ALLOC = re.compile(r"can't allocate memory|out of memory|Cannot allocate memory|allocat", re.I)


def _bounded(fn):
    """``fn`` with an allocation failure as one line: torch raises ``RuntimeError`` (not
    ``MemoryError``) when its CPU allocator fails, CUDA's ``OutOfMemoryError`` is one too."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MemoryError:
            raise TrmboundsError(
                "out of memory (Python could not allocate); lower --batch-size or --max-memory"
            ) from None
        except RuntimeError as exc:
            text = " ".join(str(exc).split())
            if not _ALLOC.search(text):
                raise
            m = re.search(r"allocate ([0-9]+) bytes", text)
            what = f"torch could not allocate {int(m.group(1)):,} bytes" if m else text[:120]
            raise TrmboundsError(
                f"out of memory ({what}); lower --batch-size or --max-memory"
            ) from None

    return run


def _render_measurement(stats, path: Path, con) -> None:
    from rich.table import Table

    from ._render import print_table

    meta = stats.meta
    ci = meta.get("ci95", {})
    table = Table(
        title=f"Measured  {meta.get('n_sequences')} responses, {meta.get('n_tokens')} tokens, "
        f"T = {stats.T}  → {path}",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_column("95% CI")
    table.add_column("status")

    def row(label, key, value):
        c = ci.get(key)
        table.add_row(
            label,
            fmt(value),
            "—" if not c else f"[{fmt(c[0])}, {fmt(c[1])}]",
            stats.status.get(key, "—"),
        )

    up = " (upper)" if meta.get("interval_ends") else ""  # --rollouts: upper interval ends
    row("δ̂  max token KL" + up, "kl_max", stats.kl_max)
    row("ε̂  max token TV" + up, "tv_max", stats.tv_max)
    row("D_KL^seq" + up, "kl_seq", stats.kl_seq)
    row("D_TV^seq", "tv_seq", stats.tv_seq)
    pp = stats.per_position
    table.add_row(
        "max_t D̄_t" + up, fmt(float(pp.max())), "—", stats.status.get("per_position", "—")
    )
    if stats.missing_mass is not None:
        row("m  missing mass", "missing_mass", stats.missing_mass)
    print_table(con, table)
    acc = meta.get("acceptance", {})
    if acc:
        a_max, a_avg, a_c, a_s = (acc[k] for k in ("trm_max", "trm_avg", "combined", "ser"))
        key = "exact_kl" if "exact_kl" in a_max else "kl_hi"
        label = "exact KL" if key == "exact_kl" else "KL upper ends"
        con.print(
            f"acceptance ({label} | proxy): "
            f"TRM-Max δ={a_max['threshold']:g}: {a_max[key]:.1%} | k2 {a_max['proxy_k2']:.1%};  "
            f"TRM-Avg δ={a_avg['threshold']:g}: {a_avg[key]:.1%} | k3 {a_avg['proxy_k3']:.1%};  "
            f"combined: {a_c[key]:.1%} | {a_c['proxy_k2_k3']:.1%};  "
            f"SER δ={a_s['threshold']:g}: {a_s['rate']:.1%}"
            + (
                f";  LN-TRM δ_W={acc['ln_trm']['threshold']:g}: {acc['ln_trm']['rate']:.1%}"
                if "ln_trm" in acc
                else ""
            )
        )
    iv = meta.get("intervals")
    if iv:
        con.print(
            "certified per-token intervals from the engine's top-k (docs/measure.md): "
            f"reported mass min {fmt(iv['reported_mass_min'])}, mean "
            f"{fmt(iv['reported_mass_mean'])}; KL width max {fmt(iv['kl_width_max'])}, TV "
            f"width max {fmt(iv['tv_width_max'])}. δ̂, ε̂, D_KL^seq, D̄_t use the upper "
            f"ends; certified lower bounds of the maxima: KL ≥ {fmt(iv['kl_max_lower'])}, "
            f"TV ≥ {fmt(iv['tv_max_lower'])}. D_TV^seq is the bounded estimate from "
            "sampled-token log-probs."
        )
    if iv:
        con.print(
            "δ̂ and ε̂ are maxima of the upper ends over the measured contexts: neither "
            "certified nor lower estimates of the true maxima (the certified lower "
            "bounds are kl_max_lower / tv_max_lower); unmeasured contexts can raise "
            "the true maxima further."
        )
    else:
        con.print(
            "δ̂ and ε̂ are maxima over the measured contexts only: lower estimates of "
            "the maxima over all reachable contexts."
        )
