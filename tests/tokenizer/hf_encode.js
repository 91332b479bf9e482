// Encodes a text file with @huggingface/tokenizers (tokenizers.js, a JavaScript implementation of Hugging Face
// tokenizer.json pipelines), for tokenizer_conformance_test.
// Usage: node hf_encode.js <node_modules dir> <folder with tokenizer.json [and tokenizer_config.json]> <text file>
// Prints {"plain": [[ids], ...], "special": [[ids], ...]}: each line encoded without and with add_special_tokens.
// Lines are split on "\n" only; the empty string after a final newline is not a line.
'use strict';
const fs = require('fs');
const path = require('path');

const [modulesDir, tokenizerDir, textFile] = process.argv.slice(2);
const { Tokenizer } = require(path.join(modulesDir, '@huggingface/tokenizers/dist/tokenizers.cjs'));
const readJson = (name) => {
  const file = path.join(tokenizerDir, name);
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
};
const tokenizer = new Tokenizer(readJson('tokenizer.json'), readJson('tokenizer_config.json'));
const lines = fs.readFileSync(textFile, 'utf8').split('\n');
if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
const encode = (line, add) => tokenizer.encode(line, { add_special_tokens: add }).ids;
process.stdout.write(JSON.stringify({
  plain: lines.map((line) => encode(line, false)),
  special: lines.map((line) => encode(line, true)),
}));
