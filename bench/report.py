#!/usr/bin/env python3
"""Turns bench/results/latest.json (written by bench/compare.py) into
bench/results/latest.md and its charts (throughput.png, latency.png,
memory.png, made with matplotlib) beside it, with the rate limiter's
tables of bench/ratelimit.sh (bench/results/ratelimit.md) at the end.

Usage: bench/report.py [RESULTS.json]
"""

import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the file backend)
from matplotlib import ticker  # noqa: E402

TITLES = {
    "passthrough": "Pass-through GET /products/42",
    "page": "Product page, four legs, services at 0 ms",
    "page-20ms": "Product page, four legs, services at 20 ms",
    "mobile": "Mobile product query (name, price, stock)",
}


def short_version(text):
    """The version number in a tool's version line (`nginx version: nginx/1.22.1`)."""
    found = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    return found.group(1) if found else text


def ours(label):
    return label.startswith("bff-")


def number(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "–"


def scenario_table(name, systems):
    peers = [label for label in systems if not ours(label)]
    head = ["system", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "idle RSS MiB",
            "RSS MiB, 1,000 conns"] + [f"vs {peer}" for peer in peers]
    lines = [f"### {TITLES.get(name, name)}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for label, result in systems.items():
        closed = result["closed"]
        many = result.get("many_connections", {})
        row = [f"**{label}**" if ours(label) else label, number(closed["rps"]),
               number(closed["p50_ms"], 2), number(closed["p99_ms"], 2),
               number(result.get("cpu_us_per_request")), number(result.get("idle_rss_mib"), 1),
               number(many.get("rss_mib"), 1)]
        row += [ratio(closed["rps"], systems[peer]["closed"]["rps"]) for peer in peers]
        lines.append("| " + " | ".join(row) + " |")
    rates = [run["rate"] for run in next(iter(systems.values())).get("open", [])]
    if rates:
        lines += ["", "Open loop (oha, latency-corrected), p50 / p99 / p99.9 in ms at "
                  + ", ".join(f"{rate:,} req/s" for rate in rates)
                  + " (25, 50 and 75 % of the weakest system's maximum):", "",
                  "| system | " + " | ".join(f"{rate:,} req/s" for rate in rates) + " |",
                  "|---|" + "---|" * len(rates)]
        for label, result in systems.items():
            cells = [f"{run['p50_ms']:.2f} / {run['p99_ms']:.2f} / {run['p999_ms']:.2f}"
                     for run in result["open"]]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def targets(scenarios):
    """(target, measured, met) for each target of the issue that this run measures."""
    rows = []

    def rps(scenario, label):
        return scenarios[scenario][label]["closed"]["rps"]

    def half_load(scenario, label):
        return scenarios[scenario][label]["open"][1]

    if "passthrough" in scenarios:
        ours_rps = rps("passthrough", "bff-web-rs256")
        for peer, factor in (("haproxy-rs256", 2), ("haproxy-hs256", 1)):
            measured = ours_rps / rps("passthrough", peer)
            rows.append((f"pass-through RS256 + limiter ≥ {factor}× {peer}", f"{measured:.2f}×",
                         measured >= factor))
        # Every pass-through route authenticates: nginx's plain proxying is compared with that.
        measured = ours_rps / rps("passthrough", "nginx")
        rows.append(("pass-through ≥ nginx plain proxying (ours with RS256 + limiter, nginx with neither)",
                     f"{measured:.2f}×", measured >= 1))
        added = half_load("passthrough", "bff-web-rs256")["p99_ms"] - half_load("passthrough", "direct")["p99_ms"]
        rows.append(("pass-through p99 added over direct at half load < 1 ms", f"{added:+.2f} ms", added < 1))
    for scenario, ours_label, peer in (("page", "bff-web", "express"), ("mobile", "bff-mobile", "apollo")):
        if scenario in scenarios:
            for label in (ours_label, f"{ours_label}-no-cache"):
                measured = rps(scenario, label) / rps(scenario, peer)
                rows.append((f"{scenario}: {label} ≥ 5× {peer}", f"{measured:.2f}×", measured >= 5))
    if "page-20ms" in scenarios:
        p50 = scenarios["page-20ms"]["bff-web"]["open"][0]["p50_ms"]
        rows.append(("page with 20 ms legs: p50 within 1 ms of 20 ms (25 % load)", f"{p50:.2f} ms",
                     p50 <= 21))
    for name, scenario in scenarios.items():
        for label, result in scenario.items():
            if ours(label):
                idle, many = result["idle_rss_mib"], result["many_connections"]["rss_mib"]
                rows.append((f"{name}/{label}: idle RSS < 30 MiB, peak with 1,000 connections < 150 MiB",
                             f"{idle:.1f} / {many:.1f} MiB", idle < 30 and many < 150))
    return rows


def charts(report, directory):
    scenarios = report["scenarios"]
    colour = {True: "#1f77b4", False: "#bbbbbb"}
    figure, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 4.5), squeeze=False)
    for axis, (name, systems) in zip(axes[0], scenarios.items()):
        labels = list(systems)
        axis.bar(labels, [systems[label]["closed"]["rps"] for label in labels],
                 color=[colour[ours(label)] for label in labels])
        axis.set_title(TITLES.get(name, name), fontsize=9)
        axis.set_ylabel("requests/s (closed loop)")
        axis.tick_params(axis="x", rotation=45, labelsize=8)
    figure.suptitle(f"Throughput, one run ({report['commit']}, {report['date']})")
    figure.tight_layout()
    figure.savefig(os.path.join(directory, "throughput.png"), dpi=100)

    figure, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 4.5), squeeze=False)
    for axis, (name, systems) in zip(axes[0], scenarios.items()):
        for label, result in systems.items():
            runs = result.get("open", [])
            style = "-" if ours(label) else "--"
            axis.plot([run["rate"] for run in runs], [run["p99_ms"] for run in runs], style, marker="o",
                      label=f"{label} p99")
        axis.set_yscale("log")
        # Ticks at 1, 2, 3 and 5 of each decade: a panel within one decade gets labels too.
        axis.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        axis.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.yaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_xlabel("offered requests/s (open loop)")
        axis.set_ylabel("p99 latency, ms (latency-corrected)")
        axis.set_title(TITLES.get(name, name), fontsize=9)
        axis.legend(fontsize=7)
    figure.suptitle("Latency at 25, 50 and 75 % of the weakest system's maximum")
    figure.tight_layout()
    figure.savefig(os.path.join(directory, "latency.png"), dpi=100)

    measured = [(f"{name}\n{label}", result) for name, systems in scenarios.items()
                for label, result in systems.items() if result.get("idle_rss_mib") is not None]
    figure, axis = plt.subplots(figsize=(max(8, len(measured) * 0.8), 4.5))
    positions = range(len(measured))
    axis.bar([p - 0.2 for p in positions], [r["idle_rss_mib"] for _, r in measured], 0.4, label="idle")
    axis.bar([p + 0.2 for p in positions], [r["many_connections"]["rss_mib"] for _, r in measured], 0.4,
             label="peak, 1,000 connections")
    axis.set_xticks(list(positions), [label for label, _ in measured], rotation=60, fontsize=7)
    axis.set_ylabel("RSS, MiB")
    axis.legend()
    figure.suptitle("Memory of each process under test")
    figure.tight_layout()
    figure.savefig(os.path.join(directory, "memory.png"), dpi=100)


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results",
                                                                 "latest.json")
    with open(source) as results:
        report = json.load(results)
    directory = os.path.dirname(os.path.abspath(source))
    machine, options = report["machine"], report["options"]
    lines = [
        "# Benchmark results: our BFFs against the peers",
        "",
        f"Commit {report['commit']}, {report['date']}. Made by `bench/run.sh` "
        f"(closed loop {options['duration']} s per system with {options['connections']} connections; "
        f"open loop {options['open_duration']} s per rate).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}. " + ", ".join(f"{name} {short_version(version)}" for name, version in
                                                    report["versions"].items()) + ".",
        "",
        f"Pinning: each system under test runs alone on CPU {report['pinning']['systems']} "
        "(`taskset`) with one worker: nginx `worker_processes 1`, haproxy `nbthread 1`, Node's one "
        "event loop, and our tokio runtime, which sizes itself from the affinity mask. wrk, oha, "
        f"demo-services and Redis share CPU {report['pinning']['load']}. CPU µs/req is the user + "
        "system time of the system's processes over the closed-loop run, per request. Every run "
        "here had no non-2xx answer and no socket error (the runner stops otherwise).",
        "",
        "![throughput](throughput.png)",
        "![latency](latency.png)",
        "![memory](memory.png)",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {target} | {measured} | {'yes' if met else '**no**'} |"
              for target, measured, met in targets(report["scenarios"])]
    lines += ["", "## Scenarios", ""]
    for name, systems in report["scenarios"].items():
        lines += scenario_table(name, systems) + [""]
    # bench/ratelimit.sh's tables, when it ran with this report.
    rate_limiter = os.path.join(directory, "ratelimit.md")
    if os.path.exists(rate_limiter):
        with open(rate_limiter) as tables:
            lines += ["## Rate limiter: cost, and accuracy against nginx's limit_req", "", tables.read()]
    with open(os.path.join(directory, "latest.md"), "w") as out:
        out.write("\n".join(lines))
    charts(report, directory)
    print(f"wrote {os.path.join(directory, 'latest.md')} and its charts")


if __name__ == "__main__":
    main()
