"""answer(AnswerRequest) -> AnswerResult: questions about your own passages answered with an exported graph set,
lower_passage run once per passage window into a passage cache (what deformer-answer does). No torch."""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..answer import answer_questions, cache_passages, graph_set_tokenizer, read_passages, read_questions
from ..contracts.bounds import MAX_BATCH_SIZE
from ..contracts.errors import DeformerBenchError
from ..contracts.manifest import load_graph_set
from ..files import command_line, tokenizer_input, write_text_atomically
from ..passage_cache import CacheCommands
from .common import PathFields, check_count, check_outputs, interrupts_name_an_unfinished_cache


@dataclass
class AnswerRequest(PathFields):
    """One field per deformer-answer option (README, "Answer"): without `questions`, only builds (or checks) the
    passage cache; `output` None: the answers are returned, not written."""

    graphs: Path
    passages: Path
    passage_cache: Path
    questions: Path = None
    output: Path = None
    tokenizer: Path = None
    doc_stride: int = 128
    cache_miss: str = None  # refuse (None: the default) or compute
    batch_size: int = 64
    progress: bool = True


@dataclass
class AnswerResult:
    """{question id: answer text} (None: no questions were asked), and what the passage cache did."""

    answers: dict
    passage_cache: dict


def answer(request: AnswerRequest) -> AnswerResult:
    if request.output and not request.questions:
        raise DeformerBenchError("--output holds answers, and no --questions were given",
                                 "give --questions FILE, or drop --output to only build the cache")
    if request.cache_miss and not request.questions:
        raise DeformerBenchError("--cache-miss says what a question about a passage the cache lacks does, and no "
                                 "--questions were given", "give --questions FILE, or drop --cache-miss")
    check_count("--batch-size", request.batch_size, MAX_BATCH_SIZE)
    check_outputs({"--output": request.output}, request.passage_cache,
                  {"the graph set": request.graphs, "the passages file": request.passages,
                   "the questions file": request.questions, **tokenizer_input(request.graphs, request.tokenizer)})
    graph_set = load_graph_set(request.graphs)
    tokenizer = graph_set_tokenizer(graph_set, request.tokenizer)
    passages = read_passages(request.passages, tokenizer)
    questions = (read_questions(request.questions, passages, tokenizer)  # before any work
                 if request.questions else None)
    if not graph_set.model.qa_head_trained:
        print(f"note: {request.graphs} was exported with a random QA head: its answers are meaningless",
              file=sys.stderr)
    commands = cache_commands(request)
    with interrupts_name_an_unfinished_cache(request.passage_cache):
        if questions is None:
            _, record = cache_passages(graph_set, passages, tokenizer, request.passage_cache, request.doc_stride,
                                       request.batch_size, request.progress, commands)
            return AnswerResult(None, record)
        result = answer_questions(graph_set, passages, questions, tokenizer, request.passage_cache,
                                  request.doc_stride, request.batch_size, request.progress,
                                  cache_miss=request.cache_miss or "refuse", commands=commands)
    misses = result.passage_cache["cache_misses"]
    if misses["question_windows"]:
        print(f"note: {misses['question_windows']} question windows ({misses['questions']} questions) asked about "
              f"passage windows not in {request.passage_cache}: computed online (--cache-miss compute); add the "
              f"passages with {append_command(request)}", file=sys.stderr)
    if request.output:
        write_text_atomically(request.output, json.dumps(result.answers, indent=1, ensure_ascii=False) + "\n")
    return AnswerResult(result.answers, result.passage_cache)


def cache_commands(request: AnswerRequest):
    """The commands this run's passage cache names: this run without questions (it builds the cache, and goes on
    with it after a kill), and how windows the cache lacks are added."""
    start = command_line("deformer-answer", request.graphs, "--passages", request.passages, "--passage-cache",
                         request.passage_cache, "--doc-stride", request.doc_stride,
                         *(("--tokenizer", request.tokenizer) if request.tokenizer else ()))
    compute = (", or answer with --cache-miss compute (lower_passage runs online for them)" if request.questions
               else "")
    return CacheCommands(start, f"add these passages to it: {append_command(request)}{compute}; or give a new "
                                "--passage-cache directory")


def append_command(request: AnswerRequest) -> str:
    """The deformer-cache command that adds these passages' windows to the cache (in its own dtype)."""
    return command_line("deformer-cache", "build", request.graphs, "--passages", request.passages, "--out",
                        request.passage_cache, "--doc-stride", request.doc_stride,
                        *(("--tokenizer", request.tokenizer) if request.tokenizer else ()), "--append")
