"""What the tests, the benchmarks and the local-cluster demo run the study on, kept out of the
installed package: tiny inputs (tiny_inputs.py), injected faults plugged into a study
(faults.py, faulty_study.py), and a real Ray cluster on this machine (local_cluster/)."""
