#!/usr/bin/env python3
"""A reward server of your own for alignd, written from proto/alignd.proto alone, with Python grpcio.

alignd calls it for a job whose `rewards` name it as a `server` part (README, Rewards):

    rewards:
      - type: server
        address: 127.0.0.1:50070
        token_file: reward.token   # sent as "authorization: Bearer <token>"
        deadline_ms: 10000
        retries: 2

Run it:

    python3 examples/reward_server.py --listen 127.0.0.1:50070 --token-file reward.token

It needs `grpcio` and `protobuf` (scripts/bootstrap's Python prefix has both) and a protobuf compiler: the
`grpcio-tools` package if it is installed, else `protoc` on PATH (Debian's protobuf-compiler). The message classes are
generated from the .proto at start; the service is registered with grpcio's generic handlers, so no generated gRPC
stub module is needed.

Its rule, to show the shape of an answer: each response scores the sum of two parts,
  - "final_number": 1 when the last number in the response equals the number after "####" in the prompt record's
    `answer` field (absent from the parts when the record has no such field),
  - "concise": -0.01 per character over 120,
and answers INVALID_ARGUMENT for an empty request, UNAUTHENTICATED for a missing or wrong token. It prints
"reward server on HOST:PORT" once it listens (port 0 picks a free one) and stops on SIGTERM or SIGINT.
"""
import argparse
import importlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "proto", "alignd.proto")


def load_messages(proto_path):
    """Compiles the .proto's messages into a temporary folder and imports them (module alignd_pb2)."""
    out = tempfile.mkdtemp(prefix="alignd_pb2_")
    include, name = os.path.split(os.path.abspath(proto_path))
    args = [f"-I{include}", f"--python_out={out}", name]
    try:
        from grpc_tools import protoc  # grpcio-tools, when installed
        if protoc.main(["protoc"] + args) != 0:
            sys.exit(f"reward_server: grpc_tools.protoc failed on {proto_path}")
    except ImportError:
        done = subprocess.run(["protoc"] + args, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"reward_server: protoc failed on {proto_path}: {done.stderr.strip()}")
    sys.path.insert(0, out)
    return importlib.import_module(os.path.splitext(name)[0] + "_pb2")


LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
HASHES = re.compile(r"####\s*(-?\d[\d,]*(?:\.\d+)?)")


def as_number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def score_item(item):
    """The parts of one ScoreItem's score, by name."""
    parts = {}
    answer = item.fields.get("answer")
    if answer is not None:
        want = HASHES.findall(answer)
        got = LAST_NUMBER.findall(item.response)
        ok = bool(want) and bool(got) and as_number(got[-1]) == as_number(want[-1])
        parts["final_number"] = 1.0 if ok else 0.0
    parts["concise"] = -0.01 * max(0, len(item.response) - 120)
    return parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50070", help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--token-file", default="", help="callers must send this token (default: no check)")
    parser.add_argument("--proto", default=PROTO, help="path of alignd.proto")
    args = parser.parse_args()

    pb = load_messages(args.proto)
    token = open(args.token_file).read().strip() if args.token_file else ""
    calls = {"n": 0}
    lock = threading.Lock()

    def score(request, context):
        if token:
            metadata = dict(context.invocation_metadata())
            if metadata.get("authorization") != f"Bearer {token}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        if not request.items:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "items: empty batch")
        with lock:
            calls["n"] += 1
        response = pb.ScoreResponse()
        for item in request.items:
            parts = score_item(item)
            s = response.scores.add()
            s.total = sum(parts.values())
            s.parts.update(parts)
        return response

    handler = grpc.method_handlers_generic_handler("alignd.v1.Reward", {
        "Score": grpc.unary_unary_rpc_method_handler(
            score, request_deserializer=pb.ScoreRequest.FromString,
            response_serializer=pb.ScoreResponse.SerializeToString),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(args.listen)
    if port == 0:
        sys.exit(f"reward_server: cannot listen on {args.listen}")
    server.start()
    host = args.listen.rsplit(":", 1)[0]
    print(f"reward server on {host}:{port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    print(f"reward server: answered {calls['n']} Score calls", flush=True)


if __name__ == "__main__":
    main()
