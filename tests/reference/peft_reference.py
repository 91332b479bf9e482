#!/usr/bin/python3
"""An independent reference for alignd's PEFT adapters (common/peft.h).

Reads a Hugging Face model folder and an adapter folder with its own safetensors reader and computes the logits of a
batch with the adapter applied:
  - LORA: W += lora_alpha / r * B @ A (transposed when fan_in_fan_out, GPT-2's Conv1D), then the plain forward of
    hf_reference.py;
  - BOTTLENECK (alignd's own layout): h = sublayer(norm(x)); h = h + up(act(down(h))); x = x + h, at the sites the
    config names, with a forward written here from the same Hugging Face definitions.

Usage: peft_reference.py MODEL_DIR ADAPTER_DIR INPUTS OUT
  INPUTS: safetensors with input_ids and attention_mask (F32, [B, T]); OUT: safetensors with logits [B, T, V].
Runs with Debian's python3-torch (/usr/bin/python3).
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(body[begin:end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]) if raw else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).float()
    return out


def merge_lora(w, acfg, aw, gpt2):
    assert acfg["peft_type"] == "LORA" and acfg["bias"] == "none"
    scale = acfg["lora_alpha"] / (math.sqrt(acfg["r"]) if acfg.get("use_rslora") else acfg["r"])
    prefix = "base_model.model."
    modules = sorted({k[len(prefix):].rsplit(".lora_", 1)[0] for k in aw})
    for m in modules:
        assert m.rsplit(".", 1)[-1] in acfg["target_modules"], m
        a, b = aw[f"{prefix}{m}.lora_A.weight"], aw[f"{prefix}{m}.lora_B.weight"]
        assert a.shape[0] == acfg["r"] and b.shape[1] == acfg["r"]
        delta = scale * (b @ a)
        if acfg["fan_in_fan_out"]:
            delta = delta.t()
        name = (m[len("transformer."):] if gpt2 else m) + ".weight"
        w[name] = w[name] + delta
    assert len(aw) == 2 * len(modules)


def bottleneck(acfg, aw, path, site):
    """The adapter function at `site` ("attn_adapter" or "mlp_adapter") of the layer at `path`, or identity."""
    key = f"base_model.model.{path}.{site}."
    if key + "down.weight" not in aw:
        return lambda h: h
    act = torch.nn.functional.gelu if acfg["non_linearity"] == "gelu" else torch.relu
    lin = torch.nn.functional.linear
    return lambda h: h + lin(act(lin(h, aw[key + "down.weight"], aw[key + "down.bias"])), aw[key + "up.weight"],
                             aw[key + "up.bias"])


def llama_forward(cfg, w, ids, attn_mask, adapter):
    b, t = ids.shape
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg.get("head_dim", cfg["hidden_size"] // nh)
    pos = (attn_mask.long().cumsum(-1) - 1).clamp(min=0)
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
    emb = torch.cat((pos[..., None].float() * inv_freq,) * 2, dim=-1)[:, None]
    cos, sin = emb.cos(), emb.sin()
    mask = ref.causal_padding_mask(attn_mask, torch.float32)
    x = w["model.embed_tokens.weight"][ids]
    eps = cfg["rms_norm_eps"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        lin = lambda y, n: torch.nn.functional.linear(y, w[p + n + ".weight"], w.get(p + n + ".bias"))
        h = ref.rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(h, "self_attn.q_proj").view(b, t, nh, d).transpose(1, 2)
        k = lin(h, "self_attn.k_proj").view(b, t, nkv, d).transpose(1, 2)
        v = lin(h, "self_attn.v_proj").view(b, t, nkv, d).transpose(1, 2)
        q, k = q * cos + ref.rotate_half(q) * sin, k * cos + ref.rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        a = ref.attention(q, k, v, mask).transpose(1, 2).reshape(b, t, nh * d)
        x = x + adapter(f"model.layers.{i}", "attn_adapter")(lin(a, "self_attn.o_proj"))
        h = ref.rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        m = lin(torch.nn.functional.silu(lin(h, "mlp.gate_proj")) * lin(h, "mlp.up_proj"), "mlp.down_proj")
        x = x + adapter(f"model.layers.{i}", "mlp_adapter")(m)
    x = ref.rms_norm(x, w["model.norm.weight"], eps)
    return x @ w.get("lm_head.weight", w["model.embed_tokens.weight"]).t()


def gpt2_forward(cfg, w, ids, attn_mask, adapter):
    b, t = ids.shape
    nh, hs = cfg["n_head"], cfg["n_embd"]
    d = hs // nh
    pos = (attn_mask.long().cumsum(-1) - 1).clamp(min=0)
    mask = ref.causal_padding_mask(attn_mask, torch.float32)
    x = w["wte.weight"][ids] + w["wpe.weight"][pos]
    ln = lambda y, n: torch.nn.functional.layer_norm(y, (hs,), w[n + ".weight"], w[n + ".bias"],
                                                     cfg["layer_norm_epsilon"])
    conv = lambda y, n: y @ w[n + ".weight"] + w[n + ".bias"]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        q, k, v = (z.view(b, t, nh, d).transpose(1, 2) for z in conv(ln(x, p + "ln_1"), p + "attn.c_attn").split(hs, -1))
        a = ref.attention(q, k, v, mask).transpose(1, 2).reshape(b, t, hs)
        x = x + adapter(f"transformer.h.{i}", "attn_adapter")(conv(a, p + "attn.c_proj"))
        h = conv(ln(x, p + "ln_2"), p + "mlp.c_fc")
        gelu = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        x = x + adapter(f"transformer.h.{i}", "mlp_adapter")(conv(gelu, p + "mlp.c_proj"))
    return ln(x, "ln_f") @ w["wte.weight"].t()


def main():
    model_dir, adapter_dir, inputs, out = sys.argv[1:5]
    torch.set_num_threads(1)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        acfg = json.load(f)
    gpt2 = cfg["architectures"][0] == "GPT2LMHeadModel"
    w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    if gpt2:
        w = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}
    aw = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    batch = read_safetensors(inputs)
    ids, mask = batch["input_ids"].long(), batch["attention_mask"].long()
    with torch.no_grad():
        if acfg["peft_type"] == "LORA":
            merge_lora(w, acfg, aw, gpt2)
            logits = (ref.gpt2_forward if gpt2 else ref.llama_forward)(cfg, w, ids, mask)
        else:
            assert acfg["peft_type"] == "BOTTLENECK"
            fwd = gpt2_forward if gpt2 else llama_forward
            # The forward written here must be the reference's one when every adapter is the identity.
            plain = (ref.gpt2_forward if gpt2 else ref.llama_forward)(cfg, w, ids, mask)
            same = fwd(cfg, w, ids, mask, lambda path, site: (lambda h: h))
            assert torch.allclose(plain, same, atol=1e-5), "adapter-free forward differs from hf_reference"
            logits = fwd(cfg, w, ids, mask, lambda path, site: bottleneck(acfg, aw, path, site))
    ref.write_safetensors(out, [("logits", logits.float().contiguous())])


if __name__ == "__main__":
    main()
