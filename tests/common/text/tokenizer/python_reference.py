"""Reference outputs from Python for tokenizer_conformance_test, run with ALIGND_PYTHON (scripts/bootstrap's prefix).

  python_reference.py split <patterns.json> <text file>
      patterns.json is {"name": "pattern", ...}. Prints {"name": [[pieces of line 1], ...], ...}: each line split by
      the `regex` module's findall (the engine GPT-2's encoder.py uses; \\s there is Unicode White_Space).
  python_reference.py nfc <text file>
      Prints [[input, NFC(input)], ...] for every line, its NFD form, and each code point that NFC or NFD changes or
      that has a non-zero combining class (alone, decomposed, and between a base letter and two marks).
  python_reference.py train-bpe <text file> <out tokenizer.json>
      Has Hugging Face `tokenizers` train a byte-level BPE with GPT-2's pipeline (ByteLevel pre-tokenizer with GPT-2's
      regex, ByteLevel post-processor and decoder, <|endoftext|> added after the vocab as in GPT-2) and saves it.
      The training text is not the file itself but variations of its lines (see training_text), so that encoding the
      file meets words the vocab covers in part. Prints {"merges": n, "vocab_size": n}.
  python_reference.py encode <tokenizer.json> <text file>
      Encodes with `tokenizers` (Tokenizer.from_file). Prints {"plain": [[ids of line 1], ...], "special": [...],
      "whole": [ids of the whole file]}: each line without and with add_special_tokens, the file without.

Lines are split on "\\n" only (str.splitlines() would also split on U+0085, U+2028, ...).
A missing module is an error (exit status 1) that names it and the interpreter.
"""
import importlib
import json
import random
import sys
import unicodedata

BPE_MERGES = 3000


def need(module):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        sys.exit(f'python_reference.py: the Python module "{module}" is not installed for {sys.executable} ({e}); '
                 'scripts/bootstrap installs it')


def read_text(path):
    with open(path, encoding='utf-8', newline='') as f:
        return f.read()


def read_lines(path):
    lines = read_text(path).split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines


def split(patterns_path, text_path):
    regex = need('regex')
    with open(patterns_path, encoding='utf-8') as f:
        patterns = json.load(f)
    lines = read_lines(text_path)
    out = {name: [regex.findall(p, line) for line in lines] for name, p in patterns.items()}
    json.dump(out, sys.stdout, ensure_ascii=False)


def nfc(text_path):
    cases = []
    for line in read_lines(text_path):
        cases.append(line)
        cases.append(unicodedata.normalize('NFD', line))
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        d = unicodedata.normalize('NFD', c)
        if d != c or unicodedata.normalize('NFC', c) != c or unicodedata.combining(c):
            cases.extend([c, d, 'a' + c + '\u0323\u0301', d + '\u0301'])
    json.dump([[c, unicodedata.normalize('NFC', c)] for c in cases], sys.stdout, ensure_ascii=False)


def training_text(lines, rounds=4, seed=7):
    """The lines, `rounds` times over, each with one word swapped for a word from elsewhere and one word rotated,
    split, upper-cased or reversed, and some with their words shuffled: the pairs of the text in other contexts and
    frequencies, so the merges learnt cover the text's frequent words whole and its rare ones in pieces."""
    rng = random.Random(seed)
    words = [w for line in lines for w in line.split(' ') if w]
    out = []
    for _ in range(rounds):
        for line in lines:
            ws = line.split(' ')
            ws[rng.randrange(len(ws))] = rng.choice(words)
            j = rng.randrange(len(ws))
            w = ws[j]
            if len(w) > 3:
                c = rng.randrange(1, len(w) - 1)
                ws[j] = rng.choice([w[c:] + w[:c], w[:c] + ' ' + w[c:], w.upper(), w[::-1]])
            if rng.random() < 0.3:
                rng.shuffle(ws)
            out.append(' '.join(ws))
    return out


def train_bpe(text_path, out_path):
    tk = need('tokenizers')
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.post_processor = tk.processors.ByteLevel(trim_offsets=True)
    tokenizer.decoder = tk.decoders.ByteLevel()
    alphabet = tk.pre_tokenizers.ByteLevel.alphabet()
    trainer = tk.trainers.BpeTrainer(vocab_size=len(alphabet) + BPE_MERGES, min_frequency=2,
                                     initial_alphabet=alphabet, show_progress=False)
    tokenizer.train_from_iterator(training_text(read_lines(text_path)), trainer)
    tokenizer.add_special_tokens(['<|endoftext|>'])
    tokenizer.save(out_path)
    merges = len(json.loads(tokenizer.to_str())['model']['merges'])
    json.dump({'merges': merges, 'vocab_size': tokenizer.get_vocab_size()}, sys.stdout)


def encode(tokenizer_path, text_path):
    tk = need('tokenizers')
    tokenizer = tk.Tokenizer.from_file(tokenizer_path)
    lines = read_lines(text_path)
    json.dump({
        'plain': [tokenizer.encode(line, add_special_tokens=False).ids for line in lines],
        'special': [tokenizer.encode(line, add_special_tokens=True).ids for line in lines],
        'whole': tokenizer.encode(read_text(text_path), add_special_tokens=False).ids,
    }, sys.stdout)


def main():
    commands = {'split': (split, 2), 'nfc': (nfc, 1), 'train-bpe': (train_bpe, 2), 'encode': (encode, 2)}
    if len(sys.argv) < 2 or sys.argv[1] not in commands or len(sys.argv) != 2 + commands[sys.argv[1]][1]:
        sys.exit(__doc__)
    commands[sys.argv[1]][0](*sys.argv[2:])


if __name__ == '__main__':
    main()
