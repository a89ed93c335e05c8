"""Decoding for the captioning and VQA decoders: greedy and sampling over the state of `decoding.py`
(beams: `beam_search.py`).

The rules (processor order, lengths, output padding, returned scores) are
`transformers`' 4.57 ones, so greedy ids match it; the mechanics are this
project's: prompts left-padded with per-row positions (each row gets its
single-row result), a preallocated self-attention cache, and cross-attention
keys/values computed once and shared by all rows of an image.
"""

from __future__ import annotations

import time

import torch

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.sampling import check_sampling_seeds, row_uniforms
from blip_core.modeling.moved_names import forward_moved_names
from blip_core.modeling.outputs import GenerateDecoderOnlyOutput
from blip_torch.decoding import Decoding, is_end, start
from blip_torch.logits_processors import Step, process


def random_generator(options: GenerationOptions, device: torch.device) -> torch.Generator | None:
    return torch.Generator(device).manual_seed(options.seed) if options.seed is not None else None


def seeded_pick(scores: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Per-row inverse-CDF pick (blip_core.generation.sampling): int64 (rows,) from scores (rows, V) and float64
    uniforms (rows,) in (0, 1]; the first token whose cumulative probability (float64) reaches `u * total`."""
    device = scores.device
    cdf = scores.to(uniforms.device).double().softmax(-1).cumsum(-1)  # on the CPU where float64 is missing (MPS)
    below = cdf < uniforms[:, None] * cdf[:, -1:]
    return below.sum(-1).clamp(max=scores.shape[-1] - 1).to(device)


def pick(
    scores: torch.Tensor, options: GenerationOptions, generator: torch.Generator | None, uniforms: torch.Tensor | None
) -> torch.Tensor:
    """Each row's token (rows,): by its seeded uniform (`uniforms` (rows,) float64), sampled, or argmax."""
    if uniforms is not None:
        return seeded_pick(scores, uniforms)
    if options.do_sample:
        return torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
    return scores.argmax(-1)


def out_of_time(options: GenerationOptions, began: float) -> bool:
    """`max_time` (seconds since decoding began) has passed: every row stops, as `transformers` does."""
    return options.max_time is not None and time.monotonic() - began > options.max_time


def greedy_or_sample(
    state: Decoding, prompt: torch.Tensor, logits: torch.Tensor, options: GenerationOptions, tokens: SpecialTokens
) -> GenerateDecoderOnlyOutput:
    """One token per row per step, picked by argmax or by sampling; finished rows get the pad id."""
    began = time.monotonic()
    repeats = options.num_return_sequences if options.do_sample else 1
    state.expand(repeats)
    prompt, logits = prompt.repeat_interleave(repeats, 0), logits.repeat_interleave(repeats, 0)
    width, steps = prompt.shape[1], int(state.max_new.max())
    history = None
    if options.needs_history:  # the whole rows, for the processors that read them
        history = torch.full((prompt.shape[0], width + steps), tokens.pad, dtype=prompt.dtype, device=prompt.device)
        history[:, :width] = prompt
    generator = random_generator(options, prompt.device)
    uniforms = None
    if options.sampling_seeds is not None:  # (rows, steps): each image's rows from its own seed
        uniforms = torch.from_numpy(row_uniforms(options.sampling_seeds, repeats, steps))
        uniforms = uniforms if prompt.device.type == "mps" else uniforms.to(prompt.device)
    streamer = options.streamer
    if streamer is not None:
        streamer.put(prompt.cpu())
    unfinished = state.max_new > 0
    chosen, all_scores, all_logits = [], [], []
    for generated in range(steps):
        scores = process(logits, Step(state, generated, options, tokens, history, width + generated))
        if options.output_scores:
            all_scores.append(scores)
        if options.output_logits:
            all_logits.append(logits)
        picked = pick(scores, options, generator, None if uniforms is None else uniforms[:, generated])
        picked = torch.where(unfinished, picked, torch.full_like(picked, tokens.pad))
        chosen.append(picked)
        if history is not None:
            history[:, width + generated] = picked
        if streamer is not None:
            streamer.put(picked.cpu())
        unfinished = unfinished & ~is_end(picked, tokens) & (generated + 1 < state.max_new)
        if not bool(unfinished.any()) or out_of_time(options, began):
            break
        state.mark(picked)
        logits = state.step(picked, generated + 1)
    if streamer is not None:
        streamer.end()
    sequences = torch.cat([prompt, torch.stack(chosen, 1)], 1) if chosen else prompt
    return GenerateDecoderOnlyOutput(
        sequences=sequences,
        scores=tuple(all_scores) if options.output_scores else None,
        logits=tuple(all_logits) if options.output_logits else None,
    )


def generate(
    decoder,
    rows: list[list[int]],
    encoder_hidden_states: torch.Tensor,
    encoder_attention_mask: torch.Tensor | None,
    options: GenerationOptions,
    tokens: SpecialTokens,
    owner: torch.nn.Module | None = None,
) -> torch.Tensor | GenerateDecoderOnlyOutput:
    """Decode one prompt row per image; ids begin with the start token, prompts come left-padded with pad id.

    When `owner` (the model whose `generate` runs) or `decoder` was compiled with `torch.compile`, the steps run
    as one compiled graph (`compiled_decoding.py`). Raises ValueError when `options.sampling_seeds` does not hold
    one seed per row.
    """
    from blip_torch.beam_search import beam_search, group_beam_search
    from blip_torch.compiled_decoding import compiled_step_for, eager_module, use_compiled_step

    check_sampling_seeds(options.sampling_seeds, len(rows))
    if not rows:
        return empty_output(options, encoder_hidden_states.device)
    step = compiled_step_for(owner, decoder)
    decoder = eager_module(decoder)
    with torch.no_grad():
        state, prompt, logits = start(decoder, rows, encoder_hidden_states, encoder_attention_mask, options)
        use_compiled_step(state, step)
        loop = group_beam_search if options.is_group_beam else beam_search if options.is_beam else greedy_or_sample
        output = loop(state, prompt, logits, options, tokens)
    return output if options.return_dict_in_generate else output.sequences


def empty_output(options: GenerationOptions, device: torch.device) -> torch.Tensor | GenerateDecoderOnlyOutput:
    """A batch of no images: (0, 1) ids (and empty scores) without running the model."""
    from blip_core.modeling.outputs import empty_generate_output

    sequences = torch.zeros((0, 1), dtype=torch.long, device=device)
    if not options.return_dict_in_generate:
        return sequences
    return empty_generate_output(options, sequences, torch.zeros((0,), device=device))


def transition_scores(
    sequences: torch.Tensor,
    scores: tuple[torch.Tensor, ...],
    beam_indices: torch.Tensor | None,
    normalize_logits: bool,
    vocab_size: int,
) -> torch.Tensor:
    """`compute_transition_scores`: the score each generated token had when chosen, (rows, new tokens).

    Beam rows follow `beam_indices` (-1 past a hypothesis' end, where the score is 0).
    """
    if beam_indices is None:
        beam_indices = torch.arange(scores[0].shape[0], device=sequences.device)[:, None].expand(-1, len(scores))
    stacked = torch.stack(scores).reshape(len(scores), -1).transpose(0, 1)  # (N*V, steps)
    if normalize_logits:  # in float64: the same numbers on every CPU and in both trees, then the scores' dtype
        normalized = torch.log_softmax(stacked.double().reshape(-1, vocab_size, stacked.shape[-1]), dim=1)
        stacked = normalized.reshape(-1, stacked.shape[-1]).to(stacked.dtype)
    unused = beam_indices < 0
    length = int((~unused).sum(-1).max())
    unused = unused[:, :length]
    rows = beam_indices[:, :length].masked_fill(unused, 0)
    indices = sequences[:, sequences.shape[-1] - length :] + rows * vocab_size
    return stacked.gather(0, indices).masked_fill(unused, 0.0)


class GenerationMixin:
    """What `transformers`' GenerationMixin adds to the classes that generate, beyond `generate` itself."""

    config: object

    def compute_transition_scores(
        self,
        sequences: torch.Tensor,
        scores: tuple[torch.Tensor, ...],
        beam_indices: torch.Tensor | None = None,
        normalize_logits: bool = False,
    ) -> torch.Tensor:
        """The score of each generated token when it was chosen, (rows, new tokens) float32.

        `scores` (and `beam_indices` for beam search) come from `generate(..., output_scores=True,
        return_dict_in_generate=True)`; `normalize_logits` log-softmaxes them first.
        """
        vocab_size = self.config.get_text_config().vocab_size
        return transition_scores(sequences, scores, beam_indices, normalize_logits, vocab_size)


# Names defined here before this file was split: old imports and whole-model pickles keep working.
__getattr__ = forward_moved_names(
    __name__,
    {
        "decoder_step": "blip_torch.decoding",
    },
)
