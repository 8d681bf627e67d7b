#!/usr/bin/env python3
"""Writes tests/data/ref/<case>/: small random Mamba-1 and Mamba-2 checkpoints
and Hugging Face transformers' outputs for them, the oracle of our C++
implementations beyond the bundled tests/data/mamba-tiny and mamba2-tiny.

Needs PyTorch and transformers (made with torch 2.11, transformers 5.17), which
the development machine lacks: it was run on the device machine, CPU only:

    CUDA_VISIBLE_DEVICES= HF_HUB_OFFLINE=1 \
        python3 scripts/make_reference_models.py --out tests/data/ref \
        [--only CASE ...] [--dump-sources transformers_sources.txt]

(--dump-sources writes the transformers code used, for the record.)

Everything is float32 on the CPU and so runs transformers' pure-PyTorch
"slow path" (the fused mamba_ssm / causal_conv1d kernels need CUDA).
Deterministic: torch.manual_seed per case, one thread (two runs wrote
bit-identical files).

Each case is built the same way: a model from its config, every parameter
then redrawn at random and moderately sized (so that each one matters and the
outputs are not saturated), `save_pretrained` (16-bit or sharded where the
case says), `from_pretrained(dtype=float32)` of what was written (checked equal
to the model in memory), and the outputs of that reloaded model:

| file | what |
| --- | --- |
| config.json, model.safetensors | as `save_pretrained` writes them (sharded: model-0000k-of-0000n.safetensors + model.safetensors.index.json) |
| input_ids.npy | int64 (batch, seqlen) |
| logits.npy | float32 (batch, seqlen, vocab): model(input_ids).logits |
| hidden_states.npy | float32 (layers+1, batch, seqlen, hidden), output_hidden_states=True (Mamba-1 cases only): as transformers 5.17 returns them, entry i < layers is the residual stream after layer i (there is no embedding-output entry), the last one is the last layer's output after the final norm (checked: logits = lm_head(last)) |
| greedy_prompt.npy, greedy_tokens.npy | int64 (1, 8) and (1, 8 + n): generate(do_sample=False, max_new_tokens=n), prompt included: the cached, step-by-step path |
| greedy_logits.npy | float32 (1, n, vocab): the logits of each cached generation step (step i predicts token 8 + i) |
| greedy_prompt_<P>.npy, greedy_tokens_<P>.npy, greedy_logits_<P>.npy | the same for a prompt of P tokens (cases with several prompt lengths) |
| greedy_tokens_uncached[_<P>].npy, greedy_logits_uncached[_<P>].npy | only where generate's cached steps disagree with a full forward pass (m2_bias: the decode step ignores time_step_limit): greedy decoding by a full forward pass at each step |
| reference.json | the case's settings, versions, logits statistics and the checks below |

Checks recorded in reference.json ("checks"): the reloaded weights equal the
saved ones; Mamba-1: logits = lm_head(hidden_states[-1]); Mamba-2: what the
gated RMSNorm normalises over (whole intermediate size or per group), d_mlp
(in_proj's extra width), time_step_limit, the range of dt = softplus(. + dt_bias)
before the clamp and how much the logits change without the clamp.

Greedy continuations are generated without an end-of-sequence token (it is
removed from the generation config, so exactly n tokens come) and with an
all-ones attention mask. reference.json records, per prompt, that the logits
of the cached steps agree with a full forward pass of the whole sequence and
the smallest top-1/top-2 logit gap along the way; a prompt whose gap is below
1e-3 is redrawn, so that a correct float32 implementation cannot pick another
token.

In transformers 5.17 the cached decode step of Mamba-2 does not apply
time_step_limit (only the prefill clamps dt), so m2_bias's greedy_tokens.npy /
greedy_logits.npy are "prefill clamped, decode unclamped", and its
greedy_*_uncached.npy files are the consistent (clamped everywhere) ones.

m1_statespaces holds m1_odd's weights under the key names and config.json of
state-spaces/mamba (mamba_ssm's MambaLMHeadModel), written as model.safetensors
(the original checkpoints use pytorch_model.bin); its .npy files are m1_odd's.

Only this script writes tests/data/ref; rerunning it rewrites every case.
"""

import argparse
import json
import math
import os
import shutil
import sys
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub kernels, no downloads

import numpy as np
import torch

GEN_MARGIN = 1e-3  # smallest accepted top-1/top-2 logit gap on a greedy path


# ---------------------------------------------------------------- the cases

def mamba1(**kw):
    base = dict(vocab_size=128, hidden_size=64, state_size=16, num_hidden_layers=2,
                expand=2, conv_kernel=4, time_step_rank=4, use_bias=False,
                use_conv_bias=True, tie_word_embeddings=True, layer_norm_epsilon=1e-5)
    base.update(kw)
    return base


def mamba2(**kw):
    base = dict(vocab_size=128, hidden_size=64, state_size=16, num_hidden_layers=2,
                expand=2, conv_kernel=4, num_heads=8, head_dim=16, n_groups=1,
                chunk_size=16, use_bias=False, use_conv_bias=True,
                tie_word_embeddings=True, layer_norm_epsilon=1e-5)
    base.update(kw)
    return base


CASES = [
    dict(name="m1_odd", arch="mamba", seed=101, batch=3, seqlen=29, prompts=[8], new=16,
         config=mamba1(vocab_size=97, hidden_size=45, expand=3, state_size=7, conv_kernel=2,
                       time_step_rank=5, use_bias=True, use_conv_bias=True,
                       tie_word_embeddings=False),
         about="odd sizes (hidden 45, intermediate 135, state 7, vocab 97), conv kernel 2, "
               "in/out projection biases, conv bias, untied lm_head"),
    dict(name="m1_conv3", arch="mamba", seed=102, batch=2, seqlen=41, prompts=[8, 1, 2, 5, 64],
         new=16,
         config=mamba1(vocab_size=200, hidden_size=48, expand=2, state_size=16, conv_kernel=3,
                       time_step_rank="auto", use_conv_bias=False),
         about="conv kernel 3 without conv bias, time_step_rank 'auto' (= ceil(48/16) = 3), "
               "tied, prompts of 1, 2, 5, 8 and 64 tokens"),
    dict(name="m1_sharded", arch="mamba", seed=103, batch=2, seqlen=33, prompts=[8], new=16,
         config=mamba1(), shard="100KB",
         about="mamba-tiny-like, saved with max_shard_size='100KB' (several shards + index)"),
    dict(name="m1_f16", arch="mamba", seed=104, batch=2, seqlen=33, prompts=[8], new=16,
         config=mamba1(), save_dtype="float16",
         about="mamba-tiny-like, every tensor stored as float16"),
    dict(name="m1_bf16", arch="mamba", seed=105, batch=2, seqlen=33, prompts=[8], new=16,
         config=mamba1(use_bias=True, tie_word_embeddings=False), save_dtype="bfloat16",
         about="mamba-tiny-like with projection biases and untied lm_head, every tensor "
               "stored as bfloat16"),
    dict(name="m2_groups", arch="mamba2", seed=201, batch=2, seqlen=37, prompts=[8], new=16,
         config=mamba2(n_groups=2, chunk_size=8),
         about="2 groups (4 heads each), chunk 8: 37 tokens = 4 chunks + 5"),
    dict(name="m2_bias", arch="mamba2", seed=202, batch=2, seqlen=50, prompts=[8], new=16,
         config=mamba2(vocab_size=150, hidden_size=48, num_heads=4, head_dim=24, state_size=8,
                       conv_kernel=3, chunk_size=16, use_bias=True, use_conv_bias=True,
                       tie_word_embeddings=False, time_step_limit=(0.01, 0.5)),
         dt_range=(0.002, 2.0),
         about="in/out projection and conv biases, untied lm_head, conv kernel 3, 4 heads of "
               "24, state 8, time_step_limit (0.01, 0.5) with dt drawn to fall on both sides"),
    dict(name="m2_long", arch="mamba2", seed=203, batch=1, seqlen=65, prompts=[8, 1, 15, 16, 17, 40],
         new=24, config=mamba2(),
         about="mamba2-tiny-like, chunk 16: 65 tokens = 4 chunks + 1, prompts of 1, 8, 15, 16, "
               "17 and 40 tokens"),
]


# ------------------------------------------------------------ perturbation

def inv_softplus(y):
    return y + torch.log(-torch.expm1(-y))


def log_uniform(shape, lo, hi):
    return torch.exp(torch.rand(shape) * (math.log(hi) - math.log(lo)) + math.log(lo))


def redraw(name, shape, dt_range):
    """A random value for parameter `name`, sized so that activations stay O(1)."""
    leaf = name.rsplit(".", 2)[-2:]  # e.g. ["in_proj", "weight"], ["mixer", "A_log"]
    owner, kind = leaf if len(leaf) == 2 else ("", leaf[0])
    if kind == "A_log":  # A = -exp(A_log) in [-3, -0.1]: fast and slow decays
        return torch.log(log_uniform(shape, 0.1, 3.0))
    if kind == "D":
        return torch.rand(shape) * 2.0 - 0.5
    if kind == "dt_bias" or (owner == "dt_proj" and kind == "bias"):  # softplus(bias) in dt_range
        return inv_softplus(log_uniform(shape, *dt_range))
    if kind == "weight" and owner in ("norm", "norm_f"):  # block, final and gated norms
        return 0.6 + 0.8 * torch.rand(shape)
    if owner == "embeddings":  # tied: logits std about 0.3 * sqrt(hidden)
        return 0.3 * torch.randn(shape)
    if owner == "conv1d" and kind == "weight":  # (channels, 1, kernel)
        a = 1.2 / math.sqrt(shape[-1])
        return (torch.rand(shape) * 2.0 - 1.0) * a
    if kind == "bias":  # in_proj, out_proj, conv1d
        return 0.2 * torch.randn(shape)
    if owner == "dt_proj":  # (intermediate, rank)
        return 0.5 * torch.randn(shape) / math.sqrt(shape[1])
    if owner in ("in_proj", "x_proj", "lm_head"):
        return torch.randn(shape) / math.sqrt(shape[1])
    if owner == "out_proj":
        return 0.7 * torch.randn(shape) / math.sqrt(shape[1])
    raise ValueError(f"no rule to redraw parameter {name} {tuple(shape)}")


def perturb_(model, dt_range):
    """Redraws every parameter (tied ones once: named_parameters skips duplicates)."""
    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(redraw(name, tuple(p.shape), dt_range).to(p.dtype))
            names.append(name)
    return names


# ---------------------------------------------------------------- helpers

def save_npy(folder, name, array, dtype):
    array = np.ascontiguousarray(np.asarray(array, dtype=dtype))
    np.save(os.path.join(folder, name), array)
    return list(array.shape)


def safetensors_files(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))


def safetensors_header(path):
    """The JSON header of a .safetensors file: 8-byte little-endian length, then JSON."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def stored_dtypes(folder):
    kinds = set()
    for f in safetensors_files(folder):
        kinds |= {v["dtype"] for k, v in safetensors_header(os.path.join(folder, f)).items()
                  if k != "__metadata__"}
    return sorted(kinds)


def load_float32(cls, folder):
    try:
        return cls.from_pretrained(folder, dtype=torch.float32).eval()
    except TypeError:  # older transformers
        return cls.from_pretrained(folder, torch_dtype=torch.float32).eval()


def same_weights(ref, loaded):
    """Max |difference| of every state-dict tensor, `ref` widened to float32."""
    a, b = ref.state_dict(), loaded.state_dict()
    if sorted(a) != sorted(b):
        raise RuntimeError(f"state dict keys differ: {sorted(set(a) ^ set(b))}")
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def logits_stats(logits):
    x = logits.double()
    return dict(mean=float(x.mean()), std=float(x.std()), absmax=float(x.abs().max()),
                distinct_argmax=int(torch.unique(x.argmax(-1)).numel()))


def min_gap(logits):
    """Smallest top-1 minus top-2 logit over the rows of (steps, vocab) logits."""
    top2 = torch.topk(logits, 2, dim=-1).values
    return float((top2[:, 0] - top2[:, 1]).min())


def greedy_uncached(model, prompt, new):
    """Greedy decoding with a full forward pass over the whole sequence at each step."""
    seq, steps = prompt, []
    with torch.no_grad():
        for _ in range(new):
            logits = model(seq, use_cache=False).logits[:, -1].float()
            steps.append(logits[0])
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    return seq, torch.stack(steps)


def greedy(model, prompt, new):
    """generate(do_sample=False) of exactly `new` tokens and its per-step logits, and
    whether those match a full forward pass of the result. Where they do not, also
    the greedy continuation of full forward passes (returned as `uncached`)."""
    model.generation_config.eos_token_id = None  # exactly `new` tokens
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                         max_new_tokens=new, output_logits=True,
                         return_dict_in_generate=True)
    seq = out.sequences
    P = prompt.shape[1]
    if tuple(seq.shape) != (1, P + new):
        raise RuntimeError(f"generate returned shape {tuple(seq.shape)}, expected (1, {P + new})")
    step = torch.stack(list(out.logits), dim=1)[0].float()  # (new, vocab), cached path
    with torch.no_grad():
        full = model(seq, use_cache=False).logits[0, P - 1:P + new - 1].float()
    info = dict(
        prompt_len=P, new_tokens=new,
        cached_vs_full_max_abs=float((step - full).abs().max()),
        argmax_of_full_forward_matches=bool(torch.equal(full.argmax(-1), seq[0, P:])),
        min_top2_gap=min_gap(step),
        distinct_generated=int(torch.unique(seq[0, P:]).numel()))
    uncached = None
    if info["cached_vs_full_max_abs"] > 1e-4:
        uncached = greedy_uncached(model, prompt, new)
        info["uncached"] = dict(min_top2_gap=min_gap(uncached[1]),
                                same_tokens_as_generate=bool(torch.equal(uncached[0], seq)))
    return seq, step, uncached, info


def get_limits(model):
    return [layer.mixer.time_step_limit for layer in model.backbone.layers]


def set_limits(model, limits):
    for layer, v in zip(model.backbone.layers, limits):
        layer.mixer.time_step_limit = v


def mamba2_checks(model, input_ids):
    """What transformers' Mamba-2 mixer does with groups, d_mlp and time_step_limit."""
    mixer = model.backbone.layers[0].mixer
    I, G, N, H = mixer.intermediate_size, mixer.n_groups, mixer.ssm_state_size, mixer.num_heads
    y, z = torch.randn(2, 3, I), torch.randn(2, 3, I)
    with torch.no_grad():
        got = mixer.norm(y, z).float()
        g = y * torch.nn.functional.silu(z)
        eps = mixer.norm.variance_epsilon
        whole = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
        gg = g.reshape(2, 3, G, I // G)
        grouped = (gg * torch.rsqrt(gg.pow(2).mean(-1, keepdim=True) + eps)).reshape(2, 3, I)
        w = mixer.norm.weight.detach().float()
    checks = dict(
        gated_norm=dict(
            note="y * silu(z), then RMS-normalised; compared with normalising over the whole "
                 "intermediate size and over each group of intermediate/n_groups",
            max_abs_vs_whole=float((got - w * whole).abs().max()),
            max_abs_vs_per_group=float((got - w * grouped).abs().max())),
        in_proj_extra_width=mixer.in_proj.out_features - (2 * I + 2 * G * N + H),
        in_proj_split="transformers 5.17 splits in_proj's output as [z: intermediate, "
                      "xBC: intermediate + 2*n_groups*state, dt: num_heads], with no d_mlp part",
        time_step_limit=[float(v) for v in mixer.time_step_limit])

    # dt = softplus(in_proj(..)[..., -H:] + dt_bias) per layer, as the mixer computes it
    dts = []
    hooks = [layer.mixer.in_proj.register_forward_hook(
        lambda mod, inp, out, m=layer.mixer: dts.append(
            torch.nn.functional.softplus(out[..., -m.num_heads:] + m.dt_bias)))
        for layer in model.backbone.layers]
    with torch.no_grad():
        ref = model(input_ids, use_cache=False).logits
    for h in hooks:
        h.remove()
    dt = torch.cat([d.reshape(-1) for d in dts])
    lo, hi = mixer.time_step_limit
    checks["dt_before_clamp"] = dict(min=float(dt.min()), max=float(dt.max()),
                                     fraction_below_limit=float((dt < lo).double().mean()),
                                     fraction_above_limit=float((dt > hi).double().mean()))
    saved, off = get_limits(model), [(0.0, float("inf"))] * len(model.backbone.layers)
    set_limits(model, off)
    with torch.no_grad():
        unclamped = model(input_ids, use_cache=False).logits
    set_limits(model, saved)
    checks["logits_max_abs_change_without_clamp"] = float((ref - unclamped).abs().max())

    if tuple(mixer.time_step_limit) != (0.0, float("inf")):
        # Does the cached decode step clamp dt? Generate twice, the second time with the
        # limit removed right after the prefill forward: equal decode logits mean no.
        prompt, calls = input_ids[:1, :8], []

        def after_prefill(module, args, output):
            calls.append(1)
            if len(calls) == 1:
                set_limits(model, off)

        _, clamped, _, _ = greedy(model, prompt, 4)
        hook = model.register_forward_hook(after_prefill)
        try:
            _, unclamped_decode, _, _ = greedy(model, prompt, 4)
        finally:
            hook.remove()
            set_limits(model, saved)
        decode = float((clamped[1:] - unclamped_decode[1:]).abs().max())
        checks["decode_logits_change_when_limit_removed_after_prefill"] = dict(
            prefill_step=float((clamped[0] - unclamped_decode[0]).abs().max()),
            decode_steps=decode,
            conclusion="the cached decode step ignores time_step_limit (only the prefill "
                       "clamps dt)" if decode == 0.0 else "the cached decode step clamps dt")
    return checks


# ------------------------------------------------------------------ a case

def build(case, out_root, versions):
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM
    is_m1 = case["arch"] == "mamba"
    cfg_cls, model_cls = (MambaConfig, MambaForCausalLM) if is_m1 else (Mamba2Config,
                                                                        Mamba2ForCausalLM)
    folder = os.path.join(out_root, case["name"])
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)

    torch.manual_seed(case["seed"])
    kwargs = dict(case["config"])
    if is_m1 and hasattr(cfg_cls(), "use_associative_scan"):
        kwargs["use_associative_scan"] = False  # the plain sequential scan
    model = model_cls(cfg_cls(**kwargs)).eval()
    redrawn = perturb_(model, case.get("dt_range", (0.01, 0.5)))
    if case.get("save_dtype"):
        model = model.to(getattr(torch, case["save_dtype"]))
    save_kw = {"max_shard_size": case["shard"]} if case.get("shard") else {}
    model.save_pretrained(folder, **save_kw)

    loaded = load_float32(model_cls, folder)
    weight_diff = same_weights(model, loaded)
    if weight_diff != 0.0:
        raise RuntimeError(f"reloaded weights differ by {weight_diff}")
    cfg = loaded.config

    gen = torch.Generator().manual_seed(case["seed"] + 1000)  # inputs apart from the weights
    ids = torch.randint(0, cfg.vocab_size, (case["batch"], case["seqlen"]), generator=gen)
    with torch.no_grad():
        out = loaded(ids, output_hidden_states=is_m1, use_cache=False)
    logits = out.logits.float()
    files = {"input_ids.npy": save_npy(folder, "input_ids.npy", ids.numpy(), np.int64),
             "logits.npy": save_npy(folder, "logits.npy", logits.numpy(), np.float32)}
    checks = {"reloaded_weights_max_abs_diff": weight_diff}
    if is_m1:
        hs = torch.stack([h.float() for h in out.hidden_states])
        files["hidden_states.npy"] = save_npy(folder, "hidden_states.npy", hs.numpy(), np.float32)
        with torch.no_grad():
            checks["logits_vs_lm_head_of_last_hidden_state"] = float(
                (loaded.lm_head(out.hidden_states[-1]).float() - logits).abs().max())
    else:
        try:
            checks.update(mamba2_checks(loaded, ids))
        except Exception as e:  # record, keep the case
            traceback.print_exc()
            checks["mamba2_checks_error"] = f"{type(e).__name__}: {e}"[:300]

    prompts = []
    for P in case["prompts"]:
        suffix = "" if P == 8 and P == case["prompts"][0] else f"_{P}"
        for attempt in range(50):
            prompt = torch.randint(0, cfg.vocab_size, (1, P), generator=gen)
            seq, step, uncached, info = greedy(loaded, prompt, case["new"])
            gap = min(info["min_top2_gap"], info.get("uncached", {}).get("min_top2_gap", 1.0))
            if gap >= GEN_MARGIN:
                break
        info["redraws"] = attempt
        info["prompt"] = f"greedy_prompt{suffix}.npy"
        info["tokens"] = f"greedy_tokens{suffix}.npy"
        info["logits"] = f"greedy_logits{suffix}.npy"
        files[info["prompt"]] = save_npy(folder, info["prompt"], prompt.numpy(), np.int64)
        files[info["tokens"]] = save_npy(folder, info["tokens"], seq.numpy(), np.int64)
        files[info["logits"]] = save_npy(folder, info["logits"], step[None].numpy(), np.float32)
        if uncached is not None:
            for what, arr, dt in (("tokens", uncached[0], np.int64),
                                  ("logits", uncached[1][None], np.float32)):
                fn = f"greedy_{what}_uncached{suffix}.npy"
                info["uncached"][what] = fn
                files[fn] = save_npy(folder, fn, arr.numpy(), dt)
        prompts.append(info)
        print(f"  prompt {P}: {info}", flush=True)

    ref = dict(
        case=case["name"], about=case["about"], **versions,
        model_class=model_cls.__name__, seed=case["seed"],
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in case["config"].items()},
        intermediate_size=int(cfg.expand * cfg.hidden_size),
        time_step_rank=getattr(cfg, "time_step_rank", None),
        batch=case["batch"], seqlen=case["seqlen"], prompts=prompts, files=files,
        weights=dict(files=safetensors_files(folder), stored_dtypes=stored_dtypes(folder),
                     sharded=os.path.exists(os.path.join(folder, "model.safetensors.index.json")),
                     redrawn_parameters=redrawn),
        computation="CPU, float32, transformers' pure-PyTorch path (no CUDA kernels); outputs "
                    "of from_pretrained(folder, dtype=float32) of the files written here",
        logits_stats=logits_stats(logits), checks=checks)
    if case.get("save_dtype"):
        ref["precision_note"] = (
            f"The model was made and perturbed in float32, cast to {case['save_dtype']} "
            f"(model.to), and saved; every tensor in model.safetensors is {case['save_dtype']}. "
            "The outputs come from loading those 16-bit values widened exactly to float32 "
            "(from_pretrained(dtype=float32)) and computing in float32.")
    if is_m1:
        ref["hidden_states_note"] = (
            "hidden_states[i] for i < num_hidden_layers is the residual stream after layer i "
            "(transformers 5.17 returns no embedding-output entry); hidden_states[-1] is the last "
            "layer's output after norm_f (see checks)")
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    return loaded, ref


# ------------------------------------------------------ state-spaces layout

def write_statespaces(src_case, loaded, src_ref, out_root):
    """m1_odd's weights under state-spaces/mamba key names and config.json."""
    from safetensors.torch import load_file, save_file
    from transformers import MambaForCausalLM
    name = "m1_statespaces"
    src, folder = os.path.join(out_root, src_case["name"]), os.path.join(out_root, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    cfg = loaded.config

    def to_ss(key):
        return ("backbone.embedding.weight" if key == "backbone.embeddings.weight" else key)

    sd = {to_ss(k): v.detach().float().contiguous().clone() for k, v in loaded.state_dict().items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    ss_config = dict(
        d_model=cfg.hidden_size, d_intermediate=0, n_layer=cfg.num_hidden_layers,
        vocab_size=cfg.vocab_size,
        ssm_cfg=dict(layer="Mamba1", d_state=cfg.state_size, d_conv=cfg.conv_kernel,
                     expand=cfg.expand, dt_rank=cfg.time_step_rank, conv_bias=cfg.use_conv_bias,
                     bias=cfg.use_bias),
        attn_layer_idx=[], attn_cfg={}, rms_norm=True, residual_in_fp32=True,
        fused_add_norm=True, pad_vocab_size_multiple=1,
        tie_embeddings=bool(cfg.tie_word_embeddings))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(ss_config, f, indent=2)

    # back to transformers names: must load strictly and give the same logits
    back = {("backbone.embeddings.weight" if k == "backbone.embedding.weight" else k): v
            for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    twin = MambaForCausalLM(cfg).eval()
    missing, unexpected = twin.load_state_dict(back, strict=False)
    missing = [k for k in missing if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"state-spaces keys do not map back: {missing} {unexpected}")
    ids = torch.from_numpy(np.load(os.path.join(src, "input_ids.npy")))
    with torch.no_grad():
        diff = float((twin(ids, use_cache=False).logits
                      - torch.from_numpy(np.load(os.path.join(src, "logits.npy")))).abs().max())
    for f in sorted(src_ref["files"]):
        shutil.copy(os.path.join(src, f), os.path.join(folder, f))
    ref = dict(
        case=name, source_case=src_case["name"],
        about="m1_odd's weights and outputs in the state-spaces/mamba layout: keys "
              "backbone.embedding.weight, backbone.layers.{i}.norm.weight, "
              "backbone.layers.{i}.mixer.{in_proj,conv1d,x_proj,dt_proj,out_proj}.{weight,bias}, "
              "backbone.layers.{i}.mixer.{A_log,D}, backbone.norm_f.weight, lm_head.weight "
              "(absent when tie_embeddings); config.json as mamba_ssm's MambaConfig "
              "(ssm_cfg holds the Mamba constructor's arguments; norm epsilon is mamba_ssm's "
              "default 1e-5). Weights in model.safetensors (float32) rather than "
              "pytorch_model.bin.",
        key_map={"backbone.embedding.weight": "backbone.embeddings.weight (transformers)"},
        files=src_ref["files"], prompts=src_ref["prompts"],
        transformers=src_ref["transformers"], torch=src_ref["torch"],
        checks={"logits_after_mapping_keys_back_max_abs_diff": diff})
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(f"  {name}: logits after mapping keys back differ by {diff}", flush=True)
    if diff != 0.0:
        raise RuntimeError("state-spaces copy does not reproduce m1_odd")


def probe_float_expand():
    """Whether MambaConfig accepts a non-integer expand (hidden 40 -> intermediate 100)."""
    from transformers import MambaConfig
    try:
        c = MambaConfig(hidden_size=40, expand=2.5)
        return f"accepted: intermediate_size {c.intermediate_size}"
    except Exception as e:  # strict dataclass validation in transformers 5
        return f"rejected: {type(e).__name__}: {str(e)[:200]}"


SOURCES = [("transformers.models.mamba.modeling_mamba",
            ["MambaMixer.forward", "mamba_selective_scan", "mamba_selective_state_update",
             "causal_conv1d_fn", "causal_conv1d_update"]),
           ("transformers.models.mamba2.modeling_mamba2",
            ["MambaRMSNormGated.forward", "Mamba2Mixer.__init__", "Mamba2Mixer.forward",
             "mamba2_chunk_scan", "mamba2_selective_state_update"]),
           ("transformers.models.mamba.configuration_mamba", ["MambaConfig"]),
           ("transformers.models.mamba2.configuration_mamba2", ["Mamba2Config"])]


def dump_sources(path):
    """The transformers code these references come from, for the record."""
    import importlib
    import inspect
    with open(path, "w") as f:
        for module, names in SOURCES:
            try:
                mod = importlib.import_module(module)
                f.write(f"#### {module} ({inspect.getsourcefile(mod)})\n")
            except Exception as e:
                f.write(f"#### {module}: {e}\n")
                continue
            for name in names:
                try:
                    obj = mod
                    for part in name.split("."):
                        obj = getattr(obj, part)
                    f.write(f"### {name}\n{inspect.getsource(obj)}\n")
                except Exception as e:
                    f.write(f"### {name}: {e}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..", "tests", "data", "ref"))
    parser.add_argument("--only", nargs="*", help="case names (default: all)")
    parser.add_argument("--dump-sources", metavar="FILE",
                        help="also write the source of the transformers code used to FILE")
    args = parser.parse_args()

    import transformers
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    versions = dict(transformers=transformers.__version__, torch=torch.__version__)
    print(versions, flush=True)
    if args.dump_sources:
        dump_sources(args.dump_sources)
    os.makedirs(args.out, exist_ok=True)
    failed = []
    for case in CASES:
        wanted = not args.only or case["name"] in args.only
        if not wanted and not (case["name"] == "m1_odd" and "m1_statespaces" in args.only):
            continue
        print(f"== {case['name']}", flush=True)
        try:
            loaded, ref = build(case, args.out, versions)
            if case["name"] == "m1_odd":
                ref["float_expand_probe"] = probe_float_expand()
                with open(os.path.join(args.out, "m1_odd", "reference.json"), "w") as f:
                    json.dump(ref, f, indent=1)
                if not args.only or "m1_statespaces" in args.only:
                    print("== m1_statespaces", flush=True)
                    write_statespaces(case, loaded, ref, args.out)
        except Exception:
            traceback.print_exc()
            failed.append(case["name"])
    print("failed:", failed or "none", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
