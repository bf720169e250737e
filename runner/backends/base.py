"""What the interpreter asks of a model family (the Protocols) and what a backend tells
whoever shows progress (the ticker). Each backend imports this module, never the package."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from runner.errors import StepError
from runner.results import Completion, GeneratedImage, Likelihood, ModelSetup
from runner.sources.names import name_problem
from runner.spec.weights import Weight

if TYPE_CHECKING:
    from runner.record.manifest import LoadReport
    from runner.spec.arguments import Arguments
    from runner.spec.types import Adapter, Generate, Merge, Model


class Ticker(Protocol):
    """What a backend tells whoever shows progress (the CLI) while it works."""

    verbose: bool  # leave the libraries' own logs and progress bars on

    def tick(self, done: int, total: int | None, unit: str) -> None:
        """DONE of TOTAL UNITs of a long call are finished (denoising steps, new tokens)."""

    def note(self, text: str) -> None:
        """One line worth the user's attention that is no error, e.g. a library's warning."""


class Logged:
    """The ticker when nobody shows progress (tests, library use): notes go to logging."""

    verbose = False

    def tick(self, done: int, total: int | None, unit: str) -> None:
        pass

    def note(self, text: str) -> None:
        logging.getLogger("runner").warning(text)


class Backend(Protocol):
    """What the interpreter asks of a model family. Adapter bookkeeping is the interpreter's."""

    device: str  # resolved, e.g. "cpu", "cuda:0"
    dtype: str  # resolved, e.g. "float32"

    def load_model(self, model: Model, source: str) -> None:
        """Load the base model from SOURCE: a resolved local folder, or a hub id."""

    def setup(self) -> ModelSetup:
        """How the model was loaded besides its files (scheduler, components, attention)."""

    def load_adapter(self, adapter: Adapter, local: Path | None) -> LoadReport:
        """Attach one adapter under its name and make it the only active one; returns what
        the load did (runner.backends.load_report).

        `local` is the resolved local file or folder (None for a hub id, or a config adapter).
        On failure nothing of the adapter stays behind.
        """

    def set_adapters(self, weights: dict[str, Weight]) -> None:
        """Make exactly these adapters active, each scaled by its weight."""

    def disable(self) -> None:
        """Run the base model from now on; adapters stay loaded."""

    def enable(self) -> None:
        """Run the active adapters again."""

    def generate(self, step: Generate) -> list[Completion] | list[GeneratedImage]:
        """Generate for every prompt of the step, seeded as the contract says."""

    def unload_adapters(self) -> None:
        """Remove every adapter, so that the model computes exactly what a fresh load does."""

    def fuse(self, weights: dict[str, Weight], lora_scale: float) -> dict[str, Any]:
        """Fold the active adapters WEIGHTS into the base weights; returns what to record
        (the base weights' sha256 before)."""

    def unfuse(self) -> dict[str, Any]:
        """Take them out again, the base weights bit-identical to before fuse (else
        StepError); returns what to record."""

    def delete_adapters(self, names: list[str], active: dict[str, Weight]) -> None:
        """Remove NAMES from the model; ACTIVE (the others that were active) stays active."""


class CannotMix(Exception):
    """The model refuses a mixed batch at run time (e.g. a layer sees the batch flattened,
    as OPT's fc1 does); nothing was made, the caller runs the rows one setting at a time.
    Control flow between the executor and a backend, never shown to the user."""


@runtime_checkable
class MixesAdapters(Protocol):
    """A backend that runs different adapter settings for different rows of one batch."""

    def deterministic(self, args: Arguments) -> bool:
        """Whether a cell's output depends on neither its seed nor its batch (greedy)."""

    def mix(self, weights: dict[str, Weight] | None) -> tuple[str, float] | None:
        """The (adapter, scale) that runs WEIGHTS (None: base) as one batch row; None where
        it cannot be mixed. May make a temporary adapter, which `unmix` deletes."""

    def unmix(self) -> None:
        """Delete what `mix` made."""

    def batch_size(self, step: Generate) -> int:
        """How many prompts like the step's one call may hold."""

    def generate_mixed(
        self, step: Generate, names: list[str], scales: dict[str, float]
    ) -> list[Completion]:
        """`generate` with prompt i run by adapter NAMES[i], each at its scale in SCALES;
        raises CannotMix when the model refuses."""


@runtime_checkable
class MixesPictures(Protocol):
    """A backend that draws images of different adapter settings in one call."""

    def mix(self, weights: dict[str, Weight] | None) -> tuple[str, float] | None:
        """As MixesAdapters.mix."""

    def unmix(self) -> None:
        """Delete what `mix` made."""

    def draw_mixed(
        self, step: Generate, seeds: list[int], names: list[str], scales: dict[str, float]
    ) -> list[GeneratedImage]:
        """`generate_cells` with prompt i drawn by adapter NAMES[i], each at its scale in
        SCALES; raises CannotMix when the pipeline refuses."""


@runtime_checkable
class DrawsCells(Protocol):
    """A backend that draws many (prompt, seed) cells of one adapter setting in one call."""

    def batch_size(self, step: Generate) -> int:
        """How many images like the step's one call may hold."""

    def generate_cells(self, step: Generate, seeds: list[int]) -> list[GeneratedImage]:
        """`generate` with prompt i seeded SEEDS[i]: its image k from SEEDS[i] + k."""


@runtime_checkable
class MakesAdapters(Protocol):
    """A backend that makes new adapters from loaded ones and writes any adapter as files."""

    def merge(self, step: Merge) -> None:
        """Add the step's adapter, merged from loaded ones as peft's add_weighted_adapter."""

    def formats(self) -> tuple[str, ...]:
        """The file formats `adapter_files` writes, the family's own first."""

    def adapter_files(self, name: str, format: str) -> dict[str, bytes]:
        """Adapter NAME in FORMAT: file name -> bytes, for the caller to write."""


@runtime_checkable
class ScoresText(Protocol):
    """A backend that scores continuations given contexts (a causal LM), lm-eval's way."""

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens), as lm-eval's `_encode_pair`."""

    def score_batch_size(self, longest: int) -> int:
        """How many sequences of LONGEST tokens one forward may hold."""

    def loglikelihoods(
        self,
        pairs: list[tuple[list[int], list[int]]],
        names: list[str] | None = None,
        scales: dict[str, float] | None = None,
    ) -> list[Likelihood]:
        """Each pair's log-likelihood, in one forward: with NAMES, pair i run by adapter
        NAMES[i] at its scale in SCALES (raises CannotMix when the model refuses); without,
        by the model as it is set."""


@runtime_checkable
class ScoresTokens(Protocol):
    """A text backend that gives its next-token distributions along a given continuation
    (teacher-forced), for a compare's `kl` distance to base."""

    def next_token_logprobs(self, step: Generate, continuation: list[int]) -> Any:
        """Under the current adapter setting: the log-probabilities (a float numpy array of
        shape (positions, vocabulary)) of the next token after the step's one prompt followed
        by each prefix of CONTINUATION: one row per token of it (one row, after the prompt
        alone, for an empty CONTINUATION)."""


def refuse_bad_name(name: str) -> None:
    """At run time, in every backend: a name torch or the runner reserves is refused before
    it reaches peft (a spec from Python may skip validation, or a file changed since)."""
    problem = name_problem(name)
    if problem:
        raise StepError(problem)
