#!/usr/bin/python3
"""Generation throughput the way Hugging Face `generate` does greedy decoding with a KV cache (the Python side of
bench/generation_bench.cc).

What it reproduces, from transformers 4.36-4.38 (the last versions whose Llama eager path runs on torch 1.13, which has
no scaled_dot_product_attention):
  - LlamaForCausalLM as modeling_llama.py defines it: nn.Embedding, nn.Linear projections without bias, LlamaRMSNorm
    (float32 variance), rotary embedding from cached cos/sin tables indexed by position_ids (rotate_half), eager
    attention with repeat_kv for grouped-query heads, softmax in float32, SwiGLU MLP, untied lm_head, logits.float()
    for every position (4.3x computes the head on the whole prefill, there is no num_logits_to_keep yet);
  - the 4D mask of _prepare_4d_causal_attention_mask: causal part (prefill only) and padding part, filled with
    finfo.min;
  - the KV cache as DynamicCache / the legacy tuple cache keep it: torch.cat of each layer's keys and values at every
    step;
  - the greedy loop of GenerationMixin.greedy_search: prepare_inputs_for_generation (only the unprocessed token after
    the first step; position_ids = attention_mask.cumsum(-1) - 1 with padding filled with 1), forward,
    logits[:, -1, :], the (empty) LogitsProcessorList, argmax, input_ids grown by torch.cat, attention_mask grown by a
    column of ones (_update_model_kwargs_for_generation), MaxLengthCriteria, unfinished_sequences; all under
    torch.no_grad() (generate is decorated with it).
No eos_token_id, so every row generates exactly --new-tokens tokens, like alignd's bench (no stop tokens).

Same model sizes, batch 8, the same left-padded prompt lengths, fp32 and thread count as generation_bench.

  /usr/bin/python3 bench/reference/generate_ref.py [--threads N] [--reps N] [--warmup N] [--smoke] [--out FILE]
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_util  # noqa: E402
from hf_llama_parts import Config, LlamaMLP, LlamaRMSNorm, repeat_kv, rotate_half  # noqa: E402

BATCH = 8
PROMPT_LENGTHS = [12, 20, 16, 24, 9, 30, 18, 14]


# ---- modeling_llama.py ---------------------------------------------------------------------------------------------

class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim, max_position_embeddings, base):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        t = torch.arange(max_position_embeddings, dtype=self.inv_freq.dtype)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self, x, seq_len):
        return self.cos_cached[:seq_len].to(dtype=x.dtype), self.sin_cached[:seq_len].to(dtype=x.dtype)


def apply_rotary_pos_emb(q, k, cos, sin, position_ids):
    cos = cos[position_ids].unsqueeze(1)
    sin = sin[position_ids].unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


class DynamicCache:
    """transformers.cache_utils.DynamicCache: per-layer key/value lists grown with torch.cat."""

    def __init__(self):
        self.key_cache = []
        self.value_cache = []

    def update(self, key_states, value_states, layer_idx):
        if len(self.key_cache) <= layer_idx:
            self.key_cache.append(key_states)
            self.value_cache.append(value_states)
        else:
            self.key_cache[layer_idx] = torch.cat([self.key_cache[layer_idx], key_states], dim=-2)
            self.value_cache[layer_idx] = torch.cat([self.value_cache[layer_idx], value_states], dim=-2)
        return self.key_cache[layer_idx], self.value_cache[layer_idx]

    def get_seq_length(self, layer_idx=0):
        return 0 if len(self.key_cache) <= layer_idx else self.key_cache[layer_idx].shape[-2]


class LlamaAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.q_proj = nn.Linear(self.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(self.hidden_size, self.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(self.hidden_size, self.num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, self.hidden_size, bias=False)
        self.rotary_emb = LlamaRotaryEmbedding(self.head_dim, config.max_position_embeddings, config.rope_theta)

    def forward(self, hidden_states, attention_mask, position_ids, past_key_value):
        bsz, q_len, _ = hidden_states.size()
        query_states = self.q_proj(hidden_states)
        key_states = self.k_proj(hidden_states)
        value_states = self.v_proj(hidden_states)
        query_states = query_states.view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key_states = key_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value_states = value_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)

        kv_seq_len = key_states.shape[-2] + past_key_value.get_seq_length(self.layer_idx)
        cos, sin = self.rotary_emb(value_states, seq_len=kv_seq_len)
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin, position_ids)
        key_states, value_states = past_key_value.update(key_states, value_states, self.layer_idx)

        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(self.head_dim)
        attn_weights = attn_weights + attention_mask
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        attn_weights = F.dropout(attn_weights, p=0.0, training=self.training)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(bsz, q_len, self.hidden_size)
        return self.o_proj(attn_output)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask, position_ids, past_key_value):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(hidden_states, attention_mask, position_ids, past_key_value)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


def prepare_4d_causal_attention_mask(attention_mask, input_shape, dtype, past_key_values_length):
    """AttentionMaskConverter(is_causal=True).to_4d: causal part when there is more than one query, padding part."""
    bsz, tgt_len = input_shape
    key_value_length = tgt_len + past_key_values_length
    causal_4d_mask = None
    if tgt_len > 1:
        mask = torch.full((tgt_len, tgt_len), torch.finfo(dtype).min)
        mask_cond = torch.arange(mask.size(-1))
        mask.masked_fill_(mask_cond < (mask_cond + 1).view(mask.size(-1), 1), 0)
        mask = mask.to(dtype)
        if past_key_values_length > 0:
            mask = torch.cat([torch.zeros(tgt_len, past_key_values_length, dtype=dtype), mask], dim=-1)
        causal_4d_mask = mask[None, None, :, :].expand(bsz, 1, tgt_len, key_value_length)
    expanded_mask = attention_mask[:, None, None, :].expand(bsz, 1, tgt_len, key_value_length).to(dtype)
    inverted_mask = 1.0 - expanded_mask
    expanded_attn_mask = inverted_mask.masked_fill(inverted_mask.to(torch.bool), torch.finfo(dtype).min)
    if causal_4d_mask is not None:
        expanded_attn_mask = causal_4d_mask.masked_fill(expanded_attn_mask.bool(), torch.finfo(dtype).min)
    return expanded_attn_mask


class LlamaModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids, attention_mask, position_ids, past_key_values):
        batch_size, seq_length = input_ids.shape
        past_key_values_length = past_key_values.get_seq_length()
        inputs_embeds = self.embed_tokens(input_ids)
        attention_mask = prepare_4d_causal_attention_mask(attention_mask, (batch_size, seq_length),
                                                          inputs_embeds.dtype, past_key_values_length)
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, position_ids, past_key_values)
        return self.norm(hidden_states)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, input_ids, attention_mask, position_ids, past_key_values):
        hidden_states = self.model(input_ids, attention_mask, position_ids, past_key_values)
        logits = self.lm_head(hidden_states)
        return logits.float(), past_key_values

    def init_weights(self, seed):
        """_init_weights: normal(0, 0.02) for Linear and Embedding, ones for the norms."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "norm" in name:
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, 0.02, generator=g)

    def prepare_inputs_for_generation(self, input_ids, past_key_values, attention_mask):
        if past_key_values is not None:
            past_length = past_key_values.get_seq_length()
            if attention_mask is not None and attention_mask.shape[1] > input_ids.shape[1]:
                input_ids = input_ids[:, -(attention_mask.shape[1] - past_length):]
            elif past_length < input_ids.shape[1]:
                input_ids = input_ids[:, past_length:]
        position_ids = attention_mask.long().cumsum(-1) - 1
        position_ids.masked_fill_(attention_mask == 0, 1)
        if past_key_values is not None:
            position_ids = position_ids[:, -input_ids.shape[1]:]
        return {"input_ids": input_ids, "position_ids": position_ids,
                "past_key_values": past_key_values if past_key_values is not None else DynamicCache(),
                "attention_mask": attention_mask}


# ---- GenerationMixin.greedy_search -----------------------------------------------------------------------------

class MaxLengthCriteria:
    def __init__(self, max_length):
        self.max_length = max_length

    def __call__(self, input_ids, scores):
        is_done = input_ids.shape[-1] >= self.max_length
        return torch.full((input_ids.shape[0],), is_done, device=input_ids.device, dtype=torch.bool)


@torch.no_grad()
def greedy_generate(model, input_ids, attention_mask, max_new_tokens, use_cache=True):
    logits_processor = []  # LogitsProcessorList(): nothing for plain greedy decoding
    stopping_criteria = [MaxLengthCriteria(input_ids.shape[-1] + max_new_tokens)]
    unfinished_sequences = torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    past_key_values = None
    while True:
        if use_cache:
            model_inputs = model.prepare_inputs_for_generation(input_ids, past_key_values, attention_mask)
        else:  # use_cache=False: the whole sequence every step, a fresh (discarded) cache each time
            model_inputs = model.prepare_inputs_for_generation(input_ids, None, attention_mask)
        logits, cache = model(**model_inputs)
        next_token_logits = logits[:, -1, :]
        next_tokens_scores = next_token_logits
        for processor in logits_processor:
            next_tokens_scores = processor(input_ids, next_tokens_scores)
        next_tokens = torch.argmax(next_tokens_scores, dim=-1)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        if use_cache:
            past_key_values = cache
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=-1)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        for criterion in stopping_criteria:
            done = done | criterion(input_ids, next_tokens_scores)
        unfinished_sequences = unfinished_sequences & ~done
        if unfinished_sequences.max() == 0:
            break
    return input_ids


def left_padded_prompts(pad_id=0):
    g = torch.Generator().manual_seed(12)
    width = max(PROMPT_LENGTHS)
    ids = torch.full((BATCH, width), pad_id, dtype=torch.long)
    mask = torch.zeros((BATCH, width), dtype=torch.long)
    for i, n in enumerate(PROMPT_LENGTHS):
        ids[i, width - n:] = torch.randint(0, 256, (n,), generator=g)
        mask[i, width - n:] = 1
    return ids, mask


def describe(config, model):
    return {"family": "llama", "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size, "num_layers": config.num_hidden_layers,
            "num_heads": config.num_attention_heads, "num_kv_heads": config.num_key_value_heads,
            "head_dim": config.head_dim, "tie_word_embeddings": False, "dtype": "float32",
            "parameters": sum(p.numel() for p in model.parameters())}


def measure(args, model, new_tokens, use_cache):
    ids, mask = left_padded_prompts()
    expected = BATCH * new_tokens

    def run():
        out = greedy_generate(model, ids, mask, new_tokens, use_cache)
        assert out.shape == (BATCH, ids.shape[1] + new_tokens), out.shape

    return [expected / s for s in bench_util.time_repeated(args, run)]


def main():
    p = bench_util.parser(__doc__.splitlines()[0])
    p.add_argument("--no-20m", action="store_true", help="skip the ~20M model")
    p.add_argument("--skip-no-kv", action="store_true", help="skip use_cache=False on the ~1M model")
    args = bench_util.finish_args(p.parse_args())
    new_tokens = 8 if args.smoke else 128
    report = bench_util.Report("generation_python", args)
    small = Config(261, 128, 4, 4, 2)
    model = LlamaForCausalLM(small).eval()
    model.init_weights(1)
    report.json["config"].update({"model_1m": describe(small, model), "batch": BATCH, "prompt_lengths": PROMPT_LENGTHS,
                                  "padding": "left", "new_tokens": new_tokens,
                                  "decoding": "greedy, no eos_token_id", "torch": torch.__version__})
    per_rep = f"8 rows x {new_tokens} new tokens / wall time of one call"
    report.add("kv_tokens_per_s", "tokens/s", measure(args, model, new_tokens, True), True,
               "HF-style greedy generate with DynamicCache, ~1M model; " + per_rep)
    if not args.skip_no_kv:
        report.add("no_kv_tokens_per_s", "tokens/s", measure(args, model, new_tokens, False), True,
                   "HF-style greedy generate with use_cache=False, ~1M model; " + per_rep)
    if not args.smoke and not args.no_20m:
        big = Config(261, 512, 6, 8, 4)
        model20 = LlamaForCausalLM(big).eval()
        model20.init_weights(1)
        report.json["config"]["model_20m"] = describe(big, model20)
        report.add("kv_20m_tokens_per_s", "tokens/s", measure(args, model20, new_tokens, True), True,
                   "HF-style greedy generate with DynamicCache, ~20M model; " + per_rep)
    report.write()


if __name__ == "__main__":
    main()
