"""``python -m benchmarks.guard_load``: what one log record costs while 0, 100 and 1,000 requests are in flight.

vLLM logs every request it receives, so the log guard runs once per request at least, and always
with every other in-flight request registered. Each simulated request registers what the middleware
registers: a chat body (a shared system prompt and its own user text) and its streamed answer, one
delta at a time. Then, in one run, three kinds of record are logged through a formatting handler,
the in-flight counts taken in turn over several passes so that drift in the machine's speed
spreads over all of them:

- ``unrelated``: an engine status line that shares nothing with any request;
- ``prompt``: vLLM's ``Received request ...: prompt: %r`` line for one of the in-flight requests;
- ``output``: its ``Generated response ...: output: %r`` line.

The figure is the median cost of one record, and the ratio of that cost to the same record logged
while nothing is in flight. A guard whose cost grows with the requests in flight shows it directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from retention_middleware.logs.log_guard import GuardRegistration
from retention_middleware.logs.redaction import REDACTED

IN_FLIGHT = (0, 100, 1000)
SYSTEM = "You are a careful assistant. Answer in plain English, cite the documents given, and say when unsure."
_LETTERS = "etaoinshrdlucmfwypvbgkjqxz"
_VOCABULARY = random.Random(7)
# 5,000 made-up words; drawn with a skew, so requests share the common ones, as real text does.
WORDS = ["".join(_VOCABULARY.choices(_LETTERS[:20], k=_VOCABULARY.randint(2, 9))) for _ in range(5000)]


def _words(number: int, salt: int, count: int) -> list[str]:
    draw = random.Random(number * 1009 + salt)
    return [WORDS[int(len(WORDS) * draw.random() ** 3)] for _ in range(count)]


class _Sink(logging.Handler):
    """Formats every record, as a real handler would, and keeps only the last line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = self.format(record)


def _user_text(number: int) -> str:
    words = _words(number, 1, 60)
    return f"Ticket T-{number:06d}: " + " ".join(words) + f". Reference REF-{number * 7919:09d}."


def _answer_deltas(number: int) -> list[str]:
    return [f" {word}" for word in _words(number, 2, 250)]


def _register(count: int) -> list[GuardRegistration]:
    registrations = []
    for number in range(count):
        registration = GuardRegistration()
        body = {"model": "m", "messages": [{"role": "system", "content": SYSTEM},
                                           {"role": "user", "content": _user_text(number)}]}  # fmt: skip
        registration.content.add_source(body)
        for delta in _answer_deltas(number):
            registration.content.add_generated(0, delta)
        registrations.append(registration)
    return registrations


def _records(target: int) -> dict[str, tuple[str, tuple[Any, ...]]]:
    prompt = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{_user_text(target)}<|im_end|>\n"
    return {
        "unrelated": ("Avg prompt throughput: %.1f tokens/s, Running: %d reqs, GPU KV cache usage: %.1f%%",
                      (1234.5, 42, 17.25)),
        "prompt": ("Received request %s: prompt: %r, params: %s", ("chatcmpl-1", prompt, "SamplingParams(n=1)")),
        "output": ("Generated response %s: output: %r", ("chatcmpl-1", "".join(_answer_deltas(target)))),
    }  # fmt: skip


def _time_one(logger: logging.Logger, message: str, args: tuple[Any, ...]) -> float:
    started = time.perf_counter()
    logger.info(message, *args)
    return time.perf_counter() - started


def _time_records(
    logger: logging.Logger, sink: _Sink, count: int, rounds: int, samples: dict[str, list[float]], leaked: list[str]
) -> None:
    target = count // 2
    records = _records(target)
    for name, (message, args) in records.items():
        _time_one(logger, message, args)  # warm-up: whatever is indexed lazily is indexed now
        secret = f"REF-{target * 7919:09d}" if name == "prompt" else "".join(_answer_deltas(target)[40:45])
        if count and name != "unrelated" and (secret in sink.last or REDACTED not in sink.last):
            leaked.append(f"{count} in flight: {name}")
    for _ in range(rounds):
        for name, (message, args) in records.items():
            samples.setdefault(name, []).append(_time_one(logger, message, args))


def run(rounds: int, counts: tuple[int, ...] = IN_FLIGHT, passes: int = 3) -> dict[str, Any]:
    logger = logging.getLogger("benchmarks.guard_load")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    sink = _Sink()
    logger.addHandler(sink)
    samples: dict[int, dict[str, list[float]]] = {count: {} for count in counts}
    leaked: list[str] = []
    try:
        for _ in range(passes):
            for count in counts:
                registrations = _register(count)
                try:
                    _time_records(logger, sink, count, rounds, samples[count], leaked)
                finally:
                    for registration in registrations:
                        registration.release()
    finally:
        logger.removeHandler(sink)
    if leaked:
        raise RuntimeError(f"the guard let content through: {leaked}")  # the benchmark would be measuring nothing
    figures: dict[str, Any] = {}
    for name in samples[counts[0]]:
        base = statistics.median(samples[counts[0]][name])
        figures[name] = {
            str(count): {
                "median_us": statistics.median(samples[count][name]) * 1e6,
                "ratio": statistics.median(samples[count][name]) / base,
            }
            for count in counts
        }
    return {"rounds": rounds, "passes": passes, "in_flight": list(counts), "records": figures}


def render(results: dict[str, Any]) -> str:
    counts = results["in_flight"]
    lines = [
        "### Log guard: one record against requests in flight",
        "",
        "| record | " + " | ".join(f"{count} in flight" for count in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for name, by_count in results["records"].items():
        cells = [f"{by_count[str(c)]['median_us']:.1f} µs ({by_count[str(c)]['ratio']:.2f}×)" for c in counts]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.guard_load", description=__doc__.split("\n\n")[1])
    parser.add_argument("--rounds", type=int, default=30, help="records of each kind timed per count and pass")
    parser.add_argument("--passes", type=int, default=3, help="times each in-flight count is taken in turn")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    parser.add_argument("counts", type=int, nargs="*", default=list(IN_FLIGHT), help="in-flight counts to measure")
    args = parser.parse_args(argv)
    results = run(args.rounds, tuple(args.counts), args.passes)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(render(results))
    print(f"(python -m benchmarks.guard_load {' '.join(sys.argv[1:] if argv is None else argv)})", file=sys.stderr)


if __name__ == "__main__":
    main()
