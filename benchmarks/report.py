"""The markdown report: the machine, then one table per section, then the targets."""

from __future__ import annotations

from typing import Any

from . import chat_backend, encryption, guard_load, peers


def _cmp_row(label: str, c: dict[str, Any], digits: int = 1) -> str:
    f = f"{{:.{digits}f}}"
    base, meas = c["baseline"], c["measured"]
    return (
        f"| {label} | {f.format(base['p50'])} / {f.format(base['p99'])} | {f.format(meas['p50'])} / "
        f"{f.format(meas['p99'])} | {f.format(c['added_p50'])} ({f.format(c['paired_p50'])}) | "
        f"{c['ratio_p50']:.2f} |"
    )


_CMP_HEAD = "| {what} | bare p50 / p99 | wrapped p50 / p99 | added p50 (paired) | ratio |\n|---|---:|---:|---:|---:|"


def _machine(machine: dict[str, str]) -> list[str]:
    versions = ", ".join(f"{name} {machine[name]}" for name in ("uvicorn", "h11", "orjson"))
    return [
        f"**Machine:** {machine['cpu']}, {machine['cores']} cores, {machine['os']}",
        "",
        f"**Python:** {machine['python']}; {versions}; httptools {machine['httptools']}, uvloop {machine['uvloop']}",
    ]


def _in_process(results: dict[str, Any]) -> list[str]:
    lines = [f"### 1. In-process, non-streamed ~1 KB request (us, {results['rounds']} interleaved rounds)", ""]
    lines.append(_CMP_HEAD.format(what="route"))
    for setting, label in (("access_log_off", "log off"), ("access_log_on", "log on")):
        for name, comparison in results[setting].items():
            lines.append(_cmp_row(f"{name}, access {label}", comparison))
    for name, comparison in results["mongo_emulator"].items():
        lines.append(_cmp_row(f"{name} (mockupdb+mongomock emulator, not MongoDB; log off)", comparison))
    return lines


def _streams(results: dict[str, Any]) -> list[str]:
    lines = [f"### 2. Streams, {results['events']} events each (us, {results['rounds']} interleaved rounds)", ""]
    lines.append(_CMP_HEAD.format(what="route: time to first body byte"))
    for name in ("passthrough", "chat", "responses_stored"):
        lines.append(_cmp_row(name, results[name]["time_to_first_byte"]))
    lines += [
        "",
        "| route | bare per chunk | added per chunk | whole stream bare / wrapped p50 | "
        "app msgs in | client msgs out (with data) | max held |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("passthrough", "chat", "responses_stored"):
        r = results[name]
        a, whole = r["accounting"], r["whole_stream"]
        lines.append(
            f"| {name} | {r['per_chunk_bare_us']:.2f} | {r['per_chunk_added_us']:.2f} | "
            f"{whole['baseline']['p50'] / 1000:.1f} / {whole['measured']['p50'] / 1000:.1f} ms | "
            f"{a['app_messages_in']} | {a['client_messages_out']} ({a['client_data_messages_out']}) | "
            f"{a['max_messages_held']} |"
        )
    return lines


def _throughput(results: dict[str, Any]) -> list[str]:
    u, load = results["uvicorn"], results["load"]
    lines = [
        f"### 3. Throughput through uvicorn (workers={u['workers']}, http={u['http']}, loop={u['loop']}; "
        f"{load['processes']} load processes x {load['connections_per_process']} keep-alive connections; "
        f"{results['rounds']} rounds x {results['seconds_per_round']:g} s, interleaved)",
        "",
        "| route | bare req/s | wrapped req/s (ratio) | wrapped + access log req/s (ratio) | server CPU share |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("passthrough", "chat_metered"):
        r = results[name]
        rps, cpu = r["requests_per_second"], r["server_cpu_share"]
        lines.append(
            f"| {name} | {rps['bare']:.0f} | {rps['wrapped']:.0f} ({r['ratio_wrapped']:.3f}) | "
            f"{rps['wrapped-logged']:.0f} ({r['ratio_wrapped_logged']:.3f}) | "
            + " / ".join(f"{cpu[n]:.2f}" for n in ("bare", "wrapped", "wrapped-logged"))
            + " |"
        )
    return lines


def _memory(results: dict[str, Any]) -> list[str]:
    small, large = results["megabytes"]
    lines = [
        "### 4. Peak RSS growth while streaming (KiB, fresh process per cell)",
        "",
        f"| case | event size | largest event | {small:g} MB | {large:g} MB | flat |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for case in results["cases"]:
        growth = case["peak_growth_kib"]
        lines.append(
            f"| {case['case']} | {case['event_bytes']} B | {case['largest_event_bytes']} B | {growth[str(small)]} | "
            f"{growth[str(large)]} | {'yes' if case['flat'] else 'NO'} |"
        )
    return lines


def _proxy(results: dict[str, Any]) -> list[str]:
    lines = [f"### 5. Proxy mode: `{results['proxy_command']}` vs the upstream directly (ms, keep-alive)", ""]
    lines += [f"Proxy: {results['proxy_server']}; upstream: {results['upstream']}.", ""]
    lines.append(_CMP_HEAD.format(what="route").replace("bare", "direct").replace("wrapped", "via proxy"))
    for name in ("passthrough", "chat_metered"):
        lines.append(_cmp_row(f"{name} (n={results[name]['measured']['n']})", results[name], digits=3))
    return lines


def _sse_parse(results: dict[str, Any]) -> list[str]:
    lines = [
        f"### 6. SSE parse time against event size (one event, {results['chunk_bytes'] // 1024} KiB chunks)",
        "",
        "| event size | parse time | ns per byte |",
        "|---:|---:|---:|",
    ]
    for case in results["cases"]:
        lines.append(f"| {case['megabytes']:g} MiB | {case['seconds'] * 1000:.1f} ms | {case['ns_per_byte']:.2f} |")
    lines += [
        "",
        f"Per-byte cost, largest over smallest event: **{results['per_byte_ratio']:.2f}** "
        f"(sizes {results['size_ratio']:g}x apart; 1 means linear).",
    ]
    return lines


def _guard_load(results: dict[str, Any]) -> list[str]:
    table = guard_load.render(results).replace("### Log guard:", "### 7. Log guard:", 1)
    return [*table.split("\n"), "", f"({results['rounds']} records of each kind per count, {results['passes']} passes)"]


def _encryption(results: dict[str, Any]) -> list[str]:
    return encryption.render(results).replace("#### Encryption", "### 8. Encryption", 1).split("\n")


def _chat_backend(results: dict[str, Any]) -> list[str]:
    head = "### 9. The chat backend: `/v1/responses` served by translating to Chat Completions (in-process)"
    return [head, "", *chat_backend.report(results).split("\n")]


def _targets(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["### Targets (DESIGN.md section 8)", "", "| figure | target | measured | met |", "|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v['figure']} | {v['target']} | {v['measured']} | {'yes' if v['met'] else '**NO**'} |")
    return lines


def render(results: dict[str, Any]) -> str:
    lines = [f"## retention-middleware benchmarks ({'quick' if results['quick'] else 'full'} run)", ""]
    lines += _machine(results["machine"])
    if "peers" in results:
        lines += ["", *peers.render(results["peers"])]
        lines += ["", f"`{results['command']}` took {results['wall_seconds']:.0f} s."]
        return "\n".join(lines)
    for section, render_section in (
        ("in_process", _in_process),
        ("streams", _streams),
        ("throughput", _throughput),
        ("memory", _memory),
        ("proxy", _proxy),
        ("sse_parse", _sse_parse),
        ("guard_load", _guard_load),
        ("encryption", _encryption),
        ("chat_backend", _chat_backend),
    ):
        lines += ["", *render_section(results[section])]
    lines += ["", *_targets(results["targets"])]
    lines += ["", f"`{results['command']}` took {results['wall_seconds']:.0f} s."]
    return "\n".join(lines)
