"""Log-likelihoods of continuations given contexts, exactly as lm-evaluation-harness's HFLM
computes them (lm_eval/api/model.py `loglikelihood`, `_encode_pair`; lm_eval/models/
huggingface.py `tok_encode`, `_loglikelihood_tokens`), for a causal LM:

- the context's trailing whitespace moves to the continuation; the pair is encoded whole,
  the context alone, and the continuation's tokens are the whole's after the context's
  (`tokenizer.encode` with its own special tokens, none when the text starts with them);
- an empty context is the prefix token (BOS, else EOS) before the continuation encoded
  without special tokens;
- the model reads (context + continuation)[-(max_length + 1):][:-1], right-padded with 0
  and no attention mask; the continuation's log-probs are log_softmax at its positions,
  summed; `is_greedy` when every continuation token is the argmax.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from runner.results import Likelihood

DEFAULT_MAX_LENGTH = 2048  # lm-eval's, where neither config nor tokenizer says
TOKENIZER_INFINITY = 1000000000000000019884624838656  # transformers' "unset" model_max_length


def prefix_token_id(tokenizer: Any) -> int:
    bos = tokenizer.bos_token_id
    return int(bos if bos is not None else tokenizer.eos_token_id)


def max_length(config: Any, tokenizer: Any) -> int:
    """lm-eval's resolve_max_length: the text config's, the config's, the tokenizer's."""
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit != TOKENIZER_INFINITY:
        return int(limit)
    return DEFAULT_MAX_LENGTH


def tok_encode(tokenizer: Any, text: str, add_special_tokens: bool | None = None) -> list[int]:
    kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
    if add_special_tokens is None and text.startswith(tokenizer.decode(prefix_token_id(tokenizer))):
        kwargs = {"add_special_tokens": False}
    return list(tokenizer.encode(text, **kwargs))


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as lm-eval's `loglikelihood` makes them."""
    if context == "":
        cont = tok_encode(tokenizer, continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        return ([prefix], cont) if not cont or prefix != cont[0] else (cont[:1], cont[1:])
    spaces = len(context) - len(context.rstrip())
    if spaces > 0:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tok_encode(tokenizer, context + continuation)
    ctx = tok_encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


def forward(model: Any, pairs: list[tuple[list[int], list[int]]], limit: int) -> list[Likelihood]:
    """One batch: each pair's summed continuation log-prob, token count and greediness."""
    device = next(model.parameters()).device
    inputs = [(ctx + cont)[-(limit + 1) :][:-1] for ctx, cont in pairs]
    width = max(len(i) for i in inputs)
    batch = torch.zeros((len(inputs), width), dtype=torch.long, device=device)
    for n, tokens in enumerate(inputs):
        batch[n, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    with torch.no_grad():
        logits = F.log_softmax(model(batch).logits, dim=-1)
    out = []
    for n, ((_, cont), tokens) in enumerate(zip(pairs, inputs, strict=True)):
        length = len(cont)
        picked = logits[n, len(tokens) - length : len(tokens)]
        target = torch.tensor(cont, dtype=torch.long, device=device)
        greedy = bool((picked.argmax(dim=-1) == target).all())
        loglik = float(torch.gather(picked, 1, target.unsqueeze(-1)).sum())
        out.append(Likelihood(loglik, length, greedy))
    return out
