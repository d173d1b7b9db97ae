"""Plain data passed between the engine, the methods and the runner."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import require


@dataclass(frozen=True)
class Request:
    """One prompt to decode. `prompt` is raw task text: the strong model and the guide each apply their own template.

    `seed` alone decides the prompt's random draws, so its output does not depend on which other prompts share a batch.
    """

    id: str
    prompt: str
    seed: int = 0


@dataclass(frozen=True)
class SampleConfig:
    """How the strong model samples: the settings every method shares."""

    max_new_tokens: int = 50
    temperature: float = 0.7
    top_k: int = 50  # 0 disables top-k filtering
    top_p: float = 1.0  # 1.0 disables nucleus filtering
    stop: tuple[str, ...] = ()  # a response ends at the first of these strings (which is cut from its text)

    def __post_init__(self) -> None:
        require(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        require(
            self.temperature > 0,
            f"temperature must be > 0, got {self.temperature} (greedy decoding is not a sampling method)",
        )
        require(self.top_k >= 0, f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        require(all(self.stop), "stop strings must be non-empty")
        object.__setattr__(self, "stop", tuple(self.stop))


@dataclass
class Compute:
    """What one output cost. Token counts are the positions a model actually read (prompt prefill included)."""

    strong_tokens: int = 0
    strong_forward_passes: int = 0
    guide_tokens: int = 0  # tuned and untuned together
    guide_forward_passes: int = 0
    seconds: float = 0.0  # wall time of the batched call, shared evenly among its prompts

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class Output:
    """A decoded response and how it was found."""

    id: str
    text: str
    tokens: list[int]  # strong-model tokens of the response, an ending EOS included
    finish_reason: str  # "eos", "stop" or "length"
    score: float | None = None  # guide implicit reward of the response, where the method computed it
    compute: Compute = field(default_factory=Compute)
    trace: list[list[float]] = field(default_factory=list)  # CBS: kept beams' scores at each chunk boundary

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "text": self.text,
            "tokens": self.tokens,
            "finish_reason": self.finish_reason,
            "score": self.score,
            "compute": self.compute.as_dict(),
            "trace": self.trace,
        }
