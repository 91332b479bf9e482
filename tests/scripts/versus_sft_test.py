#!/usr/bin/env python3
"""scripts/versus_sft.py on hand-made `alignd eval --details` files: the paired intervals' verdicts, and --targets
(the quickstart's demo targets) passing and failing for the right reasons. The standard library only."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "versus_sft.py")


def details(refused_harmful, refused_benign, correct, win):
    """40 harmful, 40 benign and 40 arithmetic prompts, in this order; the first N of each kind refused/correct."""
    rows = []
    for i in range(40):
        rows.append({"task": {"refusal_rate": float(i < refused_harmful)}, "reward": 0.0, "win": win})
    for i in range(40):
        rows.append({"task": {"false_refusal_rate": float(i < refused_benign)}, "reward": 0.0, "win": win})
    for i in range(40):
        rows.append({"task": {"accuracy": float(i < correct)}, "reward": 0.0, "win": win})
    return rows


class VersusSftTest(unittest.TestCase):
    def run_script(self, stages, *args):
        out = tempfile.mkdtemp()
        for name, rows in stages.items():
            with open(os.path.join(out, f"{name}.details.jsonl"), "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        names = [s for s in stages if s != "sft"]
        p = subprocess.run([sys.executable, SCRIPT, out, *names, "--json", os.path.join(out, "v.json"), *args],
                           capture_output=True, text=True)
        return p, json.load(open(os.path.join(out, "v.json")))

    def test_verdicts_follow_the_intervals(self):
        p, v = self.run_script({"sft": details(40, 30, 10, 0.5), "ppo": details(40, 5, 10, 1.0)})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(v["ppo"]["false_refusal_rate"]["verdict"], "better")
        self.assertEqual(v["ppo"]["accuracy"]["verdict"], "no clear change")
        self.assertEqual(v["ppo"]["win_rate_vs_sft"]["verdict"], "better")

    def test_targets_met(self):
        # Harmful refusal 40/40 -> 38/40 (0.05 down: still within), false refusals 30 -> 5, win 0.7.
        p, _ = self.run_script({"sft": details(40, 30, 10, 0.5), "ppo": details(38, 5, 10, 0.7)}, "--targets")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("ppo targets:", p.stdout)
        self.assertNotIn("MISSED", p.stdout)

    def test_each_target_can_be_missed(self):
        sft = details(40, 30, 10, 0.5)
        cases = {
            "win rate vs SFT >= 0.6: MISSED": details(40, 5, 10, 0.55),
            "false refusals down: MISSED": details(40, 29, 10, 0.7),
            "accuracy not down: MISSED": details(40, 5, 0, 0.7),
            "harmful refusal within 0.05 of SFT: MISSED": details(37, 5, 10, 0.7),
        }
        for missed, policy in cases.items():
            with self.subTest(missed):
                p, _ = self.run_script({"sft": sft, "dpo": policy}, "--targets")
                self.assertEqual(p.returncode, 1, p.stdout)
                self.assertIn(missed, p.stdout)
                self.assertEqual(p.stdout.count("MISSED"), 1, p.stdout)

    def test_a_stages_intervals_do_not_depend_on_the_other_stages_compared(self):
        # The quickstart compares "ppo dpo" in one call, check-examples one stage at a time: DPO's intervals must be
        # the same either way (they used to come from one random stream that PPO's resamples had moved on).
        sft = details(40, 30, 10, 0.5)
        dpo = details(38, 22, 9, 0.5)
        for i, row in enumerate(dpo):
            row["win"] = float(i % 3 != 0)  # 0.67 over all, so the interval is not a point
            row["reward"] = (i % 7) / 7.0
        _, alone = self.run_script({"sft": sft, "dpo": dpo})
        _, after_ppo = self.run_script({"sft": sft, "ppo": details(40, 5, 10, 1.0), "dpo": dpo})
        lo, hi = alone["dpo"]["win_rate_vs_sft"]["interval"]
        self.assertGreater(hi, lo)
        self.assertEqual(alone["dpo"], after_ppo["dpo"])


if __name__ == "__main__":
    unittest.main()
