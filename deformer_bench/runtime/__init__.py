"""What runs exported graphs, on any machine: the standard library, numpy and onnxruntime only (no torch).

contract.py       the graphs a DeFormer is exported as: names, inputs, outputs, dtypes and dynamic axes
cached_states.py  reading passage states out of a memory-mapped passage cache (the served online path)
strict_json.py    JSON as the format says (no key twice, no NaN): the runner's job, and every JSON file the host
                  reads (deformer_bench.readers)
"""
