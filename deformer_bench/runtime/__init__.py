"""What runs exported graphs, on any machine: the standard library, numpy, onnxruntime and the contracts only
(no torch). Staged to measured machines with the contracts (bench/targets.py).

sessions.py            onnxruntime sessions of a graph set on exactly the provider asked for, the paths over them
cached_states.py       reading passage states out of a memory-mapped passage cache (the served online path)
codec_decode.py        a learned codec's codes decoded back to states (pq, rq, binary: the served path's decode)
helper_thread.py       one helper thread per purpose and process (a product's half, a passage read ahead)
target_environment.py  the measured machine, read on it (CPU, cores, governors, temperatures, providers, GPUs)
"""
