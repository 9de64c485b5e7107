"""MLPerf LoadGen scenarios on real questions: `deformer-bench --scenario single-stream|server|offline`.

A query sample is one SQuAD question with its passage. A query is everything a server does for it: tokenize the
question and cut the passage into windows, look each window up in a passage cache (or run lower_passage on a
miss), run the graphs, turn the logits into an answer string. LoadGen (the `mlcommons-loadgen` package, an
optional extra: `pip install deformer-bench[scenarios]`) issues the queries, times them and says whether a run
meets MLPerf's rules; nothing here re-implements it.

    samples.py   the query samples: SQuAD questions, a subset by --limit and --seed
    systems.py   the systems under test (unsplit, deformer, deformer-miss) and one query's work, in real or fixed
                 lengths
    driver.py    LoadGen: its settings (its built-in mlperf.conf, then ours), the SUT with dynamic batching, one test
    logs.py      what LoadGen wrote (detail log, trace, accuracy log), read back
    search.py    the server scenario's search for the highest QPS whose p99 stays within a bound
    results.py   the typed results, built from the raw values (which are kept)
    run.py       the whole run: checks, accuracy, scenarios, results folder
    report.py    report.md, results.csv and the plots, drawn from results.json only
"""
