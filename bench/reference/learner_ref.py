#!/usr/bin/python3
"""Learner throughput of the Python stack: the twin of bench/learner_bench.cc.

One SFT and one DPO optimiser step, on the same ~0.8M and ~20M parameter Llama-style models, the same shapes, dtype,
hyper-parameters and thread count, done the way the Python tools do them:
  - the model is Hugging Face's LlamaForCausalLM (modeling_llama.py, transformers 4.4x, eager attention: torch 1.13
    has no scaled_dot_product_attention), transcribed module for module: nn.Linear projections without bias,
    LlamaRMSNorm in float32, rotary embeddings computed once per forward from position_ids, GQA through repeat_kv,
    the 4-D causal mask of _update_causal_mask, SwiGLU MLP, tied LM head, logits.float(), HF's _init_weights;
  - SFT is HF Trainer's step under TRL's SFTTrainer with a completion-only collator: labels -100 on the prompt, the
    model's own shifted CrossEntropyLoss (mean over label tokens), backward, the NaN/Inf check on the step loss,
    clip_grad_norm_(1.0), torch.optim.AdamW (weight decay on all but biases and norms, as Trainer groups them), the
    LambdaLR of get_linear_schedule_with_warmup, zero_grad;
  - DPO is TRL's DPOTrainer with precompute_ref_log_probs=True: concatenated_forward (chosen rows then rejected rows
    in one batch), get_batch_logps (log_softmax, gather, masked sum), dpo_loss (sigmoid, beta 0.1) against the cached
    reference log-probs, TRL's step metrics, then the same optimiser steps.
Batches are collated from token lists every step (Trainer's DataLoader runs in the main process by default), with a
minimal collator: every sequence already has the same length, so there is nothing to pad.

Usage: /usr/bin/python3 bench/reference/learner_ref.py [--threads N] [--reps N] [--warmup N] [--smoke] [--out FILE]
"""
import math
import os
import random
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_util  # noqa: E402
from hf_llama_parts import Config, LlamaMLP, LlamaRMSNorm, repeat_kv, rotate_half  # noqa: E402

VOCAB, BOS, EOS = 261, 257, 258  # alignd's byte tokenizer
EXAMPLES = 64


# ---- modeling_llama.py --------------------------------------------------------------------------------------------

class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim, base=10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


class LlamaAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention_dropout = config.attention_dropout
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        h = config.hidden_size
        self.q_proj = nn.Linear(h, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, h, bias=False)

    def forward(self, hidden_states, attention_mask, position_embeddings):
        bsz, q_len, _ = hidden_states.size()
        query_states = self.q_proj(hidden_states)
        key_states = self.k_proj(hidden_states)
        value_states = self.v_proj(hidden_states)
        query_states = query_states.view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key_states = key_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value_states = value_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(self.head_dim)
        if attention_mask is not None:
            causal_mask = attention_mask[:, :, :, : key_states.shape[-2]]
            attn_weights = attn_weights + causal_mask
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        attn_weights = nn.functional.dropout(attn_weights, p=self.attention_dropout, training=self.training)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(bsz, q_len, -1)
        return self.o_proj(attn_output)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = LlamaAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask, position_embeddings):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(hidden_states, attention_mask, position_embeddings)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


class LlamaModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config.head_dim, base=config.rope_theta)

    def forward(self, input_ids, attention_mask):
        inputs_embeds = self.embed_tokens(input_ids)
        cache_position = torch.arange(0, inputs_embeds.shape[1], device=inputs_embeds.device)
        position_ids = cache_position.unsqueeze(0)
        causal_mask = self._update_causal_mask(attention_mask, inputs_embeds, cache_position)
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for decoder_layer in self.layers:
            hidden_states = decoder_layer(hidden_states, causal_mask, position_embeddings)
        return self.norm(hidden_states)

    @staticmethod
    def _update_causal_mask(attention_mask, input_tensor, cache_position):
        dtype, device = input_tensor.dtype, input_tensor.device
        min_dtype = torch.finfo(dtype).min
        sequence_length = input_tensor.shape[1]
        target_length = attention_mask.shape[-1]
        causal_mask = torch.full((sequence_length, target_length), fill_value=min_dtype, dtype=dtype, device=device)
        if sequence_length != 1:
            causal_mask = torch.triu(causal_mask, diagonal=1)
        causal_mask *= torch.arange(target_length, device=device) > cache_position.reshape(-1, 1)
        causal_mask = causal_mask[None, None, :, :].expand(input_tensor.shape[0], 1, -1, -1)
        causal_mask = causal_mask.clone()
        mask_length = attention_mask.shape[-1]
        padding_mask = causal_mask[:, :, :, :mask_length] + attention_mask[:, None, None, :]
        padding_mask = padding_mask == 0
        causal_mask[:, :, :, :mask_length] = causal_mask[:, :, :, :mask_length].masked_fill(padding_mask, min_dtype)
        return causal_mask


class LlamaForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)

    def forward(self, input_ids, attention_mask, labels=None):
        hidden_states = self.model(input_ids, attention_mask)
        logits = self.lm_head(hidden_states)
        logits = logits.float()
        loss = None
        if labels is not None:
            shift_logits = logits[..., :-1, :].contiguous()
            shift_labels = labels[..., 1:].contiguous()
            loss_fct = nn.CrossEntropyLoss()
            shift_logits = shift_logits.view(-1, self.config.vocab_size)
            shift_labels = shift_labels.view(-1)
            loss = loss_fct(shift_logits, shift_labels)
        return loss, logits


# ---- Trainer / TRL ------------------------------------------------------------------------------------------------

def make_optimizer(model, lr, weight_decay, total_steps):
    # Trainer.get_decay_parameter_names: no decay on biases and norm weights (here: every 1-D parameter).
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)

    def lr_lambda(current_step):  # get_linear_schedule_with_warmup, no warm-up
        return max(0.0, float(total_steps - current_step) / float(max(1, total_steps)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def optimizer_step(model, optimizer, scheduler, max_grad_norm):
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    model.zero_grad(set_to_none=True)


def make_sequences(rng, count, seq_len, prompt_len):
    """Token lists of BOS + prompt + response + EOS, as alignd's raw template renders its data."""
    letters = lambda n: [rng.randrange(97, 123) for _ in range(n)]  # noqa: E731
    return [[BOS] + letters(prompt_len - 1) + letters(seq_len - prompt_len - 1) + [EOS] for _ in range(count)]


class Batches:
    """Trainer's RandomSampler over the examples: a fresh shuffle each epoch."""

    def __init__(self, n, batch_size, seed=1):
        self.n, self.batch_size, self.rng, self.order = n, batch_size, random.Random(seed), []

    def next(self):
        out = []
        while len(out) < self.batch_size:
            if not self.order:
                self.order = list(range(self.n))
                self.rng.shuffle(self.order)
            out.append(self.order.pop())
        return out


class SftStep:
    def __init__(self, model, examples, batch_size, prompt_len, total_steps, bf16=False):
        self.model, self.examples, self.prompt_len, self.bf16 = model, examples, prompt_len, bf16
        self.batches = Batches(len(examples), batch_size)
        self.optimizer, self.scheduler = make_optimizer(model, 1e-4, 0.01, total_steps)
        self.tr_loss = torch.tensor(0.0)

    def collate(self, idx):  # DataCollatorForCompletionOnlyLM: labels -100 on the prompt
        ids = torch.tensor([self.examples[i] for i in idx], dtype=torch.long)
        labels = ids.clone()
        labels[:, : self.prompt_len] = -100
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    def __call__(self):
        inputs = self.collate(self.batches.next())
        self.model.train()  # Trainer.training_step
        # Trainer(bf16=True) on a CPU: compute_loss under autocast_smart_context_manager, backward outside it.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss, _ = self.model(**inputs)
        loss.backward()
        tr_loss_step = loss.detach()
        if torch.isnan(tr_loss_step) or torch.isinf(tr_loss_step):  # logging_nan_inf_filter
            raise RuntimeError("the SFT loss is not finite")
        self.tr_loss += tr_loss_step
        optimizer_step(self.model, self.optimizer, self.scheduler, 1.0)


def get_batch_logps(logits, labels, label_pad_token_id=-100):
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1, :]
    loss_mask = labels != label_pad_token_id
    labels[labels == label_pad_token_id] = 0
    per_token_logps = torch.gather(logits.log_softmax(-1), dim=2, index=labels.unsqueeze(2)).squeeze(2)
    return (per_token_logps * loss_mask).sum(-1)


class DpoStep:
    def __init__(self, model, pairs, batch_size, prompt_len, total_steps, beta=0.1):
        self.model, self.pairs, self.prompt_len, self.beta = model, pairs, prompt_len, beta
        self.batches = Batches(len(pairs), batch_size)
        self.optimizer, self.scheduler = make_optimizer(model, 1e-4, 0.01, total_steps)
        self.metrics = []
        # precompute_ref_log_probs: one pass over the data with the initial model, before training.
        self.ref = [None] * len(pairs)
        with torch.no_grad():
            for b in range(0, len(pairs), batch_size):
                idx = list(range(b, min(len(pairs), b + batch_size)))
                batch = self.collate(idx, with_ref=False)
                chosen, rejected, _, _ = self.concatenated_forward(batch)
                for j, i in enumerate(idx):
                    self.ref[i] = (chosen[j].item(), rejected[j].item())

    def collate(self, idx, with_ref=True):  # DPODataCollatorWithPadding
        batch = {}
        for key, which in (("chosen", 0), ("rejected", 1)):
            ids = torch.tensor([self.pairs[i][which] for i in idx], dtype=torch.long)
            labels = ids.clone()
            labels[:, : self.prompt_len] = -100
            batch[key + "_input_ids"], batch[key + "_attention_mask"], batch[key + "_labels"] = \
                ids, torch.ones_like(ids), labels
        if with_ref:
            batch["reference_chosen_logps"] = torch.tensor([self.ref[i][0] for i in idx])
            batch["reference_rejected_logps"] = torch.tensor([self.ref[i][1] for i in idx])
        return batch

    def concatenated_forward(self, batch):
        concatenated = {k.replace("chosen", "concatenated"): torch.cat((batch[k], batch[k.replace("chosen", "rejected")]))
                        for k in ("chosen_input_ids", "chosen_attention_mask", "chosen_labels")}
        len_chosen = batch["chosen_labels"].shape[0]
        _, all_logits = self.model(concatenated["concatenated_input_ids"],
                                   attention_mask=concatenated["concatenated_attention_mask"])
        all_logps = get_batch_logps(all_logits, concatenated["concatenated_labels"])
        return (all_logps[:len_chosen], all_logps[len_chosen:], all_logits[:len_chosen], all_logits[len_chosen:])

    def dpo_loss(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                 label_smoothing=0.0):
        pi_logratios = policy_chosen_logps - policy_rejected_logps
        ref_logratios = reference_chosen_logps - reference_rejected_logps
        logits = pi_logratios - ref_logratios
        losses = (-F.logsigmoid(self.beta * logits) * (1 - label_smoothing)
                  - F.logsigmoid(-self.beta * logits) * label_smoothing)
        chosen_rewards = self.beta * (policy_chosen_logps - reference_chosen_logps).detach()
        rejected_rewards = self.beta * (policy_rejected_logps - reference_rejected_logps).detach()
        return losses, chosen_rewards, rejected_rewards

    def __call__(self):
        batch = self.collate(self.batches.next())
        self.model.train()
        policy_chosen_logps, policy_rejected_logps, policy_chosen_logits, policy_rejected_logits = \
            self.concatenated_forward(batch)
        losses, chosen_rewards, rejected_rewards = self.dpo_loss(
            policy_chosen_logps, policy_rejected_logps, batch["reference_chosen_logps"],
            batch["reference_rejected_logps"])
        reward_accuracies = (chosen_rewards > rejected_rewards).float()
        self.metrics.append({  # get_batch_loss_metrics, stored for logging
            "rewards/chosen": chosen_rewards.mean().cpu(),
            "rewards/rejected": rejected_rewards.mean().cpu(),
            "rewards/accuracies": reward_accuracies.mean().cpu(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean().cpu(),
            "logps/rejected": policy_rejected_logps.detach().mean().cpu(),
            "logps/chosen": policy_chosen_logps.detach().mean().cpu(),
            "logits/rejected": policy_rejected_logits.detach().mean().cpu(),
            "logits/chosen": policy_chosen_logits.detach().mean().cpu(),
        })
        loss = losses.mean()
        loss.backward()
        if torch.isnan(loss.detach()) or torch.isinf(loss.detach()):
            raise RuntimeError("the DPO loss is not finite")
        optimizer_step(self.model, self.optimizer, self.scheduler, 1.0)


def step_flops(config, rows, seq_len):
    """The formula of learner_bench.cc: 6 * N * tokens + 12 * layers * seq_len * heads * head_dim * tokens."""
    c = config
    n = sum(p.numel() for name, p in LlamaForCausalLM(c).named_parameters() if not name.endswith("norm.weight"))
    tokens = rows * seq_len
    return 6.0 * n * tokens + 12.0 * c.num_hidden_layers * seq_len * c.num_attention_heads * c.head_dim * tokens


def main():
    args = bench_util.finish_args(bench_util.parser(__doc__.splitlines()[0]).parse_args())
    report = bench_util.Report("learner_python", args)
    models = ([("1m", 32, 2, 4, 2), ("20m", 64, 2, 4, 2)] if args.smoke
              else [("1m", 128, 4, 4, 2), ("20m", 512, 7, 8, 4)])
    sft_batch, dpo_batch, seq_len, prompt_len = (2, 1, 32, 16) if args.smoke else (4, 2, 128, 64)
    cfg = report.json["config"]
    cfg.update({"seq_len": seq_len, "prompt_len": prompt_len, "sft_batch_sequences": sft_batch,
                "dpo_batch_pairs": dpo_batch, "sft_tokens_per_step": sft_batch * seq_len,
                "dpo_tokens_per_step": 2 * dpo_batch * seq_len, "dtype": "float32",
                "torch": torch.__version__})

    n = 256 if args.smoke else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    report.add("matmul_gflops", "GFLOP/s", [2.0 * n ** 3 / 1e9 / s for s in bench_util.time_repeated(
        args, lambda: torch.mm(a, b))], True, f"fp32 torch.mm of two {n}x{n} matrices, 2n^3 FLOPs")

    rng = random.Random(7)
    examples = make_sequences(rng, EXAMPLES, seq_len, prompt_len)
    pairs = list(zip(make_sequences(rng, EXAMPLES, seq_len, prompt_len),
                     make_sequences(rng, EXAMPLES, seq_len, prompt_len)))
    total_steps = 1 + args.warmup + args.reps
    for tag, hidden, layers, heads, kv_heads in models:
        config = Config(VOCAB, hidden, layers, heads, kv_heads, seq_len)
        cfg["model_" + tag] = {"vocab": VOCAB, "hidden": hidden, "intermediate": config.intermediate_size,
                               "layers": layers, "heads": heads, "kv_heads": kv_heads, "tie_word_embeddings": True,
                               "parameters": sum(p.numel() for p in LlamaForCausalLM(config).parameters())}
        for algo in ("sft", "dpo"):
            torch.manual_seed(1)
            model = LlamaForCausalLM(config)
            if algo == "sft":
                step, rows = SftStep(model, examples, sft_batch, prompt_len, total_steps), sft_batch
            else:
                step, rows = DpoStep(model, pairs, dpo_batch, prompt_len, total_steps), 2 * dpo_batch
            step()  # the first step is not measured (as in learner_bench.cc)
            seconds = bench_util.time_repeated(args, step)
            tokens = rows * seq_len
            name = f"{algo}_{tag}"
            report.add(name + "_tokens_per_s", "tokens/s", [tokens / s for s in seconds], True,
                       f"tokens = rows x seq_len = {tokens}")
            report.add(name + "_step_s", "s", seconds, False)
            flops = step_flops(config, rows, seq_len)
            report.add(name + "_gflops", "GFLOP/s", [flops / 1e9 / s for s in seconds], True,
                       "(6 * N * tokens + 12 * layers * seq_len * heads * head_dim * tokens) / step time")

    # bf16 autocast, as learner_bench.cc: the bf16 matmul rate and the SFT step on the ~20M model.
    a16, b16 = a.bfloat16(), b.bfloat16()
    report.add("matmul_bf16_gflops", "GFLOP/s", [2.0 * n ** 3 / 1e9 / s for s in bench_util.time_repeated(
        args, lambda: torch.mm(a16, b16))], True, f"bf16 torch.mm of two {n}x{n} matrices, 2n^3 FLOPs")
    torch.manual_seed(1)
    model = LlamaForCausalLM(config)  # the last (~20M) model's config
    step = SftStep(model, examples, sft_batch, prompt_len, total_steps, bf16=True)
    step()
    seconds = bench_util.time_repeated(args, step)
    report.add("sft_20m_bf16_tokens_per_s", "tokens/s", [sft_batch * seq_len / s for s in seconds], True,
               "the SFT step of sft_20m under torch.autocast('cpu', torch.bfloat16)")
    report.add("sft_20m_bf16_step_s", "s", seconds, False)
    report.write()


if __name__ == "__main__":
    main()
