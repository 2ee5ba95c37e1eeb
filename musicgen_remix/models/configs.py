"""Training configs in the shape of audiocraft's own, for building models from scratch.

audiocraft's ``config/*.yaml`` are not installed with the package, and every release checkpoint
carries its own ``xp.cfg``. This module writes the subset of those configs the builders and loaders
read, with the real model sizes (so benchmarks build real architectures) and a ``tiny`` scale for
tests. Values mirror audiocraft's ``model/lm/musicgen_lm.yaml``, ``conditioner/{text,chroma}2music.yaml``,
``model/encodec/encodec_large_nq4_s640.yaml`` and ``solver/diffusion/default.yaml``.
"""

from __future__ import annotations

from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

Scale = Literal["tiny", "deep-narrow", "small", "medium", "large"]
Conditioning = Literal["text", "melody"]

SAMPLE_RATE = 32000
SEGMENT_DURATION = 30.0
ENCODEC_32KHZ = "//pretrained/facebook/encodec_32khz"

# (dim, num_heads, num_layers) from audiocraft's model/lm/model_scale/*.yaml; tiny and deep-narrow are ours.
LM_SCALES: dict[str, tuple[int, int, int]] = {
    "tiny": (32, 2, 2),
    "deep-narrow": (48, 24, 48),
    "small": (1024, 16, 24),
    "medium": (1536, 24, 48),
    "large": (2048, 32, 48),
}
# Codebook size: the release models use 2048; tiny keeps 256 so the default top_k=250 is valid.
CARD = {"tiny": 256}
REAL_CARD = 2048


def lm_config(scale: Scale, conditioning: Conditioning, *, stereo: bool = False) -> DictConfig:
    """The ``xp.cfg`` of a MusicGen language model, as its release checkpoint carries it."""
    dim, heads, layers = LM_SCALES[scale]
    n_q = 8 if stereo else 4
    card = CARD.get(scale, REAL_CARD)
    delays = [0, 0, 1, 1, 2, 2, 3, 3] if stereo else [0, 1, 2, 3]
    cfg: dict[str, Any] = {
        "device": "cpu",
        "dtype": "float32",
        "sample_rate": SAMPLE_RATE,
        "channels": 2 if stereo else 1,
        "lm_model": "transformer_lm",
        "compression_model_checkpoint": ENCODEC_32KHZ,
        "dataset": {"segment_duration": SEGMENT_DURATION},
        "codebooks_pattern": {
            "modeling": "delay",
            "delay": {"delays": delays, "flatten_first": 0, "empty_initial": 0},
        },
        "transformer_lm": {
            "dim": dim, "num_heads": heads, "num_layers": layers, "hidden_scale": 4,
            "n_q": n_q, "card": card, "dropout": 0.0, "emb_lr": None, "activation": "gelu",
            "norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False,
            "past_context": None, "causal": True, "custom": False, "memory_efficient": True,
            "attention_as_float32": False, "layer_scale": None, "positional_embedding": "sin",
            "xpos": False, "checkpointing": "none", "weight_init": "gaussian",
            "depthwise_init": "current", "zero_bias_init": True, "norm": "layer_norm",
            "cross_attention": False, "qk_layer_norm": False, "qk_layer_norm_cross": False,
            "attention_dropout": None, "kv_repeat": 1, "two_step_cfg": False,
        },
        "classifier_free_guidance": {"training_dropout": 0.2, "inference_coef": 3.0},
    }
    t5 = {"model": "t5", "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.2,
                                "normalize_text": False}}
    if conditioning == "text":
        cfg["attribute_dropout"] = {}
        cfg["fuser"] = {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
                        "sum": [], "prepend": [], "cross": ["description"], "input_interpolate": []}
        cfg["conditioners"] = {"description": t5}
    else:
        cfg["attribute_dropout"] = {"args": {"active_on_eval": False}, "text": {}, "wav": {"self_wav": 0.5}}
        cfg["fuser"] = {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
                        "sum": [], "prepend": ["self_wav", "description"], "cross": [],
                        "input_interpolate": []}
        cfg["conditioners"] = {
            "self_wav": {"model": "chroma_stem", "chroma_stem": {
                "sample_rate": SAMPLE_RATE, "n_chroma": 12, "radix2_exp": 14, "argmax": True,
                "match_len_on_eval": False, "eval_wavs": None, "n_eval_wavs": 100, "cache_path": None}},
            "description": t5,
        }
    if stereo:
        cfg["interleave_stereo_codebooks"] = {"use": True, "per_timestep": False}
    return OmegaConf.create(cfg)


def compression_config(scale: Literal["tiny", "real"]) -> DictConfig:
    """The ``xp.cfg`` of the 32 kHz EnCodec (4 codebooks, 50 frames/s)."""
    n_filters, dimension, lstm, bins = (4, 16, 0, CARD["tiny"]) if scale == "tiny" else (64, 128, 2, REAL_CARD)
    return OmegaConf.create({
        "device": "cpu",
        "dtype": "float32",
        "sample_rate": SAMPLE_RATE,
        "channels": 1,
        "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": SAMPLE_RATE,
                    "channels": 1, "causal": False, "renormalize": False},
        "seanet": {
            "dimension": dimension, "channels": 1, "causal": False, "n_filters": n_filters,
            "n_residual_layers": 1, "ratios": [8, 5, 4, 4], "activation": "ELU",
            "activation_params": {"alpha": 1.0}, "norm": "weight_norm", "norm_params": {},
            "kernel_size": 7, "residual_kernel_size": 3, "last_kernel_size": 7, "dilation_base": 2,
            "pad_mode": "constant", "true_skip": True, "compress": 2, "lstm": lstm,
            "disable_norm_outer_blocks": 0,
            "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
            "encoder": {},
        },
        "rvq": {"n_q": 4, "q_dropout": False, "bins": bins, "decay": 0.99, "kmeans_init": False,
                "kmeans_iters": 50, "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0,
                "orthogonal_reg_active_codes_only": False},
    })


def mbd_band_config(band: int, n_bands: int, *, codec_dim: int, scale: Literal["tiny", "real"]) -> DictConfig:
    """The per-band ``cfg`` stored in a MultiBand Diffusion checkpoint."""
    hidden, depth = (4, 2) if scale == "tiny" else (48, 4)
    return OmegaConf.create({
        "channels": 1,
        "sample_rate": SAMPLE_RATE,
        "diffusion_unet": {"hidden": hidden, "depth": depth, "res_blocks": 1, "norm_groups": 4,
                           "kernel": 8, "stride": 4, "growth": 4, "max_channels": 10_000, "dropout": 0.0,
                           "emb_all_layers": True, "bilstm": False, "codec_dim": codec_dim,
                           "transformer": False, "cross_attention": False},
        "schedule": {"repartition": "power", "variable_step_batch": True, "beta_t0": 1.0e-5,
                     "beta_t1": 2.9e-2, "beta_exp": 7.5, "num_steps": 1000, "variance": "beta",
                     "clip": 5.0, "rescale": 1.0, "n_bands": None, "noise_scale": 1.0},
        "processor": {"name": "multi_band_processor", "use": True, "n_bands": 8,
                      "num_samples": 10_000, "power_std": 1.0},
        "filter": {"use": True, "n_bands": n_bands, "idx_band": band, "cutoffs": None},
    })
