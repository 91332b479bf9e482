"""Process helpers shared by the Python tests that start alignd (or a server of their own) and read its log."""
import re
import signal
import subprocess
import sys
import time


def wait_for_line(log, pattern, proc, seconds):
    """The first match of `pattern` in the file `log`, waiting up to `seconds`; exits if `proc` ends first."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        text = open(log).read()
        m = re.search(pattern, text)
        if m:
            return m
        if proc.poll() is not None:
            sys.exit(f"exited early ({proc.returncode}):\n{text[-3000:]}")
        time.sleep(0.1)
    sys.exit(f"no line matching {pattern!r} within {seconds}s:\n{open(log).read()[-3000:]}")


def stop(proc, seconds=30):
    """SIGTERM, then SIGKILL after `seconds`; nothing for a process that is gone (or None)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def init_tiny_model(alignd, out):
    """A fresh 2-layer, 32-wide Llama-style model with alignd's byte tokenizer in `out` (`alignd init`)."""
    subprocess.run([alignd, "init", "--out", out, "--hidden-size", "32", "--layers", "2", "--heads", "2",
                    "--kv-heads", "1", "--max-positions", "256", "--seed", "3"], check=True, stdout=subprocess.DEVNULL)
