#!/usr/bin/env python3
"""Prints the tables of docs/benchmarks.md from a procpool-bench JSON file.

Usage: benchmarks/results_to_markdown.py [benchmarks/results/latest.json]
"""
import json
import sys


def number(value):
    if value is None:
        return "-"
    if abs(value) >= 10000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/latest.json"
    with open(path) as f:
        results = json.load(f)
    machine = results["machine"]
    print(f"Run of {results['date']}, mode {results['mode']}, {results['repetitions']} repetitions, "
          f"{results['elapsed_s']:.0f} s; {machine['cpus']} CPUs ({machine['cpu_model']}), "
          f"kernel {machine['kernel']}, Python {machine['python']}.")
    print()
    print("**baselines**")
    print()
    print("| baseline | median | unit | per repetition |")
    print("| --- | ---: | --- | --- |")
    for row in results["rows"]:
        if row["section"] != "baselines":
            continue
        reps = ", ".join(number(v) for v in row["per_repetition"])
        print(f"| {row['what']} | {number(row['figure'])} | {row['unit']} | {reps} |")
    print()
    print("**procpool**")
    print()
    print("| what | figure | baseline | ratio | target | status |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    met = missed = 0
    for row in results["rows"]:
        if row["section"] != "procpool":
            continue
        status = row["status"]
        if status == "met":
            met += 1
        elif status == "MISSED":
            missed += 1
            status = "**missed**"
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        figure = "-" if row["figure"] is None else f"{number(row['figure'])} {row['unit']}"
        print(f"| {row['what']} | {figure} | {number(row['baseline'])} | {ratio} | "
              f"{row['target'] or '-'} | {status} |")
    print()
    print(f"{met} target rows met, {missed} missed.")
    print()
    print("Notes from the harness:")
    print()
    for row in results["rows"]:
        if row["note"]:
            print(f"- `{row['id']}`: {row['note']}")


if __name__ == "__main__":
    main()
