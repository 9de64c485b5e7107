"""The bottom layer: what every other layer agrees on, typed and versioned, in the standard library and numpy only.

It is staged to measured machines with the runtime (bench/targets.py), so nothing here may load torch,
onnxruntime or any other part of deformer_bench (setup.cfg's import-linter contracts check it).

errors.py       the typed errors (message + hint) every layer raises and the CLIs turn into an exit code
strict_json.py  JSON as the format says (no key twice, no NaN): the runner's job and every JSON file read
readers.py      JSON, JSON Lines and text files read by that rule, with typed errors naming the file
graphs.py       the graphs a DeFormer is exported as: names, inputs, outputs, element types and dynamic axes
"""
