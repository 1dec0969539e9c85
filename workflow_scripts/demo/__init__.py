"""Builders of the demo's and the tests' offline inputs: a tiny model, sample data, a Punkt model.
The demo's rules (rules/demo.smk) run them; the paper grid never does."""
