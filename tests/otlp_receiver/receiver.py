#!/usr/bin/env python3
"""A small OTLP/HTTP receiver for the OTLP sink's tests (tests/otlp_export.rs).

Decodes `ExportMetricsServiceRequest` and `ExportLogsServiceRequest` bodies with the official
OpenTelemetry protobuf definitions (the `opentelemetry-proto` package on PyPI) and appends one
JSON line per request to --out: {"path", "status", "encoding", "request"}, the request as
protobuf's JSON mapping with the proto field names (64-bit integers as strings), trace and
span ids as hex.

It can be told to answer 503 with `Retry-After` for a while (--fail-for seconds, counted from
the first request) or for the first --fail-first requests, to test retries; answers that fail
are logged too, with their status. It writes its port to --port-file once it listens on
127.0.0.1 (port 0: a free one), and stops by itself after --max-seconds.
"""

import argparse
import gzip
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

SERVICES = {
    "/v1/metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "/v1/logs": (
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
}


def hex_ids(request, as_dict):
    """Replaces the base64 trace/span ids of log records by hex."""
    for rl, rl_dict in zip(request.resource_logs, as_dict.get("resource_logs", [])):
        for sl, sl_dict in zip(rl.scope_logs, rl_dict.get("scope_logs", [])):
            for rec, rec_dict in zip(sl.log_records, sl_dict.get("log_records", [])):
                if rec.trace_id:
                    rec_dict["trace_id"] = rec.trace_id.hex()
                if rec.span_id:
                    rec_dict["span_id"] = rec.span_id.hex()


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.requests = 0
        self.first = None
        self.out = open(args.out, "a", encoding="utf-8")

    def failing(self):
        """Whether the current request is answered 503."""
        now = time.monotonic()
        with self.lock:
            self.requests += 1
            if self.first is None:
                self.first = now
            if self.requests <= self.args.fail_first:
                return True
            return now - self.first < self.args.fail_for

    def log(self, line):
        line["received_at_ns"] = time.time_ns()
        with self.lock:
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        service = SERVICES.get(self.path)
        if service is None:
            self.answer(404, b"unknown path")
            return
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self.answer(415, b"expected application/x-protobuf")
            return
        encoding = self.headers.get("Content-Encoding", "")
        try:
            data = gzip.decompress(raw) if encoding == "gzip" else raw
            request = service[0].FromString(data)
        except Exception as e:  # noqa: BLE001 - any decoding failure is a 400
            state.log({"path": self.path, "status": 400, "error": str(e)})
            self.answer(400, str(e).encode())
            return
        as_dict = MessageToDict(request, preserving_proto_field_name=True)
        if self.path == "/v1/logs":
            hex_ids(request, as_dict)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if state.failing():
            state.log({"path": self.path, "status": 503, "encoding": encoding})
            self.answer(
                503,
                b"collector overloaded",
                [("Retry-After", state.args.retry_after)],
            )
            return
        state.log(
            {
                "path": self.path,
                "status": 200,
                "encoding": encoding,
                "headers": {k: v for k, v in headers.items() if k.startswith("x-")},
                "request": as_dict,
            }
        )
        body = service[1]().SerializeToString()
        self.answer(200, body, [("Content-Type", "application/x-protobuf")])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--fail-for", type=float, default=0.0)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(args)
    with open(args.port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)
    timer = threading.Timer(args.max_seconds, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
