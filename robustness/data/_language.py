"""Character-level language-model datasets: ``grammar`` (generated) and ``text`` (a file).

A language-model dataset fits the ``Dataset`` contract as per-position
classification: the character stream is encoded as token ids (int64, the index
of each character in a fixed vocabulary) and cut into non-overlapping windows
of ``context + 1`` characters; the input is a window's first ``context`` ids,
the target its last ``context`` (the next character at every position). So
``x`` and ``y`` are int64 of shape (N, context), ``input_shape`` is
``(context,)``, ``num_outputs`` is the vocabulary size, and a model maps (N, T)
ids to (N, T, vocabulary) logits (``transformer``). The runner's loss is then the
mean cross-entropy per predicted character, in nats, and accuracy is per
character.

The validation split is the stream's last ``round(val_fraction * N)`` windows
(held-out text, as for a corpus; the grammar's sentences are independent, so
for it this is the same as a random split). There is no ``split_seed``.

``grammar``: sentences of a probabilistic context-free grammar with nested,
bracketed clauses and number agreement, generated from ``data_seed``::

    S        -> NP[n] VP[n] "."                          n: singular or plural, 1/2 each
    NP[n]    -> DET[n] ADJ* NOUN[n] [ "(" "that" VP[n] ")" ]    relative clause, p = relative
    VP[n]    -> VERB_I[n]                                 intransitive, 1/3
              | VERB_T[n] NP[m]                           transitive, 1/3, m drawn afresh
              | VERB_C[n] "[" NP[m] VP[m] "]"             clause complement, 1/3

A relative clause or complement opens one nesting level (a bracket); at
``max_depth`` levels deep, a phrase takes no relative clause and a VP never the
complement rule (it is then intransitive or transitive, 1/2 each). Each ADJ is
added with probability 0.3 (geometric, at most 2). The verb agrees with its
subject across any nested material, and brackets must be closed in order, so
after the words themselves (learned in a few hundred steps) a small model keeps
improving for thousands of steps on the long-range structure. Words are
separated by spaces and sentences by a space; the vocabulary is the grammar's
own characters (``GRAMMAR_VOCAB``), so its size does not depend on the sample.
The metadata hold the sample's entropy per character under the grammar (about
0.39 nats with the defaults): the loss floor, to read ``final_val_loss`` against.

``text``: any UTF-8 text file under the data root (the ``root`` argument /
``problem.data_root``, else ``$ROBUSTNESS_DATA``), named by ``file`` relative to
it; the vocabulary is the sorted set of characters in the file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from robustness._options import number_in, positive_int
from robustness.data._dataset import Dataset
from robustness.data._local import data_root
from robustness.errors import UserInputError

# the lexicon: (singular, plural) forms
_DETERMINERS = (("a", "the", "this", "one"), ("the", "these", "some", "two"))
_NOUNS = (
    ("cat", "dog", "bird", "fox", "child", "teacher", "river", "box"),
    ("cats", "dogs", "birds", "foxes", "children", "teachers", "rivers", "boxes"),
)
_ADJECTIVES = ("big", "small", "red", "old", "quiet", "happy")
_INTRANSITIVE = (("sleeps", "runs", "waits", "falls"), ("sleep", "run", "wait", "fall"))
_TRANSITIVE = (("sees", "likes", "chases", "finds"), ("see", "like", "chase", "find"))
_COMPLEMENT = (("knows", "says", "thinks"), ("know", "say", "think"))
_PUNCTUATION = " .()[]"

_WORDS = (
    *_DETERMINERS[0],
    *_DETERMINERS[1],
    *_NOUNS[0],
    *_NOUNS[1],
    *_ADJECTIVES,
    *_INTRANSITIVE[0],
    *_INTRANSITIVE[1],
    *_TRANSITIVE[0],
    *_TRANSITIVE[1],
    *_COMPLEMENT[0],
    *_COMPLEMENT[1],
    "that",
)
#: the ``grammar`` dataset's characters; a token id is an index into this string
GRAMMAR_VOCAB = "".join(sorted(set("".join(_WORDS)) | set(_PUNCTUATION)))

_ADJ_P, _ADJ_MAX = 0.3, 2
_OPEN = "(["


class _Generator:
    """Draws sentences of the grammar (module docstring) from a NumPy generator,
    adding the log-probability of every choice to ``log_prob``.

    Each sentence has one derivation (the words show every choice: the verb's
    class the rule, the noun's form the number), so the sum is the sentence's
    log-probability under the grammar.
    """

    def __init__(self, rng: np.random.Generator, relative: float, max_depth: int) -> None:
        self.rng = rng
        self.relative = relative
        self.max_depth = max_depth
        self.log_prob = 0.0

    def _choose(self, k: int) -> int:
        self.log_prob -= math.log(k)
        return int(self.rng.integers(k))

    def _coin(self, p: float) -> bool:
        heads = bool(self.rng.random() < p)
        self.log_prob += math.log(p if heads else 1.0 - p)
        return heads

    def _pick(self, words: tuple[str, ...]) -> str:
        return words[self._choose(len(words))]

    def _number(self) -> int:
        return self._choose(2)

    def noun_phrase(self, n: int, depth: int) -> list[str]:
        words = [self._pick(_DETERMINERS[n])]
        while len(words) <= _ADJ_MAX and self._coin(_ADJ_P):
            words.append(self._pick(_ADJECTIVES))
        words.append(self._pick(_NOUNS[n]))
        if depth < self.max_depth and self._coin(self.relative):
            words += ["(", "that", *self.verb_phrase(n, depth + 1), ")"]
        return words

    def verb_phrase(self, n: int, depth: int) -> list[str]:
        rule = self._choose(3 if depth < self.max_depth else 2)
        if rule == 0:
            return [self._pick(_INTRANSITIVE[n])]
        if rule == 1:
            return [self._pick(_TRANSITIVE[n]), *self.noun_phrase(self._number(), depth)]
        m = self._number()
        clause = [*self.noun_phrase(m, depth + 1), *self.verb_phrase(m, depth + 1)]
        return [self._pick(_COMPLEMENT[n]), "[", *clause, "]"]

    def sentence(self) -> str:
        n = self._number()
        return " ".join([*self.noun_phrase(n, 0), *self.verb_phrase(n, 0), "."])


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting in ``text`` (0 for none)."""
    depth = deepest = 0
    for char in text:
        if char in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    return deepest


def grammar_sample(
    n_chars: int, *, relative: float = 0.25, max_depth: int = 4, data_seed: int = 0
) -> tuple[list[str], list[float]]:
    """Sentences of the grammar from ``data_seed``, at least ``n_chars`` characters in
    all when joined by spaces, and each one's log-probability under the grammar (nats)."""
    gen = _Generator(np.random.default_rng(data_seed), relative, max_depth)
    sentences, log_probs, total = [], [], 0
    while total < n_chars:
        gen.log_prob = 0.0
        sentences.append(gen.sentence())
        log_probs.append(gen.log_prob)
        total += len(sentences[-1]) + 1
    return sentences, log_probs


def grammar_sentences(
    n_chars: int, *, relative: float = 0.25, max_depth: int = 4, data_seed: int = 0
) -> list[str]:
    """The sentences of ``grammar_sample``."""
    return grammar_sample(n_chars, relative=relative, max_depth=max_depth, data_seed=data_seed)[0]


def grammar(
    *,
    n_sequences: int = 2000,
    context: int = 64,
    relative: float = 0.25,
    max_depth: int = 4,
    data_seed: int = 0,
    val_fraction: float = 0.1,
) -> Dataset:
    """Character-level sentences of a nested probabilistic grammar with agreement."""
    owner = "dataset 'grammar'"
    n_sequences = positive_int(owner, "n_sequences", n_sequences, minimum=2)
    context = positive_int(owner, "context", context)
    relative = number_in(owner, "relative", relative, 0.0, 1.0, closed_low=True)
    max_depth = positive_int(owner, "max_depth", max_depth, minimum=0)
    if isinstance(data_seed, bool) or not isinstance(data_seed, int):
        raise UserInputError(f"{owner}: data_seed must be an integer, got {data_seed!r}")
    sentences, log_probs = grammar_sample(
        n_sequences * (context + 1), relative=relative, max_depth=max_depth, data_seed=data_seed
    )
    depths = np.bincount([nesting_depth(s) for s in sentences], minlength=max_depth + 1)
    metadata = {
        "n_sentences": len(sentences),
        # the grammar's own cross-entropy per character on this sample (each sentence
        # and the space after it): the floor of the loss, reached only with the whole
        # sentence in view (a window's first characters lack their context)
        "entropy_nats_per_char": -sum(log_probs) / sum(len(s) + 1 for s in sentences),
        "relative": relative,
        "max_depth": max_depth,
        "data_seed": data_seed,
        "depth_counts": depths.tolist(),  # sentences by their deepest nesting
    }
    stream = " ".join(sentences)[: n_sequences * (context + 1)]  # exactly n_sequences windows
    return token_dataset("grammar", stream, GRAMMAR_VOCAB, context, val_fraction, metadata)


def text(
    root: str | None,
    /,
    *,
    file: str = "text.txt",
    context: int = 64,
    val_fraction: float = 0.1,
) -> Dataset:
    """A local UTF-8 text file under the data root, by characters; the end is validation."""
    owner = "dataset 'text'"
    context = positive_int(owner, "context", context)
    base = data_root("text", root, "your UTF-8 text file, named by dataset_args.file")
    path = (base / file).resolve()
    if not path.is_relative_to(base.resolve()):
        raise UserInputError(f"{owner}: file {file!r} is outside the data root {base}")
    if not path.is_file():
        raise UserInputError(
            f"{owner}: no file {path}; put a UTF-8 text file under the data root {base} "
            "and name it with dataset_args.file (default 'text.txt')"
        )
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"{owner}: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    vocab = "".join(sorted(set(content)))
    metadata = {"file": str(path), "n_chars": len(content)}
    return token_dataset("text", content, vocab, context, val_fraction, metadata)


def token_dataset(
    name: str,
    stream: str,
    vocab: str,
    context: int,
    val_fraction: float,
    metadata: dict[str, Any],
) -> Dataset:
    """A language-model ``Dataset`` from a character stream (module docstring):
    windows of ``context + 1`` ids, inputs and next-character targets, the last
    ``round(val_fraction * N)`` windows for validation."""
    owner = f"dataset {name!r}"
    val_fraction = number_in(owner, "val_fraction", val_fraction, 0.0, 1.0)
    index = {char: i for i, char in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in stream], dtype=torch.int64)
    n = len(ids) // (context + 1)
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        raise UserInputError(
            f"{owner}: {len(ids)} characters make {n} windows of context+1 = {context + 1}, "
            f"and val_fraction={val_fraction} leaves an empty train or validation split; "
            "use more text, a shorter context or another fraction"
        )
    windows = ids[: n * (context + 1)].view(n, context + 1)
    x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
    train_counts = torch.bincount(y[: n - n_val].flatten(), minlength=len(vocab)).double()
    probs = train_counts[train_counts > 0] / train_counts.sum()
    return Dataset(
        name=name,
        task="classification",
        x_train=x[: n - n_val],
        y_train=y[: n - n_val],
        x_val=x[n - n_val :],
        y_val=y[n - n_val :],
        input_shape=(context,),
        num_outputs=len(vocab),
        metadata={
            "n_train": n - n_val,
            "n_val": n_val,
            "context": context,
            "vocab": vocab,
            "vocab_size": len(vocab),
            "validation": "the last windows of the stream",
            # the loss of the best context-free predictor, for comparison with final_val_loss
            "unigram_entropy_nats": float(-(probs * probs.log()).sum()),
            "uniform_loss_nats": math.log(len(vocab)),
            **metadata,
        },
    )
