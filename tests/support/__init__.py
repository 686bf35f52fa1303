"""What the tests, the benchmarks and the local-cluster demo (experiments/local_cluster/) run the
study on, kept out of the installed package: tiny inputs (tiny_inputs.py) and injected faults
plugged into a study (faults.py, faulty_study.py)."""
