#!/usr/bin/env python3
"""Reference outputs from Python for tokenizer_conformance_test.

  python_reference.py split <patterns.json> <text file>
      patterns.json is {"name": "pattern", ...}. Prints {"name": [[pieces of line 1], ...], ...}: each line split by
      the `regex` module's findall (the engine GPT-2's encoder.py uses; \\s there is Unicode White_Space).
  python_reference.py nfc <text file>
      Prints [[input, NFC(input)], ...] for every line, its NFD form, and each code point that NFC or NFD changes or
      that has a non-zero combining class (alone, decomposed, and between a base letter and two marks).

Lines are split on "\\n" only (str.splitlines() would also split on U+0085, U+2028, ...).
Exit status 3 when the `regex` module is missing.
"""
import json
import sys
import unicodedata


def read_lines(path):
    with open(path, encoding='utf-8', newline='') as f:
        lines = f.read().split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines


def split(patterns_path, text_path):
    try:
        import regex
    except ImportError:
        sys.stderr.write('the Python module "regex" is not installed\n')
        sys.exit(3)
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


def main():
    if len(sys.argv) == 4 and sys.argv[1] == 'split':
        split(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == 'nfc':
        nfc(sys.argv[2])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == '__main__':
    main()
