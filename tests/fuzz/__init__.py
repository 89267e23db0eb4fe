"""Fuzzing deltaprop: cases drawn by hypothesis (tests/test_fuzz.py) or atheris
(fuzz_native.py, run by .ci/fuzz), executed in processes a crash may kill."""
