"""Coverage-guided fuzzing (atheris) of every reader that takes a user's file or arguments.

Run a campaign:   python -m templater.fuzz loader --runs 100000
Harnesses:        loader (model .npz bytes and its JSON header), onnx (protobuf bytes), image (the
                  picture and .npy reader of `detect`), program (the program reader of `diff` and
                  `verify`), cli (argument parsing of every command).
Each input must end in a TemplaterError (or click's own usage errors for the CLI) or succeed;
anything else, an input over 5 s or a process over the memory limit is a crash, saved as
crash-<sha1> in the artifact folder. Crashes found so far are in tests/fuzz_corpus/ and replayed
by tests/test_fuzz.py.
"""

from __future__ import annotations

from templater.fuzz.harnesses import HARNESSES, Harness

__all__ = ["HARNESSES", "Harness"]
