#!/usr/bin/env python3
"""Renders a `kick report` HTML page in headless Chromium and checks what the browser built, not the file:
every task table's numbers equal the cells' summary.json (to the 4 significant digits shown), every chart
survived parsing as an <svg>, the page logged no console errors, and a screenshot was drawn.

    report_chromium.py CHROMIUM SWEEP_DIR [--screenshot PNG]

Standard library only, so it runs with any python3. Exit 0 on success, 1 with a one-line reason otherwise.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser


def fail(message):
    print(f"report_chromium: {message}", file=sys.stderr)
    sys.exit(1)


def chromium(binary, args, timeout=120):
    # A throwaway profile; --no-sandbox because CI runs as root, where Chromium's sandbox refuses to start.
    with tempfile.TemporaryDirectory() as profile:
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--log-level=0",
                   f"--user-data-dir={profile}", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        fail(f"chromium exited {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    return result


class Tables(HTMLParser):
    """Collects, per <h2> section, the tables as lists of rows of cell texts, and counts <svg> elements."""

    def __init__(self):
        super().__init__()
        self.sections = {}  # "task (protocol)" -> [table, ...]
        self.section = None
        self.svg = 0
        self.in_h2 = False
        self.h2_text = ""
        self.table = None
        self.row = None
        self.cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.in_h2, self.h2_text = True, ""
        elif tag == "svg":
            self.svg += 1
        elif tag == "table":
            self.table = []
        elif tag == "tr" and self.table is not None:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False
            self.section = self.h2_text.strip()
            self.sections.setdefault(self.section, [])
        elif tag == "table" and self.table is not None:
            self.sections.setdefault(self.section, []).append(self.table)
            self.table = None
        elif tag == "tr" and self.row is not None:
            self.table.append(self.row)
            self.row = None
        elif tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.in_h2:
            self.h2_text += data
        if self.cell is not None:
            self.cell += data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("chromium")
    parser.add_argument("sweep_dir")
    parser.add_argument("--screenshot", help="where to keep the PNG (default: a temporary file)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args()

    sweep_dir = os.path.abspath(args.sweep_dir)
    html_path = os.path.join(sweep_dir, "report.html")
    if not os.path.exists(html_path):
        fail(f"{html_path}: not found (run kick report first)")
    url = "file://" + html_path

    rendered = chromium(args.chromium, ["--dump-dom", url])
    console_errors = [l for l in rendered.stderr.splitlines() if "CONSOLE" in l and ("Uncaught" in l or ":ERROR:" in l)]
    if console_errors:
        fail(f"console errors while rendering: {console_errors[0]}")
    dom = Tables()
    dom.feed(rendered.stdout)
    source = open(html_path, encoding="utf-8").read()
    if dom.svg != source.count("<svg"):
        fail(f"{dom.svg} <svg> elements rendered, the file has {source.count('<svg')}")
    if dom.svg == 0:
        fail("the rendered page has no charts")

    manifest = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    labels = {v["label"]: v["key"] for v in manifest["variants"]}
    checked = 0
    for task in manifest["tasks"]:
        section = f"{task['task']} ({task['protocol']})"
        tables = dom.sections.get(section)
        if not tables:
            fail(f"no section '{section}' in the rendered page")
        # The per-task cell table: header [model, <metric>, stdev, examples, failed].
        cell_tables = [t for t in tables if t and t[0][:1] == ["model"] and t[0][2:] == ["stdev", "examples", "failed"]]
        if not cell_tables:
            fail(f"{section}: no per-model table rendered")
        table = cell_tables[0]
        metric = table[0][1]
        for row in table[1:]:
            label, shown = row[0], row[1]
            if label not in labels:
                fail(f"{section}: row '{label}' is not a variant of the sweep")
            summary_path = os.path.join(sweep_dir, "evals", labels[label], f"{task['task']}.{task['protocol']}", "summary.json")
            if not os.path.exists(summary_path):
                if re.fullmatch(r"[0-9.eE+-]+", shown):
                    fail(f"{section} / {label}: shows {shown} but {summary_path} does not exist")
                continue
            summary = json.load(open(summary_path))
            truth = summary["metrics"][metric]["mean"]
            value = float(shown)
            if abs(value - truth) > 5e-4 * max(abs(truth), 1e-12) + 1e-12:
                fail(f"{section} / {label}: the page shows {metric} {shown}, {summary_path} says {truth}")
            if int(row[3]) != summary["metrics"][metric]["examples"]:
                fail(f"{section} / {label}: the page shows {row[3]} examples, the summary {summary['metrics'][metric]['examples']}")
            checked += 1
    if checked == 0:
        fail("no cell was checked")

    with tempfile.TemporaryDirectory() as tmp:
        png = args.screenshot or os.path.join(tmp, "report.png")
        chromium(args.chromium, [f"--screenshot={os.path.abspath(png)}", f"--window-size={args.width},{args.height}",
                                 "--hide-scrollbars", url])
        data = open(png, "rb").read() if os.path.exists(png) else b""
        if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 10_000:
            fail(f"no usable screenshot ({len(data)} bytes)")
        size = len(data)
    print(f"report_chromium: ok ({checked} cells equal their summary.json, {dom.svg} charts rendered, screenshot {size} bytes)")


if __name__ == "__main__":
    main()
