"""The reference for alignd's PEFT adapters (common/model/peft.h): the base model from `transformers`, LoRA from `peft`.

Loads MODEL_DIR with transformers (float32, eager attention; see hf_reference.load_model for what makes that an
error; warnings about alignd's config.json only go to stderr, e.g. transformers' GPT-2 falls back to token id 50256
for a bos/eos that config.json leaves out), puts the adapter in ADAPTER_DIR on it, and writes the logits of a batch:
  - LORA: peft's own PeftModel.from_pretrained(base, ADAPTER_DIR). Every tensor of adapter_model.safetensors must be
    in the PEFT model unchanged, and the PEFT model must hold no other adapter weight.
  - BOTTLENECK is alignd's own layout (h = sublayer(...); h = h + up(act(down(h))) on the output of a layer's
    attention and/or MLP), which peft has no type for. This script is the only implementation of it here besides
    alignd's: forward hooks on the transformers model, on the attention's output projection (o_proj / GPT-2's
    c_proj, before the residual add) and on the MLP's output. Every tensor of the adapter file must be used, at
    exactly the sites that adapter_config.json names, in every layer.

Usage: peft_reference.py MODEL_DIR ADAPTER_DIR INPUTS OUT
  INPUTS: safetensors with input_ids and attention_mask (F32, [B, T]); OUT: safetensors with logits [B, T, V].
Runs with the interpreter of scripts/bootstrap's prefix (ALIGND_PYTHON: torch, transformers, peft, safetensors).
"""
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never wait on the network

import peft
import torch
import transformers
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

ADAPTER_PREFIX = "base_model.model."


def base_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if not os.path.exists(index):
        return load_file(os.path.join(model_dir, "model.safetensors"))
    with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    return {k: v for name in files for k, v in load_file(os.path.join(model_dir, name)).items()}


def with_lora(base, adapter_dir, file_tensors):
    model = ref.quietly(lambda: peft.PeftModel.from_pretrained(base, adapter_dir), adapter_dir)
    # save_embedding_layers=False: "auto" would look up base_model_name_or_path on the Hub.
    held = peft.get_peft_model_state_dict(model, save_embedding_layers=False)
    if set(held) != set(file_tensors):
        sys.exit(f"{adapter_dir}: peft holds {sorted(set(held) - set(file_tensors))} beyond the file and lacks "
                 f"{sorted(set(file_tensors) - set(held))}")
    for name, t in file_tensors.items():
        if not torch.equal(held[name], t.float()):
            sys.exit(f"{adapter_dir}: peft's {name} differs from the file's")
    return model.eval()


def with_bottleneck(base, acfg, adapter_dir, file_tensors):
    w = {k: v.float() for k, v in file_tensors.items()}
    if acfg["hidden_size"] != base.config.hidden_size:
        sys.exit(f"{adapter_dir}: hidden_size {acfg['hidden_size']}, the model has {base.config.hidden_size}")
    act = {"gelu": torch.nn.functional.gelu, "relu": torch.relu}[acfg["non_linearity"]]
    lin = torch.nn.functional.linear
    gpt2 = base.config.model_type == "gpt2"
    layers = "transformer.h" if gpt2 else "model.layers"
    # (site in adapter_config.json, adapter module name, the submodule whose output the adapter takes)
    sites = [("attention", "attn_adapter", "attn.c_proj" if gpt2 else "self_attn.o_proj"),
             ("mlp", "mlp_adapter", "mlp")]
    used = set()
    for i in range(base.config.num_hidden_layers):
        for site, name, target in sites:
            if site not in acfg["sites"]:
                continue
            key = f"{ADAPTER_PREFIX}{layers}.{i}.{name}."
            names = [key + n for n in ("down.weight", "down.bias", "up.weight", "up.bias")]
            missing = [n for n in names if n not in w]
            if missing:
                sys.exit(f"{adapter_dir}: sites has \"{site}\" but the file lacks {missing}")
            used.update(names)
            dw, db, uw, ub = (w[n] for n in names)
            adapter = lambda h, dw=dw, db=db, uw=uw, ub=ub: h + lin(act(lin(h, dw, db)), uw, ub)
            base.get_submodule(f"{layers}.{i}.{target}").register_forward_hook(
                lambda module, args, out, adapter=adapter: adapter(out))
    if used != set(w):
        sys.exit(f"{adapter_dir}: tensors at no site of {acfg['sites']}: {sorted(set(w) - used)}")
    return base


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model_dir, adapter_dir, inputs, out = sys.argv[1:5]
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        acfg = json.load(f)
    base = ref.load_model(model_dir, base_weights(model_dir), strict_config=False)
    file_tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    if acfg["peft_type"] == "LORA":
        model = with_lora(base, adapter_dir, file_tensors)
    elif acfg["peft_type"] == "BOTTLENECK":
        model = with_bottleneck(base, acfg, adapter_dir, file_tensors)
    else:
        sys.exit(f"{adapter_dir}: peft_type {acfg['peft_type']!r} is neither LORA nor BOTTLENECK")
    batch = load_file(inputs)
    ids, mask = batch["input_ids"].long(), batch["attention_mask"].long()
    with torch.no_grad():
        logits = ref.logits_of(model, ids, mask)
    save_file({"logits": logits.float().contiguous()}, out)


if __name__ == "__main__":
    main()
