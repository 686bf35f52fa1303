"""One-off probes: each asked one question once, its answer recorded in experiments/results/
(<name>.jsonl) and read in README's "Choices" and docs/results.md. Run from the repository root:
`python -m experiments.probes.<name> ...`."""
