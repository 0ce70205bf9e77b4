#!/usr/bin/env python3
"""Turns bench/results/latest.json (written by bench/compare.py) into
bench/results/latest.md and its charts (throughput.png, latency.png,
memory.png, made with matplotlib) beside it, with the rate limiter's
tables of bench/ratelimit.sh (bench/results/ratelimit.md) at the end.

Each of bff-web's pages measured against the Express peer (product page,
listing, dashboard) gets its own table: bff-web with its response cache off
against Express, their ratio, and at 20 ms per service call the p50 against
the page's critical path (its dependent rounds of calls × 20 ms), with the
targets (≥ 5× Express; p50 within 2 ms of the critical path) met or missed.
bff-mobile's three screens get one table against Apollo, each query sent with
its text and as an automatic persisted query, and the bytes on the wire of the
mobile product screen against the web product page.

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
    "page": "Product page with 8 related products, services at 0 ms",
    "page-20ms": "Product page with 8 related products, services at 20 ms",
    "listing": "Category listing, 24 products and facets, services at 0 ms",
    "listing-20ms": "Category listing, 24 products and facets, services at 20 ms",
    "dashboard": "Dashboard: profile, 5 orders, 6 recommendations, services at 0 ms",
    "dashboard-20ms": "Dashboard: profile, 5 orders, 6 recommendations, services at 20 ms",
    "mobile": "Mobile product screen: price, stock, rating, 3 reviews",
    "mobile-listing": "Mobile listing: 20 products with prices and stock",
    "mobile-me": "Mobile account: profile, 10 orders with their products",
}

# bff-mobile's screens against Apollo: the scenario, what the screen shows.
MOBILE_SCREENS = {
    "mobile": "product screen: `product(id: 42)` with its price, stock, rating and 3 reviews",
    "mobile-listing": "listing: `products(first: 20, category: \"audio\", sort: PRICE_ASC)` with prices and stock",
    "mobile-me": "account: `me` (user-14), the profile and 10 orders with their lines' products",
}
# Ours against its peer in each mobile scenario: the query's text, then its hash alone (APQ). The first pair
# is of runs before the response cache was off in every mobile row.
MOBILE_PAIRS = (("bff-mobile", "apollo", "text"), ("bff-mobile-no-cache", "apollo", "text"),
                ("bff-mobile-no-cache-apq", "apollo-apq", "APQ, the hash alone"))

# bff-web's pages against the Express peer: each page's scenario (SCENARIO-20ms at 20 ms per call), its
# name, and its critical path: the rounds of downstream calls that wait for one another, counted from
# bff-web/src (each round's calls run in parallel; a round waits for the one before).
PAGES = {
    "page": ("Product page, `GET /api/product-page/42`", 2,
             "1. the product, its reviews and its 8 related products; 2. the prices and the stock of the "
             "product and the related products, one batch call each (waits for the related products only)"),
    "listing": ("Category listing, `GET /api/categories/audio/products?limit=24`", 2,
                "1. the page of products and the category's facets; 2. the page's prices and stock, one "
                "batch call each"),
    "dashboard": ("Dashboard, `GET /api/me/dashboard` (user-14)", 2,
                  "1. the profile, the newest orders and the recommendations; 2. the products of every order "
                  "line and recommendation in one batch call, the recommendations' prices in another"),
}
LEG_MS = 20
SLOW = "-20ms"
# The rows the page targets are about: ours without its response cache (the peer has none), and the peer.
OURS_NO_CACHE, PAGE_PEER = "bff-web-no-cache", "express"
PAGE_RATIO_TARGET = 5
CRITICAL_PATH_SLACK_MS = 2


def short_version(text):
    """The version number in a tool's version line (`nginx version: nginx/1.22.1`)."""
    found = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    return found.group(1) if found else text


def ours(label):
    return label.startswith("bff-")


def number(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"


def met(value):
    return "met" if value else "**missed**"


def wire_bytes(result):
    """Bytes of one answer on the wire with br, or None (a run before they were measured)."""
    return result.get("wire", {}).get("bytes")


def scenario_table(name, systems):
    peers = [label for label in systems if not ours(label)]
    head = ["system", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "bytes/req, br", "idle RSS MiB",
            "RSS MiB, 1,000 conns"] + [f"vs {peer}" for peer in peers]
    lines = [f"### {TITLES.get(name, name)}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for label, result in systems.items():
        closed = result["closed"]
        many = result.get("many_connections", {})
        row = [f"**{label}**" if ours(label) else label, number(closed["rps"]),
               number(closed["p50_ms"], 2), number(closed["p99_ms"], 2),
               number(result.get("cpu_us_per_request")), number(wire_bytes(result)),
               number(result.get("idle_rss_mib"), 1),
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
    pairs = ([(page, label, PAGE_PEER) for page in PAGES for label in ("bff-web", OURS_NO_CACHE)]
             + [(screen, label, peer) for screen in MOBILE_SCREENS for label, peer, _ in MOBILE_PAIRS])
    for scenario, label, peer in pairs:
        if label in scenarios.get(scenario, {}) and peer in scenarios[scenario]:
            measured = rps(scenario, label) / rps(scenario, peer)
            rows.append((f"{scenario}: {label} ≥ {PAGE_RATIO_TARGET}× {peer}", f"{measured:.2f}×",
                         measured >= PAGE_RATIO_TARGET))
    for page, (_, rounds, _) in PAGES.items():
        slow = page + SLOW
        if slow in scenarios and OURS_NO_CACHE in scenarios[slow]:
            path = rounds * LEG_MS
            p50 = scenarios[slow][OURS_NO_CACHE]["open"][0]["p50_ms"]
            rows.append((f"{slow}: {OURS_NO_CACHE} p50 within {CRITICAL_PATH_SLACK_MS} ms of the critical path "
                         f"({rounds} rounds × {LEG_MS} ms = {path} ms; 25 % load)", f"{p50:.2f} ms",
                         p50 <= path + CRITICAL_PATH_SLACK_MS))
    for name, scenario in scenarios.items():
        for label, result in scenario.items():
            if ours(label):
                idle, many = result["idle_rss_mib"], result["many_connections"]["rss_mib"]
                rows.append((f"{name}/{label}: idle RSS < 30 MiB, peak with 1,000 connections < 150 MiB",
                             f"{idle:.1f} / {many:.1f} MiB", idle < 30 and many < 150))
    return rows


def page_tables(report):
    """A table per page of bff-web against Express: ratios at 0 ms, p50 against the critical path at 20 ms."""
    scenarios = report["scenarios"]
    lines = []
    for page, (title, rounds, how) in PAGES.items():
        fast, slow = scenarios.get(page, {}), scenarios.get(page + SLOW, {})
        measured = [run for run in (fast, slow) if run]
        if not measured or not all(OURS_NO_CACHE in run and PAGE_PEER in run for run in measured):
            continue
        path = rounds * LEG_MS
        lines += [f"### {title}", "",
                  f"Critical path: {rounds} dependent rounds × {LEG_MS} ms = **{path} ms** ({how}).", "",
                  f"| measure | {OURS_NO_CACHE} | {PAGE_PEER} | {OURS_NO_CACHE} / {PAGE_PEER} | target |",
                  "|---|---|---|---|---|"]
        if fast:
            ours, peer = fast[OURS_NO_CACHE], fast[PAGE_PEER]
            rps = ours["closed"]["rps"] / peer["closed"]["rps"]
            lines += [
                f"| pages/s, services at 0 ms (closed loop) | {number(ours['closed']['rps'])} | "
                f"{number(peer['closed']['rps'])} | **{rps:.2f}×** | ≥ {PAGE_RATIO_TARGET}× Express: "
                f"{met(rps >= PAGE_RATIO_TARGET)} |",
                f"| CPU µs per page | {number(ours.get('cpu_us_per_request'))} | "
                f"{number(peer.get('cpu_us_per_request'))} | "
                f"{ratio(ours.get('cpu_us_per_request'), peer.get('cpu_us_per_request'))} | |",
                f"| p50 / p99 ms (closed loop) | {ours['closed']['p50_ms']:.2f} / {ours['closed']['p99_ms']:.2f} | "
                f"{peer['closed']['p50_ms']:.2f} / {peer['closed']['p99_ms']:.2f} | | |",
                f"| bytes per page on the wire with br (headers and body) | {number(wire_bytes(ours))} | "
                f"{number(wire_bytes(peer))} | {ratio(wire_bytes(ours), wire_bytes(peer))} | |",
                f"| of them the body, br (JSON uncompressed) | "
                + " | ".join(f"{number(run.get('wire', {}).get('body_bytes'))} "
                             f"({number(run.get('wire', {}).get('identity_body_bytes'))})" for run in (ours, peer))
                + " | | |",
            ]
            if "bff-web" in fast:
                cached = fast["bff-web"]["closed"]["rps"]
                lines.append(f"| pages/s with bff-web's response cache on | {number(cached)} | | "
                             f"{cached / peer['closed']['rps']:.2f}× | |")
        if slow:
            ours, peer = slow[OURS_NO_CACHE], slow[PAGE_PEER]
            p50s = [run["open"][0]["p50_ms"] for run in (ours, peer)]
            rate = ours["open"][0]["rate"]
            lines += [
                f"| p50 at {LEG_MS} ms per call, {rate:,} req/s offered (25 % load, open loop) | "
                f"{p50s[0]:.2f} ms ({p50s[0] - path:+.2f}) | {p50s[1]:.2f} ms ({p50s[1] - path:+.2f}) | | "
                f"within {CRITICAL_PATH_SLACK_MS} ms of {path} ms: {met(p50s[0] <= path + CRITICAL_PATH_SLACK_MS)} |",
                f"| p99 at {LEG_MS} ms, same load | {ours['open'][0]['p99_ms']:.2f} ms | "
                f"{peer['open'][0]['p99_ms']:.2f} ms | | |",
                f"| pages/s at {LEG_MS} ms (closed loop) | {number(ours['closed']['rps'])} | "
                f"{number(peer['closed']['rps'])} | {ratio(ours['closed']['rps'], peer['closed']['rps'])} | |",
            ]
            direct = report.get("service_call_ms", {}).get(page + SLOW)
            if direct is not None:
                lines += ["", f"One call straight to a service took {direct:.2f} ms (median) in this scenario "
                          f"(timed from Python, its own overhead included): the services alone make the "
                          f"path {rounds} × {direct:.2f} = {rounds * direct:.2f} ms."]
        lines.append("")
    return lines


def mobile_tables(report):
    """bff-mobile against Apollo per screen, with the query's text and as APQ; then the bytes on the wire of
    the mobile product screen against the web product page."""
    scenarios = report["scenarios"]
    lines = []
    rows = [(screen, label, peer, sent) for screen in MOBILE_SCREENS for label, peer, sent in MOBILE_PAIRS
            if label in scenarios.get(screen, {}) and peer in scenarios[screen]]
    if rows:
        lines += ["| screen | sent as | ours | req/s | Apollo req/s | ours / Apollo | CPU µs/req, ours / Apollo | "
                  "p99 ms closed loop, ours / Apollo | bytes/answer with br, ours / Apollo |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for index, (screen, label, peer, sent) in enumerate(rows):
            ours, them = scenarios[screen][label], scenarios[screen][peer]
            named = index == 0 or rows[index - 1][0] != screen  # each screen named on its first row
            lines.append(
                f"| {MOBILE_SCREENS[screen] if named else ''} | {sent} | `{label}` | "
                f"{number(ours['closed']['rps'])} | "
                f"{number(them['closed']['rps'])} | **{ratio(ours['closed']['rps'], them['closed']['rps'])}** | "
                f"{number(ours.get('cpu_us_per_request'))} / {number(them.get('cpu_us_per_request'))} | "
                f"{ours['closed']['p99_ms']:.2f} / {them['closed']['p99_ms']:.2f} | "
                f"{number(wire_bytes(ours))} / {number(wire_bytes(them))} |")
        lines.append("")
    screens = report.get("screen_bytes")
    if screens:
        web, mobile = screens["web"], screens["mobile"]
        lines += ["### Bytes on the wire: the mobile product screen against the web product page", "",
                  f"Product 42, one request each, both with their response cache off: the web page "
                  f"(`{web['request']}`, {web['system']}) and the mobile product screen's query sent with its "
                  f"text ({mobile['system']}). Answer: status line, headers and body as received.", "",
                  "| measure | web page | mobile screen | mobile / web |", "|---|---|---|---|"]
        for encoding, title in (("identity", "uncompressed"), ("gzip", "with `Accept-Encoding: gzip`")):
            w, m = web[encoding], mobile[encoding]
            sent = ("" if encoding == "identity"
                    else f" (bodies sent as {w['content_encoding']} / {m['content_encoding']})")
            lines += [f"| answer, {title}{sent} | "
                      f"{number(w['bytes'])} B | {number(m['bytes'])} B | **{ratio(m['bytes'], w['bytes'])}** |",
                      f"| of them the body, {title} | {number(w['body_bytes'])} B | {number(m['body_bytes'])} B | "
                      f"{ratio(m['body_bytes'], w['body_bytes'])} |"]
        w, m = web["identity"], mobile["identity"]
        if "request_bytes" in w:
            lines.append(f"| the request sent (token included) | {number(w['request_bytes'])} B | "
                         f"{number(m['request_bytes'])} B | {ratio(m['request_bytes'], w['request_bytes'])} |")
        lines.append("")
    return lines


def panels(count, columns=4):
    """A figure of COUNT panels, up to COLUMNS a row; the panels in order."""
    rows, width = -(-count // columns), min(count, columns)
    figure, axes = plt.subplots(rows, width, figsize=(5 * width, 4.5 * rows), squeeze=False)
    flat = list(axes.flatten())
    for axis in flat[count:]:
        axis.set_visible(False)
    return figure, flat[:count]


def charts(report, directory):
    scenarios = report["scenarios"]
    colour = {True: "#1f77b4", False: "#bbbbbb"}
    figure, axes = panels(len(scenarios))
    for axis, (name, systems) in zip(axes, scenarios.items()):
        labels = list(systems)
        axis.bar(labels, [systems[label]["closed"]["rps"] for label in labels],
                 color=[colour[ours(label)] for label in labels])
        axis.set_title(TITLES.get(name, name), fontsize=9)
        axis.set_ylabel("requests/s (closed loop)")
        axis.tick_params(axis="x", rotation=45, labelsize=8)
    figure.suptitle(f"Throughput, one run ({report['commit']}, {report['date']})")
    figure.tight_layout()
    figure.savefig(os.path.join(directory, "throughput.png"), dpi=100)

    figure, axes = panels(len(scenarios))
    for axis, (name, systems) in zip(axes, scenarios.items()):
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
    pages = page_tables(report)
    if pages:
        lines += ["", "## bff-web's pages against Express", "",
                  f"bff-web with its response cache off for every service (`{OURS_NO_CACHE}`: every call "
                  "made, as the peer makes it) against the Express peer serving the same JSON (compared once "
                  "per system by the runner). Bytes on the wire: one request with `Accept-Encoding: br`, "
                  "status line, headers and body as received; bff-web's answers carry more headers (a strong "
                  "`ETag`, `Server-Timing`, the rate limit's, security headers), the peer sends no ETag.",
                  ""] + pages
    mobile = mobile_tables(report)
    if mobile:
        lines += ["", "## bff-mobile's screens against Apollo", "",
                  "bff-mobile with its response cache off for every service (`bff-mobile-no-cache`: every call "
                  "made, as the peer makes it) against Apollo Server 5 with per-request DataLoaders serving the "
                  "same schema (bench/peers/apollo-mobile), with `Accept-Language: de-DE,de;q=0.9,en;q=0.8`. Each "
                  "query is sent with its text, then as an automatic persisted query: the SHA-256 alone, the text "
                  "registered once before measuring (the same request bytes to both). Both answer the same data "
                  "(compared once per system by the runner, cursors aside).", ""] + mobile
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
