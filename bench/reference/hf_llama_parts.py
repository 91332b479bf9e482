"""The pieces of Hugging Face's modeling_llama.py that did not change between the transformers versions the two
references follow (generate_ref.py: 4.36-4.38 with the cached rotary table and DynamicCache; learner_ref.py: 4.4x with
position_embeddings): RMSNorm, rotate_half, repeat_kv and the SwiGLU MLP; and the config of alignd's tiny Llama."""
import torch
from torch import nn


class Config:
    """The LlamaConfig fields the references read, sized as alignd's TinyLlamaConfig (common/model_config.cc)."""

    def __init__(self, vocab, hidden, layers, heads, kv_heads, max_positions=512):
        self.vocab_size = vocab
        self.hidden_size = hidden
        self.intermediate_size = (hidden * 8 // 3 + 15) // 16 * 16  # TinyLlamaConfig's SwiGLU size
        self.num_hidden_layers = layers
        self.num_attention_heads = heads
        self.num_key_value_heads = kv_heads
        self.head_dim = hidden // heads
        self.max_position_embeddings = max_positions
        self.rms_norm_eps = 1e-5
        self.rope_theta = 10000.0
        self.attention_dropout = 0.0
        self.initializer_range = 0.02
        self.tie_word_embeddings = True


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class LlamaMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
