"""The Hugging Face reference for alignd's model core: folders written here, numbers computed by `transformers`.

It writes Hugging Face model folders the way Hugging Face tools do (its own safetensors writer, its own tokenizer.json
with merges, byte ids in GPT-2's encoder order, and a BOS-adding post-processor), loads each one back with
`transformers` (AutoModelForCausalLM, eager attention, float32 compute: the F16/BF16 variants are upcast on load, as
alignd loads them) and `tokenizers` (Tokenizer.from_file on the tokenizer.json written here), and records:
  - the token ids of every text (with the BOS the post-processor adds),
  - logits for a left-padded batch (stored in <variant>.expected.safetensors),
  - perplexity over a texts file, as `alignd eval --metrics perplexity` defines it (BOS + text, every next token).
A folder that transformers loads with a missing, unexpected or mismatched weight, or with a weight other than the one
written, is an error here (exit status 1), so that the numbers always come from the weights alignd reads.
alignd's tests load those folders and must agree to 1e-5 relative (logits, perplexity in hf_model_test; perplexity
through `alignd eval` in cli_test to 1e-4).

Usage: hf_reference.py OUT_DIR   (writes OUT_DIR/<variant>/ model folders, OUT_DIR/texts.jsonl, OUT_DIR/expected.json)
Runs with the interpreter of scripts/bootstrap's prefix (ALIGND_PYTHON: torch, transformers, tokenizers).
"""
import json
import logging
import math
import os
import struct
import sys
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never wait on the network

import torch
import transformers
from tokenizers import Tokenizer

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


class TokenizerFiles:
    """A byte-level BPE tokenizer.json: the byte tokens in GPT-2 encoder order, a few merges, two special tokens."""

    def __init__(self, pattern_kind):
        byte_encoder, order = bytes_to_unicode()
        self.vocab = {byte_encoder[b]: i for i, b in enumerate(order)}
        merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("Ġ", "s"),
                  ("o", "n"), ("Ġ", "w"), ("r", "e"), ("Ġthe", "Ġ")]
        # The last merge can never apply inside one pre-token (GPT-2's regex splits before spaces): harmless.
        self.merges = []
        for a, b in merges:
            if a in self.vocab and b in self.vocab and a + b not in self.vocab:
                self.vocab[a + b] = len(self.vocab)
                self.merges.append((a, b))
        self.bos = "<|begin_of_text|>"
        self.eos = "<|end_of_text|>"
        self.bos_id = len(self.vocab)
        self.eos_id = self.bos_id + 1
        self.pattern_kind = pattern_kind

    def vocab_size(self):
        return self.eos_id + 1

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
            # Original GPT-2 checkpoints carry the causal-mask buffer; loaders must skip it (transformers lists it in
            # GPT2's _keys_to_ignore_on_load_unexpected, alignd skips it by name).
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


def make_config(arch, model_type, tied, tok, dtype):
    torch_dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]
    # The special token ids too: without them transformers' GPT-2 config falls back to 50256, outside this vocab.
    ids = {"vocab_size": tok.vocab_size(), "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
    if arch == "GPT2LMHeadModel":
        return {"architectures": [arch], "model_type": "gpt2", **ids, "n_embd": 32, "n_layer": 2,
                "n_head": 4, "n_positions": 256, "n_ctx": 256, "n_inner": None, "layer_norm_epsilon": 1e-5,
                "activation_function": "gelu_new", "tie_word_embeddings": tied, "torch_dtype": torch_dtype}
    cfg = {"architectures": [arch], "model_type": model_type, **ids, "hidden_size": 32,
           "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0 if model_type != "qwen2"
           else 1000000.0, "hidden_act": "silu", "tie_word_embeddings": tied, "torch_dtype": torch_dtype}
    if model_type == "mistral":
        cfg["sliding_window"] = None
    return cfg


def write_folder(d, cfg, tok, w, shards):
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
        return
    weight_map, per = {}, (len(items) + shards - 1) // shards
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = items[s * per:(s + 1) * per]
        write_safetensors(os.path.join(d, fname), part)
        weight_map.update({k: fname for k, _ in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(v.numel() * v.element_size() for v in w.values())},
                   "weight_map": weight_map}, f, indent=2)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def quietly(load, what, strict=True):
    """Calls load(); exits with an error naming `what` if transformers or peft logged a warning or Python warned,
    deprecations aside (peft 0.21 calls an API that transformers 5 deprecates; those go to stderr). Not `strict`: the
    warnings go to stderr only."""
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("transformers", "peft")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = load()
    finally:
        for logger in loggers:
            logger.removeHandler(records)
    complaints = list(records.messages)
    for c in caught:
        if issubclass(c.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
            print(f"{what}: {c.category.__name__}: {c.message}", file=sys.stderr)
        else:
            complaints.append(f"{c.category.__name__}: {c.message}")
    if complaints and strict:
        sys.exit(f"{what}: warnings while loading it: {complaints}")
    for c in complaints:
        print(f"{what}: warning while loading it: {c}", file=sys.stderr)
    return result


def load_model(d, w, strict_config=True):
    """The folder `d` as transformers loads it, in float32 with eager attention. Exits with an error on a missing,
    unexpected or mismatched weight, unless the model holds exactly the tensors `w` (the folder's, by name; GPT-2's
    "attn.bias" mask buffers are skipped) plus, when tied, lm_head = the embedding, and (`strict_config`) on any
    other warning while loading, such as one about config.json."""
    model, info = quietly(lambda: transformers.AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager", output_loading_info=True), d, strict_config)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(kind):
            sys.exit(f"{d}: transformers reports {kind}: {sorted(info[kind])}")
    cfg = model.config
    if type(model).__name__ != cfg.architectures[0]:
        sys.exit(f"{d}: transformers built {type(model).__name__}, config.json says {cfg.architectures[0]}")
    state = model.state_dict()
    # Original GPT-2 checkpoints name the weights without the "transformer." of GPT2LMHeadModel.
    prefix = "transformer." if cfg.model_type == "gpt2" else ""
    written = {k if k.startswith(prefix) or k == "lm_head.weight" else prefix + k: v for k, v in w.items()
               if not k.endswith(".attn.bias")}
    for name, t in written.items():
        if name not in state or not torch.equal(state[name], t.float()):
            sys.exit(f"{d}: transformers does not hold the written {name}")
    tied = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    extra = set(state) - set(written) - tied
    if extra:
        sys.exit(f"{d}: transformers holds weights that were not written: {sorted(extra)}")
    if tied and "lm_head.weight" not in written:
        embed = model.get_input_embeddings().weight
        if not torch.equal(state["lm_head.weight"], embed):
            sys.exit(f"{d}: tie_word_embeddings is true but lm_head.weight is not the embedding")
    return model.eval()


def logits_of(model, ids, mask):
    # Positions count real tokens only (left padding), as generate() and alignd compute them; plain forward() would
    # number the pads too.
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits


def build_variant(out, name, spec, seed):
    arch, model_type, tied, dtype, shards, pattern = spec
    tok = TokenizerFiles(pattern)
    cfg = make_config(arch, model_type, tied, tok, dtype)
    gen = torch.Generator().manual_seed(seed)
    w = make_weights(cfg, arch, gen)
    # Round through the disk dtype so the reference computes with exactly the stored values.
    w = {k: v.to(DTYPES[dtype]) for k, v in w.items()}
    d = os.path.join(out, name)
    write_folder(d, cfg, tok, w, shards)

    model = load_model(d, w)
    if "rope_theta" in cfg and model.config.rope_parameters["rope_theta"] != cfg["rope_theta"]:
        sys.exit(f"{d}: transformers reads rope_theta {model.config.rope_parameters} from config.json")
    tokenizer = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    token_ids = [tokenizer.encode(text, add_special_tokens=True).ids for text in TEXTS]
    for ids in token_ids:
        if ids[0] != tok.bos_id:
            sys.exit(f"{d}: tokenizers did not add BOS: {ids}")

    # Perplexity exactly as alignd eval defines it: BOS + text, one window per text (all are < 256 tokens).
    nll, count = 0.0, 0
    with torch.no_grad():
        for seq in token_ids:
            ids = torch.tensor([seq])
            assert ids.shape[1] <= 256
            logits = logits_of(model, ids, torch.ones_like(ids))
            logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
            nll -= logp.gather(-1, ids[0, 1:, None]).sum().item()
            count += ids.shape[1] - 1

        # A left-padded batch: the first three texts, padded with id 0 on the left.
        seqs = token_ids[:3]
        t = max(len(s) for s in seqs)
        ids = torch.tensor([[0] * (t - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (t - len(s)) + [1] * len(s) for s in seqs])
        logits = logits_of(model, ids, mask)
    write_safetensors(os.path.join(out, name + ".expected.safetensors"),
                      [("input_ids", ids.to(torch.float32)), ("attention_mask", mask.to(torch.float32)),
                       ("logits", logits.float().contiguous())])
    return {"perplexity": math.exp(nll / count), "tokens": count, "token_ids": token_ids}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
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
