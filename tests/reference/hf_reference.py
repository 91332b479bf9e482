#!/usr/bin/python3
"""An independent reference for alignd's model core, written against the Hugging Face definitions.

It writes Hugging Face model folders the way Hugging Face tools do (its own safetensors writer, its own tokenizer.json
with merges, byte ids in GPT-2's encoder order, and a BOS-adding post-processor), then computes, with its own
implementation of the Llama and GPT-2 forward passes and of byte-level BPE:
  - logits for a left-padded batch (stored in expected.safetensors),
  - perplexity over a texts file, as `alignd eval --metrics perplexity` defines it (BOS + text, every next token).
alignd's tests load those folders and must agree to 1e-4 relative.

Usage: hf_reference.py OUT_DIR   (writes OUT_DIR/<variant>/ model folders, OUT_DIR/texts.jsonl, OUT_DIR/expected.json)
Runs with Debian's python3-torch and python3-regex (/usr/bin/python3).
"""
import json
import math
import os
import struct
import sys

import regex
import torch

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                  r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is 17 + 25? 17 + 25 = 42.",
    "I can't help with that, but here's what I can do:\n\n  - ask again\n  - be kind",
    "Numbers like 1234567 and 3.14159 split differently.",
    "Short.",
    "Unicode: caf\u00e9, na\u00efve, \u4f60\u597d, \U0001F600 and tabs\tinside.",
    "the the the the the the the the the the the the the the the the the the the the the the",
    "A somewhat longer line of text that the model will see as a single window, with commas, dashes - and "
    "parentheses (like these), quotes \"like this\", and 'single' quotes too; it keeps going for a while.",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs])), bs


class ReferenceTokenizer:
    """Byte-level BPE: the byte tokens in GPT-2 encoder order, a few merges, and two special tokens."""

    def __init__(self, pattern_kind):
        self.byte_encoder, order = bytes_to_unicode()
        self.vocab = {self.byte_encoder[b]: i for i, b in enumerate(order)}
        merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("Ġ", "s"),
                  ("o", "n"), ("Ġ", "w"), ("r", "e"), ("Ġthe", "Ġ")]
        # The last merge can never apply inside one pre-token (GPT-2's regex splits before spaces): harmless.
        self.merges = []
        for a, b in merges:
            if a in self.vocab and b in self.vocab and a + b not in self.vocab:
                self.vocab[a + b] = len(self.vocab)
                self.merges.append((a, b))
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.bos = "<|begin_of_text|>"
        self.eos = "<|end_of_text|>"
        self.bos_id = len(self.vocab)
        self.eos_id = self.bos_id + 1
        self.pattern_kind = pattern_kind
        self.pattern = regex.compile(GPT2_PATTERN if pattern_kind == "gpt2" else LLAMA3_PATTERN)

    def vocab_size(self):
        return self.eos_id + 1

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((parts[i], parts[i + 1]), None), i) for i in range(len(parts) - 1)]
            pairs = [p for p in pairs if p[0] is not None]
            if not pairs:
                break
            _, i = min(pairs)
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        return parts

    def encode(self, text):
        ids = [self.bos_id]
        for piece in self.pattern.findall(text):
            word = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self.bpe(word))
        return ids

    def tokenizer_json(self):
        if self.pattern_kind == "gpt2":
            pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        else:
            pre = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
        added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i, c in ((self.bos_id, self.bos), (self.eos_id, self.eos))]
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": pre,
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": self.bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": self.bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": self.bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {self.bos: {"id": self.bos, "ids": [self.bos_id], "tokens": [self.bos]}}},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": self.vocab, "merges": [f"{a} {b}" for a, b in self.merges]},
        }


DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def write_safetensors(path, tensors):
    """tensors: list of (name, tensor). Mirrors the reference writer: header padded to 8 bytes."""
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, t in tensors:
        dtype = {v: k for k, v in DTYPES.items()}[t.dtype]
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# --------------------------------------------------------------------------------------------------------------------
# The two architectures, written from Hugging Face's modeling_llama.py / modeling_gpt2.py definitions.

def rms_norm(x, w, eps):
    h = x.float()
    return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def causal_padding_mask(attn_mask, dtype):
    b, t = attn_mask.shape
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    allowed = causal[None, None] & attn_mask[:, None, None, :].bool()
    return torch.where(allowed, torch.tensor(0.0, dtype=dtype), torch.tensor(torch.finfo(dtype).min, dtype=dtype))


def attention(q, k, v, mask):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


def llama_forward(cfg, w, ids, attn_mask):
    b, t = ids.shape
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg.get("head_dim", cfg["hidden_size"] // nh)
    pos = (attn_mask.long().cumsum(-1) - 1).clamp(min=0)
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
    freqs = pos[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    cos, sin = emb.cos(), emb.sin()
    mask = causal_padding_mask(attn_mask, torch.float32)
    x = w["model.embed_tokens.weight"][ids]
    eps = cfg["rms_norm_eps"]
    bias = lambda n: w.get(n)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        lin = lambda y, n: torch.nn.functional.linear(y, w[p + n + ".weight"], bias(p + n + ".bias"))
        q = lin(h, "self_attn.q_proj").view(b, t, nh, d).transpose(1, 2)
        k = lin(h, "self_attn.k_proj").view(b, t, nkv, d).transpose(1, 2)
        v = lin(h, "self_attn.v_proj").view(b, t, nkv, d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        a = attention(q, k, v, mask).transpose(1, 2).reshape(b, t, nh * d)
        x = x + lin(a, "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + lin(torch.nn.functional.silu(lin(h, "mlp.gate_proj")) * lin(h, "mlp.up_proj"), "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.t()


def gpt2_forward(cfg, w, ids, attn_mask):
    b, t = ids.shape
    nh, hs = cfg["n_head"], cfg["n_embd"]
    d = hs // nh
    pos = (attn_mask.long().cumsum(-1) - 1).clamp(min=0)
    mask = causal_padding_mask(attn_mask, torch.float32)
    x = w["wte.weight"][ids] + w["wpe.weight"][pos]
    ln = lambda y, n: torch.nn.functional.layer_norm(y, (hs,), w[n + ".weight"], w[n + ".bias"],
                                                     cfg["layer_norm_epsilon"])
    conv = lambda y, n: torch.addmm(w[n + ".bias"], y.reshape(-1, y.shape[-1]), w[n + ".weight"]).view(
        *y.shape[:-1], -1)
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        qkv = conv(ln(x, p + "ln_1"), p + "attn.c_attn")
        q, k, v = (z.view(b, t, nh, d).transpose(1, 2) for z in qkv.split(hs, dim=-1))
        a = attention(q, k, v, mask).transpose(1, 2).reshape(b, t, hs)
        x = x + conv(a, p + "attn.c_proj")
        h = conv(ln(x, p + "ln_2"), p + "mlp.c_fc")
        gelu = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        x = x + conv(gelu, p + "mlp.c_proj")
    return ln(x, "ln_f") @ w["wte.weight"].t()


# --------------------------------------------------------------------------------------------------------------------

VARIANTS = {
    # name: (architecture, model_type, tied, disk dtype, shards, tokenizer pattern)
    "llama_gqa_f32": ("LlamaForCausalLM", "llama", False, "F32", 1, "llama3"),
    "qwen2_bias_bf16_sharded": ("Qwen2ForCausalLM", "qwen2", True, "BF16", 3, "llama3"),
    "mistral_f16": ("MistralForCausalLM", "mistral", False, "F16", 1, "gpt2"),
    "gpt2_f32": ("GPT2LMHeadModel", "gpt2", True, "F32", 1, "gpt2"),
}


def make_weights(cfg, arch, gen):
    w = {}
    rnd = lambda *shape: torch.randn(*shape, generator=gen) * 0.08
    if arch == "GPT2LMHeadModel":
        hs = cfg["n_embd"]
        inner = cfg["n_inner"] or 4 * hs
        w["wte.weight"] = rnd(cfg["vocab_size"], hs)
        w["wpe.weight"] = rnd(cfg["n_positions"], hs)
        for i in range(cfg["n_layer"]):
            p = f"h.{i}."
            for n in ("ln_1", "ln_2"):
                w[p + n + ".weight"] = 1.0 + rnd(hs)
                w[p + n + ".bias"] = rnd(hs)
            for n, (a, b) in {"attn.c_attn": (hs, 3 * hs), "attn.c_proj": (hs, hs), "mlp.c_fc": (hs, inner),
                              "mlp.c_proj": (inner, hs)}.items():
                w[p + n + ".weight"] = rnd(a, b)
                w[p + n + ".bias"] = rnd(b)
            # Original GPT-2 checkpoints carry the causal-mask buffer; loaders must skip it.
            w[p + "attn.bias"] = torch.tril(torch.ones(cfg["n_positions"], cfg["n_positions"]))[None, None]
        w["ln_f.weight"] = 1.0 + rnd(hs)
        w["ln_f.bias"] = rnd(hs)
        return w
    hs, inter = cfg["hidden_size"], cfg["intermediate_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = hs // nh
    qkv_bias = cfg["model_type"] == "qwen2"
    w["model.embed_tokens.weight"] = rnd(cfg["vocab_size"], hs)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1.0 + rnd(hs)
        w[p + "post_attention_layernorm.weight"] = 1.0 + rnd(hs)
        for n, (o, inp) in {"q_proj": (nh * d, hs), "k_proj": (nkv * d, hs), "v_proj": (nkv * d, hs)}.items():
            w[p + "self_attn." + n + ".weight"] = rnd(o, inp)
            if qkv_bias:
                w[p + "self_attn." + n + ".bias"] = rnd(o)
        w[p + "self_attn.o_proj.weight"] = rnd(hs, nh * d)
        w[p + "mlp.gate_proj.weight"] = rnd(inter, hs)
        w[p + "mlp.up_proj.weight"] = rnd(inter, hs)
        w[p + "mlp.down_proj.weight"] = rnd(hs, inter)
    w["model.norm.weight"] = 1.0 + rnd(hs)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rnd(cfg["vocab_size"], hs)
    return w


def make_config(arch, model_type, tied, vocab, dtype):
    torch_dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]
    if arch == "GPT2LMHeadModel":
        return {"architectures": [arch], "model_type": "gpt2", "vocab_size": vocab, "n_embd": 32, "n_layer": 2,
                "n_head": 4, "n_positions": 256, "n_ctx": 256, "n_inner": None, "layer_norm_epsilon": 1e-5,
                "activation_function": "gelu_new", "tie_word_embeddings": tied, "torch_dtype": torch_dtype}
    cfg = {"architectures": [arch], "model_type": model_type, "vocab_size": vocab, "hidden_size": 32,
           "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0 if model_type != "qwen2"
           else 1000000.0, "hidden_act": "silu", "tie_word_embeddings": tied, "torch_dtype": torch_dtype}
    if model_type == "mistral":
        cfg["sliding_window"] = None
    return cfg


def build_variant(out, name, spec, seed):
    arch, model_type, tied, dtype, shards, pattern = spec
    tok = ReferenceTokenizer(pattern)
    cfg = make_config(arch, model_type, tied, tok.vocab_size(), dtype)
    gen = torch.Generator().manual_seed(seed)
    w = make_weights(cfg, arch, gen)
    # Round through the disk dtype so the reference computes with exactly the stored values.
    w = {k: v.to(DTYPES[dtype]) for k, v in w.items()}
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok.tokenizer_json(), f)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": tok.bos, "eos_token": tok.eos, "add_bos_token": True,
                   "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 256}, f)
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}, f)
    items = list(w.items())
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), items)
    else:
        weight_map, per = {}, (len(items) + shards - 1) // shards
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = items[s * per:(s + 1) * per]
            write_safetensors(os.path.join(d, fname), part)
            weight_map.update({k: fname for k, _ in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(v.numel() * v.element_size() for v in w.values())},
                       "weight_map": weight_map}, f, indent=2)

    w32 = {k: v.float() for k, v in w.items()}
    fwd = gpt2_forward if arch == "GPT2LMHeadModel" else llama_forward

    # Perplexity exactly as alignd eval defines it: BOS + text, one window per text (all are < 256 tokens).
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in TEXTS:
            ids = torch.tensor([tok.encode(text)])
            assert ids.shape[1] <= 256
            logits = fwd(cfg, w32, ids, torch.ones_like(ids))
            logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
            nll -= logp.gather(-1, ids[0, 1:, None]).sum().item()
            count += ids.shape[1] - 1

        # A left-padded batch: the first two texts, padded with id 0 on the left.
        seqs = [tok.encode(t) for t in TEXTS[:3]]
        t = max(len(s) for s in seqs)
        ids = torch.tensor([[0] * (t - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (t - len(s)) + [1] * len(s) for s in seqs])
        logits = fwd(cfg, w32, ids, mask)
    write_safetensors(os.path.join(out, name + ".expected.safetensors"),
                      [("input_ids", ids.to(torch.float32)), ("attention_mask", mask.to(torch.float32)),
                       ("logits", logits.float().contiguous())])
    token_ids = [tok.encode(text) for text in TEXTS]
    return {"perplexity": math.exp(nll / count), "tokens": count, "token_ids": token_ids}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    with open(os.path.join(out, "texts.jsonl"), "w") as f:
        for t in TEXTS:
            f.write(json.dumps({"text": t}) + "\n")
    expected = {}
    for i, (name, spec) in enumerate(VARIANTS.items()):
        expected[name] = build_variant(out, name, spec, seed=1234 + i)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
