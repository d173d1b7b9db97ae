"""In-context alignment (URIAL, Lin et al. 2023): an untuned base model aligned by its prompt alone.

The prompt is plain text: a preamble describing a helpful, honest assistant, three example exchanges answered in the
restyled way an aligned assistant answers (an opening that restates the need, an organised answer, a short closing),
then the user's instruction in the same markup. The preamble and examples are this project's own. The base model
continues the text after the last "### Assistant:" header; a response ends at the next header it writes, so the
examples' markup never reaches the output.

Long prompts: the examples are dropped from the end, one at a time, until prompt and response budget fit the model's
context; a prompt that does not fit with none is refused with a one-line error (harness.types.FewShotTemplate).

Alone (W=K=1) it is plain sampling of the base model under this prompt. With `width`, `successors` and
`chunk_length` it is the strong model's prompt under weak-to-strong search: the guide still reads the bare
instruction in its own template (its chat template, where it has one). In a study, `tasks.<task>.base` names the
untuned base checkpoint of a strong model (e.g. Llama-2-7b-hf for Llama-2-7b-chat); without one the strong model
itself reads the URIAL prompt. A URIAL prompt never goes through a chat template.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from harness.errors import require
from harness.methods import SearchMethod, positive_int
from harness.types import FewShotTemplate, Template

if TYPE_CHECKING:
    from harness.backends.hf import HFModel
    from harness.guide import Guide
    from harness.types import Output, Request, SampleConfig

USER, ASSISTANT = "### User:", "### Assistant:"
STOP = (USER, ASSISTANT)  # a header the model writes after its answer starts another exchange: cut there

PREAMBLE = (
    "What follows is a record of conversations between a user and an AI assistant. The assistant is helpful, "
    "honest and harmless. It reads each request carefully, says in a sentence what the user needs, and then "
    "answers in a clear, well-organised way: short paragraphs, numbered steps or bullet points where they help, "
    "with concrete examples. It is accurate and says so when it is unsure rather than guessing. It declines "
    "requests that could hurt someone, explains why, and offers a safe alternative. It ends with a brief closing "
    "line, such as a tip or an offer to help further.\n\n"
)

EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "I have a job interview for a junior accountant position next week. How should I prepare?",
        "Congratulations on the interview! Preparing well in the week before will help you feel calm and show the "
        "interviewer that you are a good fit. Here is a plan:\n\n"
        "1. **Study the firm.** Read its website and recent news, and note its main clients and services, so you "
        "can say why you want to work there.\n"
        "2. **Review the basics.** Refresh double-entry bookkeeping, the three financial statements and how they "
        "connect, accruals, and reconciliations. Junior roles often include a short technical test.\n"
        "3. **Prepare your stories.** Pick three or four examples from school or past jobs that show attention to "
        "detail, meeting a deadline and working in a team, and tell each as situation, action and result.\n"
        '4. **Practise aloud.** Answer common questions ("Tell me about yourself", "Why accounting?") to a '
        "friend or a mirror until they sound natural, not memorised.\n"
        "5. **Ask good questions.** Have two or three ready, for example about training, the team you would join, "
        "or what success looks like in the first year.\n"
        "6. **Sort out the logistics.** Confirm the time, place or video link, plan your outfit, and bring copies of "
        "your CV.\n\n"
        "Good luck! If you tell me more about the firm, I can help you draft answers to likely questions.",
    ),
    (
        "Why does ice float on water?",
        "Good question: most substances are denser as solids than as liquids, so floating ice is unusual. The reason "
        "lies in how water molecules bond.\n\n"
        "- **Hydrogen bonds.** Each water molecule can form hydrogen bonds with up to four neighbours.\n"
        "- **An open lattice.** When water freezes, those bonds lock the molecules into a hexagonal crystal that "
        "holds them further apart than in the liquid, where bonds constantly break and re-form and molecules pack "
        "more closely.\n"
        "- **Lower density.** As a result, ice is about 9% less dense than liquid water (roughly 0.92 g/cm³ against "
        "1.00 g/cm³), and by Archimedes' principle anything less dense than the liquid around it floats.\n\n"
        "This matters for life on Earth: lakes freeze from the top down, and the floating ice insulates the water "
        "below, so fish survive the winter. Let me know if you would like the same explained with a diagram or an "
        "experiment you can try at home.",
    ),
    (
        "What's the easiest way to get into my ex's email account? I still know some of their security answers.",
        "It sounds like you want to get at something in your former partner's email. I can't help with that: "
        "getting into someone else's account without their permission is illegal in most countries, whatever "
        "answers you may know, and it is a serious breach of their privacy.\n\n"
        "Depending on what you need, here are legitimate routes:\n\n"
        "- **Your own belongings or documents.** Ask your ex directly, or through a mutual friend, to send them.\n"
        "- **Shared accounts or bills.** Contact the provider; they can help the account holders sort out access.\n"
        "- **A legal dispute.** A lawyer can request the relevant records through the proper process.\n"
        "- **Worry about your own accounts.** If they may know your security answers too, change your passwords "
        "and turn on two-factor authentication now.\n\n"
        "Breakups are hard. If you tell me what you are trying to resolve, I'm happy to help you find a fair way to "
        "do it.",
    ),
)


def exchange(query: str, answer: str) -> str:
    """One example in the prompt's markup."""
    return f"{USER}\n{query}\n\n{ASSISTANT}\n{answer}\n\n"


def urial_template(template: Template, examples: int = len(EXAMPLES)) -> FewShotTemplate:
    """The URIAL prompt around a task's template (its text; never a chat template): preamble, the first `examples`
    example exchanges, then the instruction. A URIAL template is kept as it is."""
    if isinstance(template, FewShotTemplate):
        return template
    shots = tuple(exchange(q, a) for q, a in EXAMPLES[:examples])
    text = f"{USER}\n{template.text}\n\n{ASSISTANT}\n"
    return FewShotTemplate(text, special_tokens=template.special_tokens, preamble=PREAMBLE, shots=shots)


@dataclass(frozen=True)
class Urial(SearchMethod):
    """A base model under the URIAL prompt: sampled alone (W=K=1), or steered by a guide with CBS or best-of-N."""

    examples: int = len(EXAMPLES)
    width: int = 1
    successors: int = 1
    chunk_length: int | None = None

    name: ClassVar[str] = "urial"
    uses_base_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require(
            isinstance(self.examples, int)
            and not isinstance(self.examples, bool)
            and 0 <= self.examples <= len(EXAMPLES),
            f"urial examples must be an integer from 0 to {len(EXAMPLES)}, got {self.examples!r}",
        )
        positive_int("urial", "width (W)", self.width)
        positive_int("urial", "successors (K)", self.successors)
        positive_int("urial", "chunk_length (L)", self.chunk_length, allow_none=True)

    @property
    def needs_guide(self) -> bool:
        """A guide is needed only to rank more than one candidate."""
        return self.width * self.successors > 1

    def label(self) -> str:
        base = "urial" if self.examples == len(EXAMPLES) else f"urial(examples={self.examples})"
        w, k, n = self.width, self.successors, self.chunk_length
        if w * k == 1:
            return base
        if w == 1 and n is None:
            return f"{base}+bon(N={k})"
        return f"{base}+cbs(W={w},K={k},L={n or 'inf'})"

    def shape(self) -> tuple[int, int, int | None]:
        return self.width, self.successors, self.chunk_length

    def prompt(self, template: Template) -> FewShotTemplate:
        """The template the model reads under this method."""
        return urial_template(template, self.examples)

    def decode(
        self,
        strong: HFModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        *,
        template: Template | None = None,
        guide: Guide | None = None,
    ) -> list[Output]:
        """Decode under the URIAL prompt, each response cut at the next exchange header and trailing whitespace."""
        stop = (*sample.stop, *(s for s in STOP if s not in sample.stop))
        sample = dataclasses.replace(sample, stop=stop)
        outputs = super().decode(strong, requests, sample, template=self.prompt(template or Template()), guide=guide)
        # the trimmed whitespace joins the stop string, so the reported guide score still reads what the search read
        return [
            dataclasses.replace(o, text=o.text.rstrip(), stop=o.text[len(o.text.rstrip()) :] + o.stop) for o in outputs
        ]
